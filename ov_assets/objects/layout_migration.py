"""Moving every registered object from one key layout to the other (CONTRACT §7).

For each registry row of the bucket whose key is not where the target layout puts it:

1. copy the object server-side to the new key (never over another object) and verify that the
   copy's SHA-256, computed by S3, is the registry's ``file_hash``;
2. in one transaction, point the registry row at the new key (``upload_source = 'migration'``,
   ``metadata.migrated_from`` = the old key) and rewrite the table row's ``archivos_s3_urls``;
3. delete the old key, then mark the row ``metadata.old_key_deleted``.

Every step can be interrupted: a rerun finds a row in one of three states (old key only; copy
present but row not moved; row moved but old key not yet deleted) and finishes it. A finished
row is never touched again, so the job is idempotent. Rows still ``pending``/``error`` hold no
object of ours: they are only re-keyed, and the next pipeline run uploads them to the new key.

Switch ``OV_S3_LAYOUT`` to the target layout *before* running the migration (the job's
default target is the configured layout), so pipeline runs and the migration agree.
"""

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ov_assets.errors import OperatorError, StoreAccessError, translate_pg_error
from ov_assets.objects.archive import object_key
from ov_assets.objects.registry_keys import DONE_STATUSES, versioned_name
from ov_assets.objects.stores import IntegrityError, ObjectExists, ObjectStore
from ov_assets.warehouse.loading import SCHEMA, table_name


@dataclass
class MigrationCounts:
    moved: int = 0  # copied, verified, registry moved, old key deleted
    finished: int = 0  # interrupted earlier, completed now
    rekeyed: int = 0  # pending/error rows pointed at the new key (no object of ours to move)
    merged: int = 0  # the new key was already registered with the same bytes: old row removed
    already_there: int = 0
    errors: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "moved": self.moved,
            "finished": self.finished,
            "rekeyed": self.rekeyed,
            "merged": self.merged,
            "already_in_target": self.already_there,
            "errors": len(self.errors),
        }


def target_key(row: dict[str, Any], layout: str, base_path: str) -> str | None:
    """Where ``layout`` puts the registry row's object; None when the row lacks what the layout
    needs (the default layout needs the partition date)."""
    folder = row["numero_reclamo_sgc"] or row["numero_radicado"]
    day_text = (row["metadata"] or {}).get("partition_date")
    if layout == "default" and not day_text:
        return None
    day = dt.date.fromisoformat(day_text) if day_text else dt.date(2000, 1, 1)
    name = row["filename"]
    if row["file_hash"] and row["s3_key"].rsplit("/", 1)[-1] == versioned_name(name, row["file_hash"]):
        name = versioned_name(name, row["file_hash"])  # a replaced landing file's own version
    return object_key(layout, base_path, row["empresa"], day, folder, name)


_COLUMNS = """id, empresa, numero_radicado, numero_reclamo_sgc, filename, file_hash, s3_key, s3_url,
              upload_status, metadata"""


def _rows(conn: psycopg.Connection, bucket: str) -> list[dict[str, Any]]:
    """The bucket's rows, but those adopted from the old system (``metadata.adopted_from``):
    their objects stay under the old keys the old tables name (history; no partition date)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.s3_files_registry WHERE s3_bucket = %s "
            "AND NOT metadata ? 'adopted_from' ORDER BY id",
            (bucket,),
        ).fetchall()


def _relink(conn: psycopg.Connection, empresa: str, radicado: str, old_url: str, new_url: str) -> None:
    """Replace ``old_url`` by ``new_url`` in the table row's ``archivos_s3_urls``."""
    conn.execute(
        f"""UPDATE {SCHEMA}.{table_name(empresa)} SET updated_at = now(), archivos_s3_urls = (
                SELECT jsonb_agg(CASE WHEN e->>'s3_url' = %(old)s
                                      THEN jsonb_set(e, '{{s3_url}}', to_jsonb(%(new)s::text)) ELSE e END
                                 ORDER BY n)
                FROM jsonb_array_elements(archivos_s3_urls) WITH ORDINALITY AS x(e, n))
            WHERE numero_radicado = %(radicado)s
              AND archivos_s3_urls @> jsonb_build_array(jsonb_build_object('s3_url', %(old)s::text))""",
        {"old": old_url, "new": new_url, "radicado": radicado},
    )


def _drop_superseded(conn: psycopg.Connection, row_id: int, new_key: str) -> None:
    """Remove a registry row that the row at ``new_key`` supersedes. Through a function of
    migration 006 (run with its owner's rights, it deletes only such a row) because the
    least-privilege ov_loader role has no DELETE."""
    row = conn.execute(f"SELECT {SCHEMA}.ov_registry_drop_superseded(%s, %s)", (row_id, new_key)).fetchone()
    assert row is not None  # a function called in a SELECT without FROM returns one row
    (dropped,) = row
    if not dropped:
        raise OperatorError(f"registry row {row_id}: the row at its target key changed meanwhile; rerun the migration")


