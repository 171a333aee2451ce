"""Near-duplicate PQRs in PostgreSQL (issue 19): the candidates of a partition fetched by SQL
(the table's rows within ``max_days`` of the day that share a NIC or document with one of the
day's rows), scored by ``core.near_duplicates``, stored in ``ov_near_duplicates``.

The day's rows are read from the table, not from the frame: the table holds what won (a newer
extraction may be stored from elsewhere). A refresh replaces every pair that involves one of
the day's radicados, so a complaint reworded by a newer version leaves no stale pair behind.
The text is read here and compared in memory; only radicados, days and scores are stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ov_assets.core.near_duplicates import TEXT_FIELD, Filing, Pair, find_pairs
from ov_assets.warehouse.tables import SCHEMA, table_name


@dataclass(frozen=True)
class RefreshCounts:
    """What one partition's refresh found (counts only)."""

    compared: int  # the day's PQRs with a NIC or document and a text
    candidates: int  # other PQRs within the window sharing one of them
    pairs: int  # pairs involving one of the day's PQRs
    new_pairs: int  # of those, first found now
    removed: int  # stale pairs deleted


def _filings(rows: list[Any]) -> list[Filing]:
    return [Filing(r[0], r[1], r[2] or "", r[3] or "", r[4] or "") for r in rows]


def fetch_candidates(
    conn: psycopg.Connection, empresa: str, day: dt.date, max_days: int
) -> tuple[list[Filing], list[Filing]]:
    """(the day's PQRs, the other PQRs filed within ``max_days`` of the day that share a NIC or
    document with one of them): two indexed range reads of ``fecha``."""
    table = sql.Identifier(SCHEMA, table_name(empresa))
    cols = sql.SQL("numero_radicado, fecha, nic, documento_identidad, {}").format(sql.Identifier(TEXT_FIELD))
    start, end = day, day + dt.timedelta(days=1)
    today = _filings(
        conn.execute(
            sql.SQL("SELECT {cols} FROM {t} WHERE fecha >= %s AND fecha < %s").format(cols=cols, t=table),
            (start, end),
        ).fetchall()
    )
    nics = sorted({f.nic for f in today if f.nic})
    docs = sorted({f.documento for f in today if f.documento})
    if not nics and not docs:
        return today, []
    others = _filings(
        conn.execute(
            sql.SQL(
                "SELECT {cols} FROM {t} WHERE fecha >= %s AND fecha < %s AND NOT (fecha >= %s AND fecha < %s) "
                "AND (nic = ANY(%s) OR documento_identidad = ANY(%s))"
            ).format(cols=cols, t=table),
            (start - dt.timedelta(days=max_days), end + dt.timedelta(days=max_days), start, end, nics, docs),
        ).fetchall()
    )
    return today, others


def store_pairs(conn: psycopg.Connection, empresa: str, radicados: list[str], pairs: list[Pair]) -> tuple[int, int]:
    """Make the stored pairs that involve one of ``radicados`` exactly ``pairs``: (new, removed).
    ``found_at`` of a pair found before is kept."""
    keep = [(p.numero_radicado, p.other_radicado) for p in pairs]
    removed = conn.execute(
        f"""DELETE FROM {SCHEMA}.ov_near_duplicates d
            WHERE d.empresa = %s AND (d.numero_radicado = ANY(%s) OR d.other_radicado = ANY(%s))
              AND (d.numero_radicado, d.other_radicado) NOT IN (
                  SELECT * FROM unnest(%s::text[], %s::text[]))""",
        (empresa, radicados, radicados, [a for a, _ in keep], [b for _, b in keep]),
    ).rowcount
    if not pairs:
        return 0, removed
    rows = conn.execute(
        f"""INSERT INTO {SCHEMA}.ov_near_duplicates AS d
                (empresa, numero_radicado, other_radicado, days_apart, similarity, rule)
            SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::float8[], %s::text[])
            ON CONFLICT (empresa, numero_radicado, other_radicado) DO UPDATE SET
                days_apart = EXCLUDED.days_apart, similarity = EXCLUDED.similarity, rule = EXCLUDED.rule
            RETURNING (xmax = 0)""",
        (
            empresa,
            [p.numero_radicado for p in pairs],
            [p.other_radicado for p in pairs],
            [p.days_apart for p in pairs],
            [p.similarity for p in pairs],
            [p.rule for p in pairs],
        ),
    ).fetchall()
    return sum(1 for (inserted,) in rows if inserted), removed


def refresh_partition(
    conn: psycopg.Connection, empresa: str, day: dt.date, threshold: float, max_days: int
) -> RefreshCounts:
    """Find and store the near-duplicates of one partition's PQRs, in one transaction."""
    with conn.transaction():
        today, others = fetch_candidates(conn, empresa, day, max_days)
        pairs = find_pairs(today, others, threshold, max_days)
        new, removed = store_pairs(conn, empresa, [f.numero_radicado for f in today], pairs)
    compared = sum(1 for f in today if (f.nic or f.documento) and f.text.strip())
    return RefreshCounts(compared, len(others), len(pairs), new, removed)


def partition_pairs(conn: psycopg.Connection, empresa: str, day: dt.date) -> list[tuple[str, str, int, float, str]]:
    """The stored pairs involving a PQR filed on ``day``: (radicado, other, days_apart,
    similarity, rule), sorted; what the check re-reads (through both radicado indexes)."""
    table = sql.Identifier(SCHEMA, table_name(empresa))
    return [
        (r[0], r[1], int(r[2]), float(r[3]), r[4])
        for r in conn.execute(
            sql.SQL(
                "WITH day AS (SELECT numero_radicado FROM {t} WHERE fecha >= %s AND fecha < %s) "
                "SELECT d.numero_radicado, d.other_radicado, d.days_apart, d.similarity, d.rule "
                "FROM {nd} d WHERE d.empresa = %s AND (d.numero_radicado IN (SELECT numero_radicado FROM day) "
                "OR d.other_radicado IN (SELECT numero_radicado FROM day)) ORDER BY 1, 2"
            ).format(nd=sql.Identifier(SCHEMA, "ov_near_duplicates"), t=table),
            (day, day + dt.timedelta(days=1), empresa),
        ).fetchall()
    ]
