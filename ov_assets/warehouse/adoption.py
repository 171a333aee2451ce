"""Adopting the object registries the old system left (CONTRACT §6, "What the previous system
left"; issue 16), run by ``migrations.apply_all``: every ``ov-assets migrate`` and every run
that migrates.

- Before migration 001: an old-shape ``s3_files_registry`` (no ``numero_radicado``) is renamed,
  with its indexes and sequences, to ``s3_files_registry_old``: kept verbatim, never dropped,
  and 001 creates the new registry beside it (``set_aside_old_registry``).
- After the migrations: every row of ``registros_ov_s3``, ``s3_files_registry_old`` and
  ``s3_files_registry_backup`` (in that order: the newest registry wins a key listed twice) that
  names a bucket, a key and an empresa becomes a registry row of its own: status
  ``pre_existing`` when the old registry says stored, else ``error``; source ``migration``;
  ``metadata.adopted_from`` / ``old_id`` point at the old row. Its PQR is resolved by the old
  ``numero_reclamo_sgc`` (or the key's folder) as an SGC of ``ov_*``, else as a radicado (the old
  column sometimes holds it); an unresolved row keeps ``numero_radicado`` NULL and is retried on
  every migrate (the archive also resolves it from the landing folder). Nothing is overwritten:
  a key the registry knows already keeps its row (``adopt``).
- ``report`` counts, read-only, what each old table lists and what of it the registry knows.

The old tables are only ever read. Identifiers are composed with ``psycopg.sql``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ov_assets.errors import OperatorError

SCHEMA = "data_general"
REGISTRY = "s3_files_registry"
SET_ASIDE = "s3_files_registry_old"
MIGRATION = "007_adopted_registry_rows"  # the migration that lets the registry hold adopted rows

# What 001 creates under the registry's name: a relation of the old table holding one of these
# names would make 001 fail (a sequence, the primary key) or silently skip an index.
_NAMES_OF_001 = (
    "s3_files_registry_id_seq",
    "s3_files_registry_pkey",
    "s3_files_registry_s3_bucket_s3_key_key",
    "s3_files_registry_pqr_idx",
    "s3_files_registry_open_idx",
)

# Old table -> its column for each field the adoption reads (the newest registry first).
_OLD_COLUMNS = {
    "id": "id",
    "key": "s3_key",
    "bucket": "s3_bucket",
    "url": "s3_url",
    "sgc": "numero_reclamo_sgc",
    "empresa": "empresa",
    "filename": "filename",
    "size": "file_size",
    "file_type": "file_type",
    "content_type": "content_type",
    "status": "upload_status",
    "source": "upload_source",
    "hash": "file_hash",
    "uploaded_at": "uploaded_at",
}
SOURCES: dict[str, dict[str, str]] = {
    "registros_ov_s3": {
        "id": "id",
        "key": "clave_s3",
        "bucket": "bucket_s3",
        "url": "url_s3",
        "sgc": "numero_reclamo_sgc",
        "empresa": "empresa",
        "filename": "nombre_archivo",
        "size": "tamano_archivo",
        "file_type": "tipo_archivo",
        "content_type": "tipo_contenido",
        "status": "estado_carga",
        "source": "origen_carga",
        "hash": "hash_archivo",
        "uploaded_at": "fecha_carga",
    },
    SET_ASIDE: _OLD_COLUMNS,
    "s3_files_registry_backup": _OLD_COLUMNS,
}
_STORED = ("uploaded", "pre_existing", "subido", "pre_existente")


def _columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """column -> data type of ``data_general.{table}`` ({} when it does not exist)."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (SCHEMA, table),
    ).fetchall()
    return {str(name): str(dtype) for name, dtype in rows}


def _rename(conn: psycopg.Connection, kind: str, old: str, new: str) -> None:
    conn.execute(
        sql.SQL("ALTER {} {}.{} RENAME TO {}").format(
            sql.SQL(kind), sql.Identifier(SCHEMA), sql.Identifier(old), sql.Identifier(new[:63])
        )
    )


