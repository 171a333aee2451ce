"""Quality over time (issue 19): ``ov_quality_daily``, one row per empresa and partition day,
written by the load in its own transaction from what it did: the partition's frame (files
seen, valid, rejected, warnings by code), the ``ov_rejects`` rows it upserted (rejects by reason)
and the table rows it stored (latency from extraction to load). Counts and codes only.

Idempotent by construction: a rerun of the same files sees the same frame and the same rejects,
and stores no row, so it keeps the latency of the load that did; only ``loaded_at`` moves.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.warehouse.tables import SCHEMA, table_name


@dataclass(frozen=True)
class QualityRow:
    """One row of ``ov_quality_daily``."""

    empresa: str
    fecha: dt.date
    files_seen: int
    valid: int
    rejected: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    warnings_by_code: dict[str, int] = field(default_factory=dict)
    reject_rate: float = 0.0
    load_latency_s: float | None = None
    loaded_at: dt.datetime | None = None


def frame_counts(part: pl.DataFrame) -> tuple[int, int, int, dict[str, int]]:
    """(files seen, valid, rejected, warnings by code over the valid files) of one partition's
    rows of the ``pqr_records`` frame."""
    valid = part.filter(pl.col("status") == "valid")
    warnings = Counter(w for ws in valid["warnings"].to_list() for w in (ws or ()))
    return part.height, valid.height, part.height - valid.height, dict(sorted(warnings.items()))


def _latency(conn: psycopg.Connection, empresa: str, radicados: list[str]) -> float | None:
    """The slowest of the partition's winners this transaction stored (``updated_at`` is the
    transaction's ``now()`` for rows it inserted or replaced): seconds from its extraction
    (Bogotá local time) to the load. None when it stored none."""
    row = conn.execute(
        sql.SQL(
            "SELECT max(extract(epoch FROM now() - (fecha_extraccion AT TIME ZONE 'America/Bogota'))) "
            "FROM {} WHERE numero_radicado = ANY(%s) AND updated_at = now() AND fecha_extraccion IS NOT NULL"
        ).format(sql.Identifier(SCHEMA, table_name(empresa))),
        (radicados,),
    ).fetchone()
    return None if row is None or row[0] is None else round(float(row[0]), 3)


def record_quality(conn: psycopg.Connection, keys: list[tuple[str, dt.date]], part: pl.DataFrame) -> None:
    """Upsert the ``ov_quality_daily`` row of every partition ``(empresa, day)`` of ``keys``
    from its rows of ``part``, inside the load's transaction, after its rejects were upserted."""
    for empresa, day in keys:
        rows = part.filter((pl.col("empresa") == empresa) & (pl.col("partition_date") == day))
        files, valid, rejected, warnings = frame_counts(rows)
        radicados = rows.filter(pl.col("is_winner"))["numero_radicado"].drop_nulls().to_list()
        latency = _latency(conn, empresa, radicados) if radicados else None
        conn.execute(
            f"""INSERT INTO {SCHEMA}.ov_quality_daily AS q (empresa, fecha, files_seen, valid, rejected,
                    rejected_by_reason, warnings_by_code, reject_rate, load_latency_s, loaded_at)
                SELECT %(e)s, %(d)s, %(files)s, %(valid)s, %(rejected)s,
                       coalesce((SELECT jsonb_object_agg(reason_code, n ORDER BY reason_code) FROM (
                           SELECT reason_code, count(*) AS n FROM {SCHEMA}.ov_rejects
                           WHERE empresa = %(e)s AND partition_date = %(d)s AND last_seen_at = now()
                           GROUP BY 1) r), '{{}}'::jsonb),
                       %(warnings)s::jsonb, %(rate)s, %(latency)s, now()
                ON CONFLICT (empresa, fecha) DO UPDATE SET
                    files_seen = EXCLUDED.files_seen, valid = EXCLUDED.valid, rejected = EXCLUDED.rejected,
                    rejected_by_reason = EXCLUDED.rejected_by_reason, warnings_by_code = EXCLUDED.warnings_by_code,
                    reject_rate = EXCLUDED.reject_rate,
                    load_latency_s = coalesce(EXCLUDED.load_latency_s, q.load_latency_s),
                    loaded_at = EXCLUDED.loaded_at""",
            {
                "e": empresa,
                "d": day,
                "files": files,
                "valid": valid,
                "rejected": rejected,
                "warnings": json.dumps(warnings),
                "rate": round(rejected / files, 6) if files else 0.0,
                "latency": latency,
            },
        )


def read_quality(conn: psycopg.Connection, keys: list[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], QualityRow]:
    """The stored rows of the partitions ``(empresa, day)`` (those a load has written)."""
    rows: list[Any] = conn.execute(
        f"""SELECT empresa, fecha, files_seen, valid, rejected, rejected_by_reason, warnings_by_code,
                   reject_rate, load_latency_s, loaded_at
            FROM {SCHEMA}.ov_quality_daily q
            WHERE (empresa, fecha) IN (SELECT * FROM unnest(%s::text[], %s::date[]))""",
        ([e for e, _ in keys], [d for _, d in keys]),
    ).fetchall()
    return {
        (r[0], r[1]): QualityRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            dict(r[5]),
            dict(r[6]),
            float(r[7]),
            None if r[8] is None else float(r[8]),
            r[9],
        )
        for r in rows
    }


@dataclass(frozen=True)
class QualityDay:
    """One empresa's ``ov_quality_daily`` rows written on one day (the daily summary's part)."""

    partitions: int = 0
    files_seen: int = 0
    rejected: int = 0
    max_latency_s: float | None = None

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.files_seen if self.files_seen else 0.0


def written_between(conn: psycopg.Connection, empresa: str, start: dt.datetime, end: dt.datetime) -> QualityDay:
    """The rows of ``empresa`` whose latest load wrote them in [start, end): how many
    partitions, their files and rejects, their slowest load latency."""
    row: Any = conn.execute(
        f"""SELECT count(*), coalesce(sum(files_seen), 0), coalesce(sum(rejected), 0), max(load_latency_s)
            FROM {SCHEMA}.ov_quality_daily WHERE empresa = %s AND loaded_at >= %s AND loaded_at < %s""",
        (empresa, start, end),
    ).fetchone()
    return QualityDay(int(row[0]), int(row[1]), int(row[2]), None if row[3] is None else float(row[3]))
