"""The load of one partition into PostgreSQL (CONTRACT §6): COPY the winners into a staging
table, then one set-based upsert, in one transaction under a per-partition advisory lock.

- new radicados are inserted;
- a changed row is updated only when the incoming extraction is not older than the stored one
  (adopted rows, ``archivo_origen IS NULL``, count as older than anything), and its previous
  version goes to ``ov_{empresa}_history``;
- unchanged rows are counted as duplicates and not touched (idempotency);
- rejects are upserted into ``ov_rejects`` (``last_seen_at`` moves), one audit row is appended.

Two loads of the same partition serialize on the lock; a killed load leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.contract import BUSINESS_FIELDS

SCHEMA = "data_general"
# Columns the load writes, in COPY order (fecha is the parsed timestamp).
LOAD_COLUMNS: tuple[str, ...] = (
    *BUSINESS_FIELDS,
    "hash_registro",
    "fecha_extraccion",
    "archivo_origen",
    "warnings",
)
# Columns copied into history (everything of the current table but its generated defaults).
TABLE_COLUMNS: tuple[str, ...] = (
    "id",
    *LOAD_COLUMNS,
    "archivos_s3_urls",
    "procesado_flag",
    "created_at",
    "updated_at",
)


def table_name(empresa: str) -> str:
    if empresa not in ("afinia", "aire"):
        raise ValueError(f"unknown empresa {empresa!r}")
    return f"ov_{empresa}"


def lock_key(empresa: str, day: dt.date) -> str:
    return f"ov_assets:partition:{empresa}:{day.isoformat()}"


@dataclass
class LoadCounts:
    """What one partition's load did (CONTRACT §6 names)."""

    files_seen: int = 0
    records_valid: int = 0
    db_inserted: int = 0
    db_updated: int = 0
    db_duplicates: int = 0
    db_skipped_older: int = 0
    rejected: int = 0

    def add(self, other: "LoadCounts") -> "LoadCounts":
        return LoadCounts(**{k: v + getattr(other, k) for k, v in asdict(self).items()})


def _ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def _cols(names: tuple[str, ...], prefix: str | None = None) -> sql.Composed:
    if prefix:
        return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _newer_or_equal() -> sql.SQL:
    """The incoming version (s) may replace the stored one (t)."""
    return sql.SQL(
        "(t.archivo_origen IS NULL OR t.fecha_extraccion IS NULL OR "
        "(s.fecha_extraccion, s.archivo_origen COLLATE \"C\") >= (t.fecha_extraccion, t.archivo_origen COLLATE \"C\"))"
    )


_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS ov_stage ("
    + ", ".join("fecha TIMESTAMP" if f == "fecha" else f"{f} TEXT" for f in BUSINESS_FIELDS)
    + ", hash_registro TEXT, fecha_extraccion TIMESTAMP, archivo_origen TEXT, warnings JSONB"
    + ") ON COMMIT DELETE ROWS"
)
_COPY_CHUNK = 1 << 20


def _barrier(point: str) -> None:
    """Test hook: with ``OV_TEST_LOAD_BARRIER=point:dir`` the load announces that it reached
    ``point`` (``dir/point.reached``) and waits for ``dir/point.release``, so a test can kill
    the process at an exact place. Inert unless the variable names this point."""
    spec = os.environ.get("OV_TEST_LOAD_BARRIER")
    if not spec or not spec.startswith(point + ":"):
        return
    folder = Path(spec.split(":", 1)[1])
    (folder / f"{point}.reached").write_text(str(os.getpid()))
    release = folder / f"{point}.release"
    while not release.exists():
        time.sleep(0.01)


def stage_csv(winners: pl.DataFrame) -> bytes:
    """The winners as CSV in ``LOAD_COLUMNS`` order, as COPY reads them (polars writes it in
    native code: no Python loop per row). Empty strings are quoted, NULL is empty."""
    warnings_json = (
        pl.format("[{}]", pl.col("warnings").list.eval(pl.format('"{}"', pl.element())).list.join(","))
        .fill_null("[]")
        .alias("warnings")
    )
    frame = winners.select(
        *[pl.col("fecha_dt").alias("fecha") if f == "fecha" else pl.col(f) for f in BUSINESS_FIELDS],
        "hash_registro",
        "fecha_extraccion",
        pl.col("file_name").alias("archivo_origen"),
        warnings_json,
    )
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.f", null_value="")
    return buf.getvalue()


def _stage(conn: psycopg.Connection, winners: pl.DataFrame) -> None:
    conn.execute(_STAGE_DDL)
    data = stage_csv(winners)
    copy_sql = sql.SQL("COPY ov_stage ({}) FROM STDIN (FORMAT csv)").format(_cols(LOAD_COLUMNS))
    with conn.cursor().copy(copy_sql) as copy:
        half = len(data) // 2
        copy.write(data[:half])
        _barrier("copy")  # tests: killed with half the rows sent
        for i in range(half, len(data), _COPY_CHUNK):
            copy.write(data[i:i + _COPY_CHUNK])