def set_aside_old_registry(conn: psycopg.Connection) -> bool:
    """Rename an old-shape ``s3_files_registry`` (and the indexes and sequences named after it)
    to ``s3_files_registry_old`` so migration 001 can create the new one; the rows stay as they
    are. Returns whether it did. Call inside the migrations' transaction."""
    cols = _columns(conn, REGISTRY)
    if not cols or "numero_radicado" in cols:
        return False
    if _columns(conn, SET_ASIDE):
        raise OperatorError(
            f"{SCHEMA}.{REGISTRY} has the old system's shape (no numero_radicado) and {SCHEMA}.{SET_ASIDE} "
            f"exists already, so it cannot be set aside under that name: rename {SET_ASIDE} (it is kept, "
            "never read by ov-assets under another name) and run `ov-assets migrate` again."
        )
    owned = conn.execute(
        """SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END
           FROM pg_class c
           WHERE c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s::regclass)
              OR c.oid IN (SELECT objid FROM pg_depend WHERE refobjid = %(t)s::regclass
                           AND classid = 'pg_class'::regclass AND deptype IN ('a', 'i'))""",
        {"t": f"{SCHEMA}.{REGISTRY}"},
    ).fetchall()
    for name, kind in owned:
        if name.startswith(REGISTRY):
            _rename(conn, kind, name, SET_ASIDE + name[len(REGISTRY) :])
    _rename(conn, "TABLE", REGISTRY, SET_ASIDE)
    # A leftover relation holding a name 001 needs (a sequence not owned by the old table).
    left = conn.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = ANY(%s)""",
        (SCHEMA, list(_NAMES_OF_001)),
    ).fetchall()
    for name, relkind in left:
        kind = {"S": "SEQUENCE", "i": "INDEX"}.get(relkind)
        if kind is None:
            raise OperatorError(
                f"{SCHEMA}.{name} exists and migration 001 needs that name: rename it and run "
                "`ov-assets migrate` again."
            )
        _rename(conn, kind, name, SET_ASIDE + name[len(REGISTRY) :])
    return True


def ready(conn: psycopg.Connection) -> bool:
    """Whether the registry can hold adopted rows (migration 007 applied)."""
    row = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return False
    return (
        conn.execute("SELECT 1 FROM public.schema_migrations WHERE version = %s", (MIGRATION,)).fetchone() is not None
    )


def _empresa(expr: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "CASE WHEN {e} = 'afinia' THEN 'afinia' WHEN {e} IN ('aire', 'air-e', 'air_e') THEN 'aire' END"
    ).format(e=expr)


def _normalized(table: str, cols: dict[str, str]) -> sql.Composed:
    """A query of the old table's rows in the new registry's terms (NULL for absent columns):
    old_id, key, bucket, empresa, filename, key_folder, old_sgc, file_type, content_type,
    file_size, file_hash, old_hash, old_status, old_source, uploaded_at."""
    mapping = SOURCES[table]

    def col(field: str) -> sql.Composable:
        name = mapping[field]
        return sql.SQL("{}::text").format(sql.Identifier(name)) if name in cols else sql.SQL("NULL::text")

    uploaded_type = cols.get(mapping["uploaded_at"])
    uploaded: sql.Composable
    if uploaded_type == "timestamp without time zone":  # the old system wrote Bogotá local time
        uploaded = sql.SQL("{} AT TIME ZONE 'America/Bogota'").format(sql.Identifier(mapping["uploaded_at"]))
    elif uploaded_type == "timestamp with time zone":
        uploaded = sql.Identifier(mapping["uploaded_at"])
    else:
        uploaded = sql.SQL("NULL::timestamptz")
    return sql.SQL("""
        SELECT s.old_id, s.key, s.bucket, s.old_sgc, s.old_status, s.old_source, s.old_hash, s.uploaded_at,
               s.content_type, s.size_text, s.ft,
               COALESCE({emp_col}, {emp_key}) AS empresa,
               COALESCE(NULLIF(btrim(s.fname), ''), substring(s.key from '([^/]+)$')) AS filename,
               substring(s.key from '([^/]+)/[^/]+$') AS key_folder
        FROM (SELECT {id} AS old_id,
                     NULLIF(ltrim(btrim({key}), '/'), '') AS key,
                     COALESCE(NULLIF(btrim({bucket}), ''), substring({url} from '^s3://([^/]+)/'),
                              substring({url} from '^https?://([^./]+)[.]s3[.-]')) AS bucket,
                     lower(btrim({empresa})) AS e_raw,
                     NULLIF(btrim({sgc}), '') AS old_sgc,
                     {filename} AS fname, btrim({size}) AS size_text, lower(btrim({file_type})) AS ft,
                     NULLIF(btrim({content_type}), '') AS content_type,
                     lower(btrim({status})) AS old_status, lower(btrim({source})) AS old_source,
                     lower(btrim({hash})) AS old_hash, {uploaded} AS uploaded_at
              FROM {schema}.{table}) s""").format(
        emp_col=_empresa(sql.SQL("s.e_raw")),
        emp_key=_empresa(sql.SQL("lower(split_part(s.key, '/', 2))")),
        id=col("id"),
        key=col("key"),
        bucket=col("bucket"),
        url=col("url"),
        empresa=col("empresa"),
        sgc=col("sgc"),
        filename=col("filename"),
        size=col("size"),
        file_type=col("file_type"),
        content_type=col("content_type"),
        status=col("status"),
        source=col("source"),
        hash=col("hash"),
        uploaded=uploaded,
        schema=sql.Identifier(SCHEMA),
        table=sql.Identifier(table),
    )


# The PQRs by SGC (only SGCs naming one radicado) and by radicado, per empresa.
_PQRS = sql.SQL("""
    pqr AS (SELECT 'afinia' AS empresa, numero_radicado, numero_reclamo_sgc FROM {s}.ov_afinia
            UNION ALL SELECT 'aire', numero_radicado, numero_reclamo_sgc FROM {s}.ov_aire),
    by_sgc AS (SELECT empresa, numero_reclamo_sgc AS sgc, min(numero_radicado) AS numero_radicado FROM pqr
               WHERE numero_reclamo_sgc IS NOT NULL GROUP BY 1, 2 HAVING count(DISTINCT numero_radicado) = 1)""").format(
    s=sql.Identifier(SCHEMA)
)


def _resolved(source: str) -> sql.Composed:
    """``{source}`` (empresa, old_sgc, key_folder, ...) with the radicado and SGC of its PQR, when
    resolved: the old value as an SGC first, then as a radicado; the column before the key's folder."""
    return sql.SQL("""
        SELECT n.*, p.numero_radicado, p.numero_reclamo_sgc AS pqr_sgc
        FROM {src} n
        LEFT JOIN by_sgc a ON a.empresa = n.empresa AND a.sgc = n.old_sgc
        LEFT JOIN by_sgc b ON b.empresa = n.empresa AND b.sgc = n.key_folder
        LEFT JOIN pqr c ON c.empresa = n.empresa AND c.numero_radicado = n.old_sgc
        LEFT JOIN pqr d ON d.empresa = n.empresa AND d.numero_radicado = n.key_folder
        LEFT JOIN pqr p ON p.empresa = n.empresa
             AND p.numero_radicado = COALESCE(a.numero_radicado, b.numero_radicado, c.numero_radicado, d.numero_radicado)
        """).format(src=sql.Identifier(source))


