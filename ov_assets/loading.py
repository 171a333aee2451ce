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
from dataclasses import asdict, dataclass

import orjson
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


def _stage(conn: psycopg.Connection, winners: pl.DataFrame) -> None:
    conn.execute(
        "CREATE TEMP TABLE ov_stage ("
        + ", ".join(f"{f} TEXT" for f in BUSINESS_FIELDS if f != "fecha")
        + ", fecha TIMESTAMP, hash_registro TEXT, fecha_extraccion TIMESTAMP, archivo_origen TEXT, warnings JSONB"
        + ") ON COMMIT DROP"
    )
    copy_sql = sql.SQL("COPY ov_stage ({}) FROM STDIN").format(_cols(LOAD_COLUMNS))
    rows = winners.select(
        *[pl.col("fecha_dt").alias("fecha") if f == "fecha" else pl.col(f) for f in BUSINESS_FIELDS],
        "hash_registro",
        "fecha_extraccion",
        pl.col("file_name").alias("archivo_origen"),
        "warnings",
    ).iter_rows()
    with conn.cursor().copy(copy_sql) as copy:
        for row in rows:
            copy.write_row((*row[:-1], orjson.dumps(row[-1]).decode()))


def upsert_winners(conn: psycopg.Connection, empresa: str, winners: pl.DataFrame, run_id: str) -> LoadCounts:
    """Inside the caller's transaction: stage, write history, update, insert. Returns counts."""
    table = _ident(SCHEMA, table_name(empresa))
    history = _ident(SCHEMA, f"{table_name(empresa)}_history")
    counts = LoadCounts(records_valid=winners.height)
    if winners.is_empty():
        return counts
    _stage(conn, winners)
    changed = sql.SQL(
        "FROM ov_stage s WHERE s.numero_radicado = t.numero_radicado "
        "AND t.hash_registro IS DISTINCT FROM s.hash_registro AND {}"
    ).format(_newer_or_equal())
    conn.execute(
        sql.SQL(
            "INSERT INTO {history} (replaced_by_run, {cols}) "
            "SELECT %s, {tcols} FROM {table} t WHERE EXISTS (SELECT 1 {changed}) "
            "ORDER BY t.numero_radicado FOR UPDATE OF t"
        ).format(history=history, cols=_cols(TABLE_COLUMNS), tcols=_cols(TABLE_COLUMNS, "t"),
                 table=table, changed=changed),
        (run_id,),
    )
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in LOAD_COLUMNS
    )
    cur = conn.execute(
        sql.SQL(
            "UPDATE {table} t SET {assignments}, archivos_s3_urls = '[]'::jsonb, procesado_flag = FALSE, "
            "updated_at = now() {changed}"
        ).format(table=table, assignments=assignments, changed=changed)
    )
    counts.db_updated = cur.rowcount
    cur = conn.execute(
        sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM ov_stage ORDER BY numero_radicado "
            "ON CONFLICT (numero_radicado) DO NOTHING"
        ).format(table=table, cols=_cols(LOAD_COLUMNS))
    )
    counts.db_inserted = cur.rowcount
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE t.hash_registro = s.hash_registro), "
            "count(*) FILTER (WHERE t.hash_registro IS DISTINCT FROM s.hash_registro) "
            "FROM ov_stage s JOIN {table} t USING (numero_radicado)"
        ).format(table=table)
    ).fetchone()
    assert row is not None
    same, different = row
    counts.db_duplicates = same - counts.db_inserted - counts.db_updated
    counts.db_skipped_older = different
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
    return counts
