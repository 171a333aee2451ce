"""A PQR's stored documents one click away (``ov-assets docs``): the objects the registry holds
for it (``uploaded`` or ``pre_existing``), each with a short-lived presigned GET URL, since the
``s3://`` URIs of ``archivos_s3_urls`` open nothing in a browser.

What is shown names objects by their landing names (SGC, timestamp, portal UUIDs), never by
anything personal; the URL itself grants read access to the document until it expires, so it
is for the operator's screen, not for tickets or chats."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ov_assets.core.contract import EMPRESAS
from ov_assets.errors import OperatorError
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import LocalObjectStore, ObjectStore
from ov_assets.warehouse.tables import SCHEMA, table_name

MAX_EXPIRES_S = 7 * 24 * 3600  # SigV4's limit for a presigned URL
_FILE_ORDER = {"json": 0, "pdf": 1, "attachment": 2}


@dataclass(frozen=True)
class Document:
    empresa: str
    file_type: str
    filename: str
    size: int | None
    sha256: str
    bucket: str
    key: str
    url: str


def _rows(conn: psycopg.Connection, radicado: str, empresas: tuple[str, ...]) -> list[tuple]:
    return conn.execute(
        sql.SQL(
            "SELECT empresa, file_type, filename, file_size, file_hash, s3_bucket, s3_key FROM {} "
            "WHERE numero_radicado = %s AND empresa = ANY(%s) AND upload_status IN ('uploaded', 'pre_existing') "
            "ORDER BY empresa, uploaded_at, s3_key"
        ).format(sql.Identifier(SCHEMA, "s3_files_registry")),
        (radicado, list(empresas)),
    ).fetchall()


def _known(conn: psycopg.Connection, radicado: str, empresas: tuple[str, ...]) -> list[str]:
    """The empresas whose table holds ``radicado``."""
    return [
        e
        for e in empresas
        if conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE numero_radicado = %s").format(sql.Identifier(SCHEMA, table_name(e))),
            (radicado,),
        ).fetchone()
    ]


def documents(
    conn: psycopg.Connection,
    store: ObjectStore,
    radicado: str,
    empresa: str | None,
    expires_s: int,
) -> list[Document]:
    """The stored objects of PQR ``radicado`` (of ``empresa``, else of either) with a URL each:
    presigned HTTPS for S3 (``expires_s`` seconds), ``file://`` for the local store. An
    OperatorError says why there is nothing to show."""
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise OperatorError(f"--expires must be 1..{MAX_EXPIRES_S} seconds (7 days, S3's limit), not {expires_s}")
    empresas = (empresa,) if empresa else EMPRESAS
    for e in empresas:
        table_name(e)  # validates
    rows = _rows(conn, radicado, empresas)
    if not rows:
        where = f"empresa {empresa}" if empresa else "either empresa"
        known = _known(conn, radicado, empresas)
        if not known:
            raise OperatorError(
                f"radicado {radicado} is not in the PQR table of {where}: check the number "
                "(and --empresa), or load its partition first"
            )
        raise OperatorError(
            f"radicado {radicado} ({', '.join(known)}) has no stored object yet: materialize pqr_s3_objects "
            "for its partition (objects still pending or in error are retried by s3_retry_schedule)"
        )
    rows.sort(key=lambda r: (r[0], _FILE_ORDER.get(r[1], 9), r[2]))
    out = []
    for emp, file_type, filename, size, sha256, bucket, key in rows:
        if isinstance(store, S3ObjectStore):
            url = store.presigned_get(key, expires_s, bucket)
        elif isinstance(store, LocalObjectStore) and bucket == store.bucket:
            url = store.url(key)
        else:
            raise OperatorError(
                f"object {key} is in bucket {bucket}, but the configured object store is local: set "
                "AWS_S3_BUCKET_NAME (and credentials) to sign URLs for it"
            )
        out.append(Document(emp, file_type, filename, size, (sha256 or "").strip(), bucket, key, url))
    return out