@dataclass(frozen=True)
class SourceReport:
    table: str
    rows: int  # rows of the old table
    known: int  # rows whose (bucket, key) s3_files_registry holds
    not_adoptable: int  # rows without a key, a bucket or a recognisable empresa: kept, not adopted


@dataclass(frozen=True)
class AdoptionReport:
    sources: list[SourceReport]
    adopted: int  # registry rows adopted from the old tables
    unresolved: int  # of those, rows whose PQR is not resolved yet (numero_radicado NULL)

    def lines(self) -> list[str]:
        """Counts and table names only: never a key, a radicado or a file name."""
        if not self.sources:
            return []
        out = [
            f"old registry {s.table}: {s.rows} rows, {s.known} known to s3_files_registry, "
            f"{s.not_adoptable} not adoptable (no key, bucket or empresa; kept in {s.table})"
            for s in self.sources
        ]
        out.append(
            f"adopted objects: {self.adopted}, of which {self.unresolved} not yet linked to a PQR "
            "(numero_radicado NULL until its PQR is loaded: resolved by the next migrate or run)"
        )
        return out


def _present(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    return {t: cols for t in SOURCES if (cols := _columns(conn, t))}


def adopt(conn: psycopg.Connection) -> int:
    """Copy every adoptable old row whose key the registry does not know yet, and link adopted
    rows whose PQR is now resolvable. Returns the rows added. Idempotent; call inside a
    transaction after the migrations (``ready``)."""
    added = 0
    registry = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(REGISTRY))
    for table, cols in _present(conn).items():
        cur = conn.execute(
            sql.SQL("""
            WITH {pqrs}, src AS ({normalized}), r AS ({resolved})
            INSERT INTO {registry} (empresa, numero_radicado, numero_reclamo_sgc, filename, file_type,
                    content_type, file_size, file_hash, s3_bucket, s3_key, s3_url, upload_status, upload_source,
                    last_error, metadata, uploaded_at)
            SELECT empresa, numero_radicado,
                   CASE WHEN numero_radicado IS NOT NULL THEN pqr_sgc ELSE COALESCE(old_sgc, key_folder) END,
                   filename,
                   CASE WHEN ft IN ('json', 'pdf', 'attachment') THEN ft
                        WHEN ft IN ('adjunto', 'adjuntos', 'anexo', 'attachments') THEN 'attachment'
                        WHEN right(lower(filename), 5) = '.json' THEN 'json'
                        WHEN right(lower(filename), 4) = '.pdf' THEN 'pdf' ELSE 'attachment' END,
                   content_type,
                   CASE WHEN size_text ~ '^[0-9]{{1,18}}$' THEN size_text::bigint END,
                   CASE WHEN old_hash ~ '^[0-9a-f]{{64}}$' THEN old_hash END,
                   bucket, key, 's3://' || bucket || '/' || key,
                   CASE WHEN old_status IN ({stored}) THEN 'pre_existing' ELSE 'error' END,
                   'migration',
                   CASE WHEN old_status IN ({stored}) THEN NULL
                        ELSE 'adopted from ' || {table} || ': the old system recorded '
                             || COALESCE(quote_literal(old_status), 'no status')
                             || ', so no stored object is vouched for' END,
                   jsonb_strip_nulls(jsonb_build_object(
                       'adopted_from', {table}, 'old_id', old_id, 'old_status', old_status,
                       'old_source', old_source, 'old_numero_reclamo_sgc', old_sgc,
                       'old_file_hash', CASE WHEN old_hash !~ '^[0-9a-f]{{64}}$' THEN old_hash END)),
                   uploaded_at
            FROM r
            WHERE key IS NOT NULL AND bucket IS NOT NULL AND empresa IS NOT NULL
            ORDER BY old_id
            ON CONFLICT (s3_bucket, s3_key) DO NOTHING""").format(
                pqrs=_PQRS,
                normalized=_normalized(table, cols),
                resolved=_resolved("src"),
                registry=registry,
                stored=sql.SQL(", ").join(sql.Literal(s) for s in _STORED),
                table=sql.Literal(table),
            )
        )
        added += max(cur.rowcount, 0)
    # Adopted rows whose PQR was loaded since: link them now (first the old value, then the key's folder).
    conn.execute(
        sql.SQL("""
        WITH {pqrs},
             unlinked AS (SELECT id, empresa, metadata->>'old_numero_reclamo_sgc' AS old_sgc,
                             substring(s3_key from '([^/]+)/[^/]+$') AS key_folder
                      FROM {registry} WHERE numero_radicado IS NULL AND metadata ? 'adopted_from'),
             r AS ({resolved})
        UPDATE {registry} g SET numero_radicado = r.numero_radicado, numero_reclamo_sgc = r.pqr_sgc,
                                updated_at = now()
        FROM r WHERE g.id = r.id AND r.numero_radicado IS NOT NULL AND g.numero_radicado IS NULL""").format(
            pqrs=_PQRS, registry=registry, resolved=_resolved("unlinked")
        )
    )
    return added