def upsert_winners(conn: psycopg.Connection, empresa: str, winners: pl.DataFrame, run_id: str) -> LoadCounts:
    """Inside the caller's transaction: stage, then three set-based statements.

    1. compare: how many incoming rows are unchanged, older than what is stored, or new;
    2. one statement that locks the rows to replace (in key order), copies their current
       version to history and updates them;
    3. insert the radicados not stored yet.
    """
    table = _ident(SCHEMA, table_name(empresa))
    history = _ident(SCHEMA, f"{table_name(empresa)}_history")
    counts = LoadCounts(records_valid=winners.height)
    if winners.is_empty():
        return counts
    _stage(conn, winners)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE t.hash_registro = s.hash_registro), "
            "count(*) FILTER (WHERE t.hash_registro IS DISTINCT FROM s.hash_registro AND NOT {newer}), "
            "count(*) "
            "FROM ov_stage s JOIN {table} t USING (numero_radicado)"
        ).format(table=table, newer=_newer_or_equal())
    ).fetchone()
    assert row is not None
    counts.db_duplicates, counts.db_skipped_older, stored = row
    if stored - counts.db_duplicates - counts.db_skipped_older > 0:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in LOAD_COLUMNS
        )
        cur = conn.execute(
            sql.SQL(
                "WITH old AS ("
                "  SELECT {tcols} FROM {table} t JOIN ov_stage s USING (numero_radicado) "
                "  WHERE t.hash_registro IS DISTINCT FROM s.hash_registro AND {newer} "
                "  ORDER BY t.numero_radicado FOR UPDATE OF t), "
                "upd AS ("
                "  UPDATE {table} t SET {assignments}, archivos_s3_urls = '[]'::jsonb, "
                "  procesado_flag = FALSE, updated_at = now() "
                "  FROM ov_stage s, old WHERE t.id = old.id AND s.numero_radicado = old.numero_radicado) "
                "INSERT INTO {history} (replaced_by_run, {cols}) SELECT %s, {cols} FROM old"
            ).format(history=history, cols=_cols(TABLE_COLUMNS), tcols=_cols(TABLE_COLUMNS, "t"),
                     table=table, newer=_newer_or_equal(), assignments=assignments),
            (run_id,),
        )
        counts.db_updated = cur.rowcount
    if winners.height > stored:
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM ov_stage s "
                "WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.numero_radicado = s.numero_radicado) "
                "ORDER BY s.numero_radicado ON CONFLICT (numero_radicado) DO NOTHING"
            ).format(table=table, cols=_cols(LOAD_COLUMNS))
        )
        counts.db_inserted = cur.rowcount
    # A radicado inserted meanwhile by a load of another partition (its fecha moved) was not
    # written by us: it counts as unchanged-or-older, never lost silently.
    counts.db_duplicates += winners.height - stored - counts.db_inserted
    return counts


def upsert_rejects(conn: psycopg.Connection, empresa: str, day: dt.date, rejects: pl.DataFrame) -> None:
    if rejects.is_empty():
        return
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.ov_rejects
                   (empresa, partition_date, file_name, file_sha256, numero_radicado, reason_code, detail)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (empresa, file_name, reason_code) DO UPDATE SET
                    last_seen_at = now(), file_sha256 = EXCLUDED.file_sha256,
                    detail = EXCLUDED.detail, numero_radicado = EXCLUDED.numero_radicado,
                    partition_date = EXCLUDED.partition_date""",
            [
                (empresa, day, r["file_name"], r["file_sha256"], r["numero_radicado"], r["reject_code"],
                 r["reject_detail"])
                for r in rejects.iter_rows(named=True)
            ],
        )


def load_partition(
    conn: psycopg.Connection, empresa: str, day: dt.date, frame: pl.DataFrame, run_id: str,
    dry_run: bool = False,
) -> LoadCounts:
    """Load one partition's frame (from ``pqr_records``) in one transaction. With ``dry_run``
    everything is computed and rolled back: the counts say what would happen."""
    started = dt.datetime.now(dt.timezone.utc)
    part = frame.filter((pl.col("empresa") == empresa) & (pl.col("partition_date") == day))
    winners = part.filter(pl.col("is_winner"))
    rejects = part.filter(pl.col("status") == "rejected")
    tx = conn.transaction(force_rollback=dry_run)
    with tx:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key(empresa, day),))
        counts = upsert_winners(conn, empresa, winners, run_id)
        counts.files_seen = part.height
        counts.records_valid = part.filter(pl.col("status") == "valid").height
        counts.rejected = rejects.height
        upsert_rejects(conn, empresa, day, rejects)
        conn.execute(
            f"""INSERT INTO {SCHEMA}.ov_load_audit (run_id, empresa, partition_date, files_seen,
                    records_valid, db_inserted, db_updated, db_duplicates, rejected, started_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (run_id, empresa, day, counts.files_seen, counts.records_valid, counts.db_inserted,
             counts.db_updated, counts.db_duplicates + counts.db_skipped_older, counts.rejected, started),
        )
        _barrier("commit")  # tests: killed with everything written but not committed
    return counts
