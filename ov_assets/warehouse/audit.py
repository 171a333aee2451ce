"""The load's bookkeeping (CONTRACT §6): its per-partition counts, the rejects it upserts into
``ov_rejects`` (and resolves when a file name earns them no longer) and its ``ov_load_audit``
rows, all written in the load's transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import polars as pl
import psycopg

from ov_assets.warehouse.tables import SCHEMA


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

    def add(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(**{k: v + getattr(other, k) for k, v in asdict(self).items()})


def upsert_rejects(conn: psycopg.Connection, rejects: pl.DataFrame) -> None:
    """All the run's rejects in one statement; one row per (empresa, file, reason), the last
    one seen winning (as the old row-by-row upsert did)."""
    if rejects.is_empty():
        return
    rows = rejects.select(
        "empresa",
        "partition_date",
        "file_name",
        "file_sha256",
        "numero_radicado",
        pl.col("reject_code"),
        pl.col("reject_detail"),
    ).unique(subset=["empresa", "file_name", "reject_code"], keep="last", maintain_order=True)
    conn.execute(
        f"""INSERT INTO {SCHEMA}.ov_rejects
               (empresa, partition_date, file_name, file_sha256, numero_radicado, reason_code, detail)
            SELECT * FROM unnest(%s::text[], %s::date[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
            ON CONFLICT (empresa, file_name, reason_code) DO UPDATE SET
                last_seen_at = now(), file_sha256 = EXCLUDED.file_sha256, resolved_at = NULL,
                detail = EXCLUDED.detail, numero_radicado = EXCLUDED.numero_radicado,
                partition_date = EXCLUDED.partition_date""",
        [rows[c].to_list() for c in rows.columns],
    )


def resolve_rejects(conn: psycopg.Connection, files: pl.DataFrame) -> None:
    """The rejects of the partitions' file names that their current bytes no longer earn are
    resolved: every reason of a file that is valid now (fixed in place, or a fecha no longer in
    the future), the other reasons of a file rejected now for another one. ``resolved_at`` is
    set once and the row stays as history (reason, the rejected bytes' SHA-256, when it was
    seen); a rejection for that reason later opens it again (``upsert_rejects``)."""
    current = files.select(
        "empresa",
        "file_name",
        pl.when(pl.col("status") == "rejected").then(pl.col("reject_code")).alias("reason_code"),
    ).unique()
    if current.is_empty():
        return
    conn.execute(
        f"""WITH cur AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) AS c(empresa, file_name, reason_code))
            UPDATE {SCHEMA}.ov_rejects r SET resolved_at = now()
            WHERE r.resolved_at IS NULL
              AND (r.empresa, r.file_name) IN (SELECT empresa, file_name FROM cur)
              AND (r.empresa, r.file_name, r.reason_code) NOT IN (
                  SELECT empresa, file_name, reason_code FROM cur WHERE reason_code IS NOT NULL)""",
        [current[c].to_list() for c in current.columns],
    )


def record_audit(
    conn: psycopg.Connection, run_id: str, started: dt.datetime, counts: dict[tuple[str, dt.date], LoadCounts]
) -> None:
    """Append one ``ov_load_audit`` row per partition of ``counts`` (in its order) for this run;
    a retry of the run after a lost COMMIT acknowledgement adds none."""
    keys = list(counts)
    audit = {
        "run": run_id,
        "started": started,
        "e": [e for e, _ in keys],
        "d": [d for _, d in keys],
        **{
            f: [getattr(counts[k], f) for k in keys]
            for f in ("files_seen", "records_valid", "db_inserted", "db_updated", "rejected")
        },
        "db_duplicates": [counts[k].db_duplicates + counts[k].db_skipped_older for k in keys],
    }
    # One row per (run, partition): a partition this run already committed keeps its row.
    conn.execute(
        f"""INSERT INTO {SCHEMA}.ov_load_audit (run_id, empresa, partition_date, files_seen,
                records_valid, db_inserted, db_updated, db_duplicates, rejected, started_at, finished_at)
            SELECT %(run)s, u.*, %(started)s, clock_timestamp()
            FROM unnest(%(e)s::text[], %(d)s::date[], %(files_seen)s::int[], %(records_valid)s::int[],
                        %(db_inserted)s::int[], %(db_updated)s::int[], %(db_duplicates)s::int[],
                        %(rejected)s::int[]) AS u(empresa, partition_date)
            WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.ov_load_audit a WHERE a.run_id = %(run)s
                              AND a.empresa = u.empresa AND a.partition_date = u.partition_date)""",
        audit,
    )