def report(conn: psycopg.Connection) -> AdoptionReport:
    """What each old table lists and what of it the registry knows (read-only)."""
    sources = []
    new_registry = "numero_radicado" in _columns(conn, REGISTRY)  # else nothing is adopted yet
    known = sql.SQL(
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {}.{} g WHERE g.s3_bucket = n.bucket AND g.s3_key = n.key))"
    ).format(sql.Identifier(SCHEMA), sql.Identifier(REGISTRY))
    for table, cols in _present(conn).items():
        row = conn.execute(
            sql.SQL("""
            SELECT count(*), {known},
                   count(*) FILTER (WHERE n.key IS NULL OR n.bucket IS NULL OR n.empresa IS NULL)
            FROM ({normalized}) n""").format(
                known=known if new_registry else sql.SQL("0"), normalized=_normalized(table, cols)
            )
        ).fetchone()
        assert row is not None  # an aggregate without GROUP BY returns one row
        sources.append(SourceReport(table, *row))
    adopted = unresolved = 0
    if sources and new_registry:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE numero_radicado IS NULL) FROM {}.{} "
                "WHERE metadata ? 'adopted_from'"
            ).format(sql.Identifier(SCHEMA), sql.Identifier(REGISTRY))
        ).fetchone()
        assert row is not None
        adopted, unresolved = row
    return AdoptionReport(sources, adopted, unresolved)
