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


def frame_counts(part: pl.DataFrame) -> dict[tuple[str, dt.date], tuple[int, int, dict[str, int]]]:
    """(empresa, day) -> (files seen, valid, warnings by code over the valid files) of the rows
    of the ``pqr_records`` frame ``part``, grouped in polars (no Python loop per row)."""
    keys = ["empresa", "partition_date"]
    out: dict[tuple[str, dt.date], tuple[int, int, dict[str, int]]] = {}
    sizes = part.group_by(keys).agg(pl.len().alias("files"), (pl.col("status") == "valid").sum().alias("valid"))
    for empresa, day, files, valid in sizes.iter_rows():
        out[(empresa, day)] = (int(files), int(valid), {})
    codes = (
        part.filter(pl.col("status") == "valid")
        .select(*keys, pl.col("warnings"))
        .explode("warnings")
        .drop_nulls("warnings")
        .group_by(*keys, "warnings")
        .len()
        .sort(*keys, "warnings")
    )
    for empresa, day, code, n in codes.iter_rows():
        out[(empresa, day)][2][code] = int(n)
    return out


def _latencies(conn: psycopg.Connection, empresa: str, days: list[dt.date]) -> dict[dt.date, float]:
    """Per day: the slowest of the rows this transaction stored (``updated_at`` is the
    transaction's ``now()`` for a row it inserted or replaced) filed that day: seconds from its
    extraction (Bogotá local time) to the load. Days where it stored none are absent. One
    statement, a range read of the ``fecha`` index per day."""
    rows = conn.execute(
        sql.SQL(
            "SELECT d.day, max(extract(epoch FROM now() - (t.fecha_extraccion AT TIME ZONE 'America/Bogota'))) "
            "FROM unnest(%s::date[]) AS d(day) JOIN {} t ON t.fecha >= d.day AND t.fecha < d.day + 1 "
            "WHERE t.updated_at = now() AND t.fecha_extraccion IS NOT NULL GROUP BY 1"
        ).format(sql.Identifier(SCHEMA, table_name(empresa))),
        (sorted(set(days)),),
    ).fetchall()
    return {d: round(float(v), 3) for d, v in rows if v is not None}


def record_quality(conn: psycopg.Connection, keys: list[tuple[str, dt.date]], part: pl.DataFrame) -> None:
    """Upsert the ``ov_quality_daily`` row of every partition ``(empresa, day)`` of ``keys``
    from its rows of ``part``, inside the load's transaction, after its rejects were upserted:
    one read per empresa for the latency, one statement for all the rows."""
    if not keys:
        return
    counts = frame_counts(part)
    latency: dict[tuple[str, dt.date], float] = {}
    for empresa in sorted({e for e, _ in keys}):
        days = [d for e, d in keys if e == empresa]
        latency |= {(empresa, d): v for d, v in _latencies(conn, empresa, days).items()}
    files = [counts.get(k, (0, 0, {}))[0] for k in keys]
    valid = [counts.get(k, (0, 0, {}))[1] for k in keys]
    conn.execute(
        f"""INSERT INTO {SCHEMA}.ov_quality_daily AS q (empresa, fecha, files_seen, valid, rejected,
                rejected_by_reason, warnings_by_code, reject_rate, load_latency_s, loaded_at)
            SELECT k.empresa, k.fecha, k.files, k.valid, k.files - k.valid,
                   coalesce((SELECT jsonb_object_agg(r.reason_code, r.n ORDER BY r.reason_code) FROM (
                       SELECT reason_code, count(*) AS n FROM {SCHEMA}.ov_rejects
                       WHERE empresa = k.empresa AND partition_date = k.fecha AND last_seen_at = now()
                       GROUP BY 1) r), '{{}}'::jsonb),
                   k.warnings, CASE WHEN k.files > 0 THEN (k.files - k.valid)::float8 / k.files ELSE 0 END,
                   k.latency, now()
            FROM unnest(%s::text[], %s::date[], %s::int[], %s::int[], %s::jsonb[], %s::float8[])
                 AS k(empresa, fecha, files, valid, warnings, latency)
            ON CONFLICT (empresa, fecha) DO UPDATE SET
                files_seen = EXCLUDED.files_seen, valid = EXCLUDED.valid, rejected = EXCLUDED.rejected,
                rejected_by_reason = EXCLUDED.rejected_by_reason, warnings_by_code = EXCLUDED.warnings_by_code,
                reject_rate = EXCLUDED.reject_rate,
                load_latency_s = coalesce(EXCLUDED.load_latency_s, q.load_latency_s),
                loaded_at = EXCLUDED.loaded_at""",
        (
            [e for e, _ in keys],
            [d for _, d in keys],
            files,
            valid,
            [json.dumps(counts.get(k, (0, 0, {}))[2]) for k in keys],
            [latency.get(k) for k in keys],
        ),
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