class _Migrator:
    def __init__(self, conninfo: dict[str, Any], store: ObjectStore, layout: str, base_path: str) -> None:
        self.conninfo = conninfo
        self.store = store
        self.layout = layout
        self.base_path = base_path

        self._local = threading.local()
        self._opened: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        """One connection per worker thread, reused across rows."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(**self.conninfo, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        yield conn

    def close(self) -> None:
        for conn in self._opened:
            conn.close()

    def _delete_old(self, conn: psycopg.Connection, row_id: int, old_key: str) -> None:
        self.store.delete(old_key)
        conn.execute(
            f"""UPDATE {SCHEMA}.s3_files_registry SET updated_at = now(),
                    metadata = metadata || jsonb_build_object('old_key_deleted', true)
                WHERE id = %s""",
            (row_id,),
        )

    def one(self, row: dict[str, Any]) -> str:
        """Bring one row to the target layout; returns what was done."""
        meta = row["metadata"] or {}
        new_key = target_key(row, self.layout, self.base_path)
        if new_key is None:
            raise OperatorError(
                f"registry row {row['id']}: no partition_date in metadata; cannot place it in the default layout"
            )
        old_key = row["s3_key"]
        with self._connect() as conn:
            if old_key == new_key:
                if meta.get("migrated_from") and not meta.get("old_key_deleted"):
                    self._delete_old(conn, row["id"], meta["migrated_from"])  # step 3 of an interrupted run
                    return "finished"
                return "already_there"
            new_url = self.store.url(new_key)
            other = conn.execute(
                f"SELECT id, upload_status, file_hash FROM {SCHEMA}.s3_files_registry WHERE s3_bucket = %s AND s3_key = %s",
                (self.store.bucket, new_key),
            ).fetchone()
            if row["upload_status"] not in DONE_STATUSES:
                with conn.transaction():
                    if other is not None:
                        _drop_superseded(conn, row["id"], new_key)
                    else:
                        conn.execute(
                            f"""UPDATE {SCHEMA}.s3_files_registry SET s3_key = %s, s3_url = %s,
                                    upload_status = 'pending', updated_at = now(),
                                    metadata = metadata || jsonb_build_object('rekeyed_from', %s::text)
                                WHERE id = %s""",
                            (new_key, new_url, old_key, row["id"]),
                        )
                return "rekeyed"
            if other is not None and other[1] in DONE_STATUSES and other[2] == row["file_hash"]:
                # The new key already holds these bytes under its own row (a pipeline run in the
                # new layout came first): verify, drop the old row, delete the old key.
                if self.store.verified_sha256(new_key) != row["file_hash"]:
                    raise IntegrityError(f"{new_key}: registered but its bytes differ from the registry")
                with conn.transaction():
                    _relink(conn, row["empresa"], row["numero_radicado"], row["s3_url"], new_url)
                    _drop_superseded(conn, row["id"], new_key)
                self.store.delete(old_key)
                return "merged"
            if other is not None:
                raise IntegrityError(f"{new_key}: already registered for other bytes; not overwritten")
            try:
                self.store.copy(old_key, new_key, row["file_hash"].strip())
            except ObjectExists:
                # A copy from an interrupted run (or someone else's object): S3's SHA-256 decides.
                if self.store.verified_sha256(new_key) != row["file_hash"].strip():
                    raise IntegrityError(f"{new_key}: holds different bytes; not overwritten") from None
            with conn.transaction():
                conn.execute(
                    f"""UPDATE {SCHEMA}.s3_files_registry SET s3_key = %s, s3_url = %s,
                            upload_source = 'migration', updated_at = now(),
                            metadata = metadata || jsonb_build_object('migrated_from', %s::text,
                                                                      'migrated_at', now()::text)
                        WHERE id = %s""",
                    (new_key, new_url, old_key, row["id"]),
                )
                _relink(conn, row["empresa"], row["numero_radicado"], row["s3_url"], new_url)
            self._delete_old(conn, row["id"], old_key)
            return "moved"


def migrate_layout(
    conn: psycopg.Connection, store: ObjectStore, layout: str, base_path: str, max_workers: int = 8
) -> MigrationCounts:
    """Move every registered object of ``store.bucket`` to ``layout`` (see the module doc).
    Rows are worked on in parallel, each on its own connection; an unusable bucket stops the
    run at once (the rest is done by the next run)."""
    if layout not in ("default", "central"):
        raise OperatorError(f"layout must be 'default' or 'central', not {layout!r}")
    info = conn.info.get_parameters()
    conninfo = {k: v for k, v in info.items() if k in ("host", "port", "dbname", "user", "sslmode", "sslrootcert")}
    if conn.info.password:
        conninfo["password"] = conn.info.password
    target = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    migrator = _Migrator(conninfo, store, layout, base_path)
    counts = MigrationCounts()
    rows = _rows(conn, store.bucket)

    def work(row: dict[str, Any]) -> tuple[str, str | None]:
        try:
            return migrator.one(row), None
        except StoreAccessError:
            raise
        except (OperatorError, IntegrityError) as exc:
            return "error", f"{row['s3_key']}: {exc}"
        except psycopg.Error as exc:  # (its DETAIL or CONTEXT may quote a row: Dagster metadata)
            translated = translate_pg_error(exc, target)
            return "error", f"{row['s3_key']}: {type(translated).__name__}: {translated}"[:500]
        except Exception as exc:  # noqa: BLE001 - reported per object, the others go on
            return "error", f"{row['s3_key']}: {type(exc).__name__}: {exc}"[:500]

    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="ov-migrate")
    try:
        for what, error in pool.map(work, rows):
            if error:
                counts.errors.append(error)
            elif what == "already_there":
                counts.already_there += 1
            else:
                setattr(counts, what, getattr(counts, what) + 1)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # stop at once; a rerun resumes
        raise
    finally:
        pool.shutdown(wait=True)
        migrator.close()
    return counts
