"""What the pipeline did on one Bogotá day, per empresa, read from PostgreSQL (issue 17, the
daily summary). Counts and codes only: no column that holds personal data is selected.

- ``inserted`` / ``updated`` / ``loads``: ``ov_load_audit`` rows finished that day;
- ``rejects``: ``ov_rejects`` files seen that day (``last_seen_at``), by ``reason_code``;
- ``warnings``: rows of ``ov_{empresa}`` written that day (``updated_at``), by warning code;
- ``stored``: ``s3_files_registry`` rows ``uploaded`` / ``pre_existing`` that day
  (``uploaded_at``, else ``updated_at``); ``pending`` / ``error``: the open backlog now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ov_assets.core.contract import BOGOTA, EMPRESAS

SCHEMA = "data_general"


@dataclass(frozen=True)
class EmpresaDay:
    empresa: str
    loads: int = 0
    inserted: int = 0
    updated: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    pending: int = 0
    error: int = 0


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[00:00, next 00:00) of ``day`` in Bogotá, as aware datetimes (compared with timestamptz)."""
    start = dt.datetime.combine(day, dt.time(0, 0), BOGOTA)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), BOGOTA)


def empresa_day(conn: psycopg.Connection, empresa: str, day: dt.date) -> EmpresaDay:
    start, end = day_bounds(day)
    audit: Any = conn.execute(
        "SELECT count(*), coalesce(sum(db_inserted), 0), coalesce(sum(db_updated), 0) "
        "FROM data_general.ov_load_audit WHERE empresa = %s AND finished_at >= %s AND finished_at < %s",
        (empresa, start, end),
    ).fetchone()
    loads, inserted, updated = audit
    rejects: dict[Any, Any] = dict(
        conn.execute(
            "SELECT reason_code, count(*) FROM data_general.ov_rejects "
            "WHERE empresa = %s AND last_seen_at >= %s AND last_seen_at < %s GROUP BY 1 ORDER BY 1",
            (empresa, start, end),
        ).fetchall()
    )
    warnings: dict[Any, Any] = dict(
        conn.execute(
            sql.SQL(
                "SELECT w.code, count(*) FROM {}, jsonb_array_elements_text(t.warnings) AS w(code) "
                "WHERE t.updated_at >= %s AND t.updated_at < %s GROUP BY 1 ORDER BY 1"
            ).format(sql.SQL("{} AS t").format(sql.Identifier(SCHEMA, f"ov_{empresa}"))),
            (start, end),
        ).fetchall()
    )
    objects: Any = conn.execute(
        "SELECT count(*) FILTER (WHERE upload_status IN ('uploaded', 'pre_existing') "
        "                          AND coalesce(uploaded_at, updated_at) >= %s AND coalesce(uploaded_at, updated_at) < %s), "
        "       count(*) FILTER (WHERE upload_status = 'pending'), count(*) FILTER (WHERE upload_status = 'error') "
        "FROM data_general.s3_files_registry WHERE empresa = %s",
        (start, end, empresa),
    ).fetchone()
    stored, pending, error = objects
    return EmpresaDay(
        empresa,
        int(loads),
        int(inserted),
        int(updated),
        {str(k): int(v) for k, v in rejects.items()},
        {str(k): int(v) for k, v in warnings.items()},
        int(stored),
        int(pending),
        int(error),
    )


def summarize(conn: psycopg.Connection, day: dt.date, empresas: tuple[str, ...] = EMPRESAS) -> list[EmpresaDay]:
    """One ``EmpresaDay`` per empresa, read in one transaction."""
    with conn.transaction():
        return [empresa_day(conn, empresa, day) for empresa in empresas]


# --- ov-assets status: the state now, per empresa ---------------------------------------------

REJECT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class RegistryStatus:
    objects: int
    bytes: int


@dataclass(frozen=True)
class EmpresaStatus:
    """Where one empresa stands (``ov-assets status``): counts, times and codes only.

    ``rejects``: the unresolved ``ov_rejects`` rows (``resolved_at`` NULL) seen by a load in the
    last ``REJECT_WINDOW_DAYS`` days (``last_seen_at``), by reason; ``registry``: every
    ``s3_files_registry`` row of the empresa by ``upload_status``, with the bytes they describe."""

    empresa: str
    rows: int
    rows_archived: int
    last_load_at: dt.datetime | None
    history_rows: int
    rejects: dict[str, int]
    registry: dict[str, RegistryStatus]

    @property
    def pending(self) -> int:
        return self.registry.get("pending", RegistryStatus(0, 0)).objects

    @property
    def error(self) -> int:
        return self.registry.get("error", RegistryStatus(0, 0)).objects

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_archived": self.rows_archived,
            "last_load_at": self.last_load_at.isoformat() if self.last_load_at else None,
            "history_rows": self.history_rows,
            f"rejects_last_{REJECT_WINDOW_DAYS}_days": dict(self.rejects),
            "registry": {k: {"objects": v.objects, "bytes": v.bytes} for k, v in self.registry.items()},
            "pending": self.pending,
            "error": self.error,
        }


def _one(conn: psycopg.Connection, query: sql.SQL | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return row


def empresa_status(conn: psycopg.Connection, empresa: str) -> EmpresaStatus:
    table = sql.Identifier(SCHEMA, f"ov_{empresa}")
    rows, archived = _one(
        conn, sql.SQL("SELECT count(*), count(*) FILTER (WHERE procesado_flag) FROM {}").format(table)
    )
    (history,) = _one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, f"ov_{empresa}_history")))
    (last_load,) = _one(
        conn, sql.SQL("SELECT max(finished_at) FROM data_general.ov_load_audit WHERE empresa = %s"), (empresa,)
    )
    rejects = conn.execute(
        "SELECT reason_code, count(*) FROM data_general.ov_rejects WHERE empresa = %s AND resolved_at IS NULL "
        "AND last_seen_at >= now() - make_interval(days => %s) GROUP BY 1 ORDER BY 1",
        (empresa, REJECT_WINDOW_DAYS),
    ).fetchall()
    registry = conn.execute(
        "SELECT upload_status, count(*), coalesce(sum(file_size), 0) FROM data_general.s3_files_registry "
        "WHERE empresa = %s GROUP BY 1 ORDER BY 1",
        (empresa,),
    ).fetchall()
    return EmpresaStatus(
        empresa,
        int(rows),
        int(archived),
        last_load,
        int(history),
        {str(k): int(v) for k, v in rejects},
        {str(k): RegistryStatus(int(n), int(b)) for k, n, b in registry},
    )


def status(conn: psycopg.Connection, empresas: tuple[str, ...] = EMPRESAS) -> list[EmpresaStatus]:
    """One ``EmpresaStatus`` per empresa, read in one transaction."""
    with conn.transaction():
        return [empresa_status(conn, empresa) for empresa in empresas]
