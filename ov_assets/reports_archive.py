"""The 23:45 archive of the day's reports (CONTRACT §10) to the object store:

    {S3_BASE_PATH}/reports/{empresa}/{yyyy}/{mm}/{dd}/

per empresa: the consolidated CSV and Parquet and the rejects CSV of the day's partition
(``reports.consolidated_paths``, written by ``pqr_records``), and an export of the
``ov_load_audit`` rows of the loads that finished that day (Bogotá) as
``{empresa}_audit_{YYYYMMDD}.csv``. Report files hold personal data: they stay owner-readable
locally and are stored with the same encryption as every object. Archiving the same day again
replaces the day's reports with their latest content (they are reports, not evidence).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ov_assets.contract import BOGOTA, EMPRESAS
from ov_assets.loading import SCHEMA
from ov_assets.reports import consolidated_paths
from ov_assets.resources.object_store import ObjectStore, sha256_file

AUDIT_COLUMNS = ("run_id", "empresa", "partition_date", "files_seen", "records_valid", "db_inserted",
                 "db_updated", "db_duplicates", "rejected", "started_at", "finished_at")
_CONTENT = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


def report_key(base_path: str, empresa: str, day: dt.date, filename: str) -> str:
    return f"{base_path.strip('/')}/reports/{empresa}/{day:%Y}/{day:%m}/{day:%d}/{filename}"


@dataclass
class ArchivedReports:
    day: dt.date
    stored: list[str] = field(default_factory=list)  # object keys
    unchanged: list[str] = field(default_factory=list)  # already stored with the same SHA-256
    missing: list[str] = field(default_factory=list)  # reports not produced that day


def export_audit(conn: psycopg.Connection, empresa: str, day: dt.date, target: Path) -> int:
    """The day's ``ov_load_audit`` rows of ``empresa`` (finished that day, Bogotá) as CSV."""
    start = dt.datetime.combine(day, dt.time(), BOGOTA)
    rows = conn.execute(
        f"""SELECT {', '.join(AUDIT_COLUMNS)} FROM {SCHEMA}.ov_load_audit
            WHERE empresa = %s AND finished_at >= %s AND finished_at < %s ORDER BY finished_at, id""",
        (empresa, start, start + dt.timedelta(days=1)),
    ).fetchall()
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(AUDIT_COLUMNS)
        for row in rows:
            writer.writerow([v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for v in row])
    return len(rows)


def _store(store: ObjectStore, key: str, path: Path, empresa: str, out: ArchivedReports) -> None:
    sha = sha256_file(path)
    existing = store.head(key)
    if existing is not None and existing.size == path.stat().st_size and existing.sha256 == sha:
        out.unchanged.append(key)
        return
    store.put(key, path, sha, _CONTENT.get(path.suffix, "application/octet-stream"),
              {"empresa": empresa, "report_day": out.day.isoformat()})
    stored = store.head(key)
    if stored is None or (stored.sha256 or store.sha256_of(key)) != sha:
        raise OSError(f"report {key}: verification after upload failed")
    out.stored.append(key)


def archive_reports(conn: psycopg.Connection, store: ObjectStore, data_dir: Path, base_path: str,
                    day: dt.date, empresas: tuple[str, ...] = EMPRESAS) -> ArchivedReports:
    """Store the day's reports of every empresa; returns the keys stored."""
    out = ArchivedReports(day)
    for empresa in empresas:
        for path in consolidated_paths(data_dir, empresa, day).values():
            key = report_key(base_path, empresa, day, path.name)
            if path.is_file():
                _store(store, key, path, empresa, out)
            else:
                out.missing.append(key)
        with tempfile.TemporaryDirectory(prefix="ov-audit-") as tmp:
            os.chmod(tmp, 0o700)
            audit = Path(tmp) / f"{empresa}_audit_{day:%Y%m%d}.csv"
            export_audit(conn, empresa, day, audit)
            _store(store, report_key(base_path, empresa, day, audit.name), audit, empresa, out)
    return out

