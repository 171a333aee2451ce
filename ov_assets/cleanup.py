"""Cleanup of landing files that are safely archived (CONTRACT §10, Sunday 02:00).

A landing file is deleted only when all of this holds for every record it belongs to:

- the record file (``*_data_*.json``) is a valid version (rejected files are never archived,
  so never deleted), and the record's JSON, PDF and attachments are all in the landing index;
- every one of those files has a ``s3_files_registry`` row of the same empresa and file name in
  the configured bucket with ``upload_status`` ``uploaded`` or ``pre_existing`` and ``file_hash``
  equal to the landing file's SHA-256 (recomputed from the bytes just before deleting);
- every one of those files was last modified more than ``OV_RETENTION_DAYS`` (default 30) ago.

Nothing else is ever deleted: files of no record, rejects, files shared with a record that is
not deletable (an attachment named by several versions), and anything outside the landing
folders stay. ``dry_run`` reports what would be freed and deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ov_assets.contract import BOGOTA, EMPRESAS, FIRST_DAY
from ov_assets.landing_index import IndexedFile, LandingIndex
from ov_assets.loading import SCHEMA
from ov_assets.settings import retention_days

DONE_STATUSES = ("uploaded", "pre_existing")
_BATCH = 5000


@dataclass
class CleanupReport:
    """What a cleanup deleted (or, in a dry run, would delete)."""

    dry_run: bool
    retention_days: int
    files: int = 0
    bytes: int = 0
    records: int = 0
    kept_not_verified: int = 0  # old enough records with a file not verified in the registry
    kept_changed: int = 0  # files whose bytes no longer match the index (left in place)
    per_empresa: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (f"cleanup{' (dry run)' if self.dry_run else ''}: {verb} {self.files} files, "
                f"{self.bytes} bytes, of {self.records} records older than {self.retention_days} days; "
                f"kept {self.kept_not_verified} old records not verified in the registry, "
                f"{self.kept_changed} files changed since indexing")


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _verified(conn: psycopg.Connection, empresa: str, bucket: str,
              files: list[IndexedFile]) -> set[tuple[str, str]]:
    """(filename, sha256) pairs the registry shows stored and verified in ``bucket``."""
    out: set[tuple[str, str]] = set()
    names = sorted({f.name for f in files})
    for i in range(0, len(names), _BATCH):
        rows = conn.execute(
            f"""SELECT filename, file_hash FROM {SCHEMA}.s3_files_registry
                WHERE empresa = %s AND s3_bucket = %s AND filename = ANY(%s)
                  AND upload_status = ANY(%s) AND file_hash IS NOT NULL""",
            (empresa, bucket, names[i:i + _BATCH], list(DONE_STATUSES)),
        ).fetchall()
        out |= {(name, str(h).strip()) for name, h in rows}
    return out


def cleanup_landing(
    index: LandingIndex,
    conn: psycopg.Connection,
    bucket: str,
    *,
    retention: int | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    empresas: tuple[str, ...] = EMPRESAS,
) -> CleanupReport:
    """Delete (or list, with ``dry_run``) verified landing files older than the retention."""
    retention = retention_days(retention)
    now = now or dt.datetime.now(BOGOTA)
    cutoff_ns = int((now - dt.timedelta(days=retention)).timestamp() * 1e9)
    # A file modified before the cutoff belongs to a record whose fecha is on or before the
    # cutoff's day (fecha <= extraction <= mtime): only those partitions are read.
    last_day = (now - dt.timedelta(days=retention)).astimezone(BOGOTA).date()
    report = CleanupReport(dry_run=dry_run, retention_days=retention)
    today = now.astimezone(BOGOTA).date()
    for empresa in empresas:
        index.refresh(empresa, today)
        folder = index.folder(empresa)
        counts = {"files": 0, "bytes": 0, "records": 0}
        for offset in range((last_day - FIRST_DAY).days + 1):
            day = FIRST_DAY + dt.timedelta(days=offset)
            records = index.record_files(empresa, day)
            if not records:
                continue
            linked = index.linked_files(empresa, records)
            # Every file's owners, so a shared attachment goes only with all of its records.
            owners: dict[str, set[str]] = defaultdict(set)
            for rec in records:
                owners[rec.name].add(rec.name)
                for f in linked.get(rec.name, []):
                    owners[f.name].add(rec.name)
            old = [r for r in records if r.status == "valid" and r.mtime_ns < cutoff_ns
                   and all(f.mtime_ns < cutoff_ns for f in linked.get(r.name, []))]
            if not old:
                continue
            verified = _verified(conn, empresa, bucket,
                                 [f for r in old for f in (r, *linked.get(r.name, []))])
            deletable: set[str] = set()
            for rec in old:
                files = (rec, *linked.get(rec.name, []))
                if all((f.name, f.sha256) in verified for f in files):
                    deletable.add(rec.name)
                else:
                    report.kept_not_verified += 1
            files_by_name = {f.name: f for r in old for f in (r, *linked.get(r.name, []))}
            marked = False
            for name, f in sorted(files_by_name.items()):
                if not owners[name] or not owners[name] <= deletable:
                    continue
                path = folder / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                # Bytes on disk must still be the verified bytes; else leave the file alone.
                if st.st_size != f.size or _sha256(path) != f.sha256:
                    report.kept_changed += 1
                    continue
                if not dry_run:
                    if not marked:  # before the first file goes (the reports keep their rows)
                        index.mark_cleaned(empresa, day)
                        marked = True
                    os.unlink(path)
                report.deleted.append(path)
                counts["files"] += 1
                counts["bytes"] += st.st_size
            counts["records"] += len(deletable)
        if not dry_run and counts["files"]:
            index.refresh(empresa, today)  # drops the deleted files from the index
        report.per_empresa[empresa] = counts
        report.files += counts["files"]
        report.bytes += counts["bytes"]
        report.records += counts["records"]
    return report
