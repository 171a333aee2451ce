"""The 23:45 archive of the day's reports (CONTRACT §10) to the object store:

    {S3_BASE_PATH}/reports/{empresa}/{yyyy}/{mm}/{dd}/

per empresa: the consolidated CSV and Parquet and the rejects CSV of the day's partition
(``reports.consolidated_paths``, written by ``pqr_records``), and an export of the
``ov_load_audit`` rows of the loads that finished that day (Bogotá) as
``{empresa}_audit_{YYYYMMDD}.csv``. Report files hold personal data: they stay owner-readable
locally and are stored with the same encryption as every object. Archiving the same day again
replaces the day's reports with their latest content (they are reports, not evidence; the
bucket's versioning keeps the earlier ones).

Nothing is missed between archives: every load is one ``ov_load_audit`` row, and the loads not
yet listed in ``ov_report_exports`` (PostgreSQL) say which partitions' reports and which days'
audit exports changed since the last archive (a load after 23:45, a partition the 03:00
re-extraction rewrote); each archive stores those too, under their own day's folder.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ov_assets.core.contract import BOGOTA, EMPRESAS
from ov_assets.objects.stores import ObjectStore, sha256_file, verify_object
from ov_assets.reports.consolidated import consolidated_paths
from ov_assets.warehouse.loading import SCHEMA

AUDIT_COLUMNS = (
    "run_id",
    "empresa",
    "partition_date",
    "files_seen",
    "records_valid",
    "db_inserted",
    "db_updated",
    "db_duplicates",
    "rejected",
    "started_at",
    "finished_at",
)
_CONTENT = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


def report_key(base_path: str, empresa: str, day: dt.date, filename: str) -> str:
    return f"{base_path.strip('/')}/reports/{empresa}/{day:%Y}/{day:%m}/{day:%d}/{filename}"


@dataclass
class ArchivedReports:
    day: dt.date
    stored: list[str] = field(default_factory=list)  # object keys
    unchanged: list[str] = field(default_factory=list)  # already stored with the same SHA-256
    missing: list[str] = field(default_factory=list)  # reports not produced that day
    loads_exported: int = 0  # loads not exported before, whose reports this archive stored
    partitions: int = 0  # partitions whose consolidated reports were looked at


def export_audit(conn: psycopg.Connection, empresa: str, day: dt.date, target: Path) -> int:
    """The day's ``ov_load_audit`` rows of ``empresa`` (finished that day, Bogotá) as CSV."""
    start = dt.datetime.combine(day, dt.time(), BOGOTA)
    rows = conn.execute(
        f"""SELECT {", ".join(AUDIT_COLUMNS)} FROM {SCHEMA}.ov_load_audit
            WHERE empresa = %s AND finished_at >= %s AND finished_at < %s ORDER BY finished_at, id""",
        (empresa, start, start + dt.timedelta(days=1)),
    ).fetchall()
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(AUDIT_COLUMNS)
        for row in rows:
            writer.writerow([v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for v in row])
    return len(rows)


def _store(store: ObjectStore, key: str, path: Path, empresa: str, day: dt.date, out: ArchivedReports) -> None:
    sha = sha256_file(path)
    size = path.stat().st_size
    if verify_object(store, key, size, sha) is None:
        out.unchanged.append(key)
        return
    store.put(
        key,
        path,
        sha,
        _CONTENT.get(path.suffix, "application/octet-stream"),
        {"empresa": empresa, "report_day": day.isoformat()},
    )
    if verify_object(store, key, size, sha) is not None:
        raise OSError(f"report {key}: verification after upload failed; run the reports archive again")
    out.stored.append(key)


def _unexported_loads(
    conn: psycopg.Connection, empresas: tuple[str, ...]
) -> list[tuple[int, str, dt.date, dt.datetime]]:
    """Loads (``ov_load_audit`` rows) whose reports were not exported yet: (id, empresa,
    partition date, finished at)."""
    return conn.execute(
        f"""SELECT a.id, a.empresa, a.partition_date, a.finished_at FROM {SCHEMA}.ov_load_audit a
            WHERE a.empresa = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.ov_report_exports e WHERE e.audit_id = a.id)
            ORDER BY a.id""",
        (list(empresas),),
    ).fetchall()


def archive_reports(
    conn: psycopg.Connection,
    store: ObjectStore,
    data_dir: Path,
    base_path: str,
    day: dt.date,
    empresas: tuple[str, ...] = EMPRESAS,
) -> ArchivedReports:
    """Store the reports of ``day`` and every report changed since the last export: the
    consolidated reports of each partition a load not yet exported touched (a load after the
    last archive, a partition the 03:00 re-extraction rewrote), the audit export of each day
    such a load finished. The loads are then recorded as exported (``ov_report_exports``), only
    once everything is stored and verified, so a failed archive leaves them for the next."""
    out = ArchivedReports(day)
    loads = _unexported_loads(conn, empresas)
    partitions = sorted({(e, day) for e in empresas} | {(e, d) for _, e, d, _ in loads})
    audit_days = sorted({(e, day) for e in empresas} | {(e, f.astimezone(BOGOTA).date()) for _, e, _, f in loads})
    for empresa, pday in partitions:
        for path in consolidated_paths(data_dir, empresa, pday).values():
            key = report_key(base_path, empresa, pday, path.name)
            if path.is_file():
                _store(store, key, path, empresa, pday, out)
            else:
                out.missing.append(key)
    for empresa, aday in audit_days:
        with tempfile.TemporaryDirectory(prefix="ov-audit-") as tmp:
            os.chmod(tmp, 0o700)
            audit = Path(tmp) / f"{empresa}_audit_{aday:%Y%m%d}.csv"
            export_audit(conn, empresa, aday, audit)
            _store(store, report_key(base_path, empresa, aday, audit.name), audit, empresa, aday, out)
    if loads:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                f"""INSERT INTO {SCHEMA}.ov_report_exports (audit_id, empresa, partition_date)
                    VALUES (%s, %s, %s) ON CONFLICT (audit_id) DO NOTHING""",
                [(i, e, d) for i, e, d, _ in loads],
            )
    out.loads_exported = len(loads)
    out.partitions = len(partitions)
    return out
