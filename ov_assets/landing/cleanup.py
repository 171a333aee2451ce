"""Cleanup of landing files that are safely archived (CONTRACT §10, Sunday 02:00).

A landing file is deleted only when all of this holds for every record it belongs to:

- the record file (``*_data_*.json``) is a valid version (rejected files are never archived,
  so never deleted), and the record's JSON, PDF and attachments are all in the landing index;
- every one of those files has a ``s3_files_registry`` row of the same empresa and file name in
  the configured bucket with ``upload_status`` ``uploaded`` or ``pre_existing`` and ``file_hash``
  equal to the landing file's SHA-256 (recomputed from the bytes just before deleting);
- the bucket itself proves it holds those bytes under that row's key: S3's full-object
  SHA-256 checksum, or the object read back and hashed (never the registry's word alone, never
  the ``sha256`` metadata a writer set); a file that cannot be proven is kept and counted;
- every one of those files was last modified more than ``OV_RETENTION_DAYS`` (default 30) ago;
- the file is still a regular file: it is opened as the index opens it, never through a
  symbolic link (a file swapped for a link is kept, counted as changed).

The index forgets each file just before it goes (``LandingIndex.forget``), not by a refresh
after: a folder the cleanup empties is an empty index, not an unmounted folder
(``LandingFolderUnavailable`` stays for files that vanished otherwise).

Nothing else is ever deleted: files of no record, rejects, files shared with a record that is
not deletable (an attachment named by several versions, of this day or any other day, while
any of them is not archived), and anything outside the landing folders stay. ``dry_run``
reports what would be freed and deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ov_assets.core.contract import BOGOTA, EMPRESAS, FIRST_DAY
from ov_assets.fs import NotARegularFile, open_landing
from ov_assets.landing.index import IndexedFile, LandingIndex
from ov_assets.objects.stores import ObjectStore, verify_object
from ov_assets.reports.consolidated import mark_cleaned
from ov_assets.settings import retention_days
from ov_assets.warehouse.loading import SCHEMA

DONE_STATUSES = ("uploaded", "pre_existing")
_BATCH = 5000
_PROOF_WORKERS = 8  # parallel HEADs (and reads of multipart objects) proving files in the bucket


@dataclass
class CleanupReport:
    """What a cleanup deleted (or, in a dry run, would delete)."""

    dry_run: bool
    retention_days: int
    files: int = 0
    bytes: int = 0
    records: int = 0
    kept_not_verified: int = 0  # old enough records with a file not verified in the registry
    kept_not_in_bucket: int = 0  # ... registered, but the bucket does not prove the bytes
    kept_changed: int = 0  # files whose bytes no longer match the index (left in place)
    kept_named_elsewhere: int = 0  # files named by a version of another day not archived yet
    unproven: list[str] = field(default_factory=list)  # landing file names kept: not in the bucket
    per_empresa: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"cleanup{' (dry run)' if self.dry_run else ''}: {verb} {self.files} files, "
            f"{self.bytes} bytes, of {self.records} records older than {self.retention_days} days; "
            f"kept {self.kept_not_verified} old records not verified in the registry, "
            f"{self.kept_not_in_bucket} registered but not proven in the bucket "
            f"(check the reconciliation checks; the hourly retry uploads them again), "
            f"{self.kept_changed} files changed since indexing, "
            f"{self.kept_named_elsewhere} named by a version not archived yet"
        )


def _hashed(path: Path) -> tuple[os.stat_result, str] | None:
    """``fstat`` and SHA-256 of the landing file ``path``, read without following a link
    (``NotARegularFile``); None when it is gone."""
    digest = hashlib.sha256()
    try:
        with open_landing(path) as (fh, st):
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return st, digest.hexdigest()


def _same_file(path: Path, st: os.stat_result) -> bool:
    """``path`` is still the regular file ``st`` described (not replaced or swapped since)."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(now.st_mode) and (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )


def _registered(
    conn: psycopg.Connection, empresa: str, bucket: str, files: list[IndexedFile]
) -> dict[tuple[str, str], list[str]]:
    """(filename, sha256) -> the keys of ``bucket`` the registry says hold those bytes."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    names = sorted({f.name for f in files})
    for i in range(0, len(names), _BATCH):
        rows = conn.execute(
            f"""SELECT filename, file_hash, s3_key FROM {SCHEMA}.s3_files_registry
                WHERE empresa = %s AND s3_bucket = %s AND filename = ANY(%s)
                  AND upload_status = ANY(%s) AND file_hash IS NOT NULL ORDER BY id""",
            (empresa, bucket, names[i : i + _BATCH], list(DONE_STATUSES)),
        ).fetchall()
        for name, h, key in rows:
            out[(name, str(h).strip())].append(key)
    return out


def _proven(
    store: ObjectStore, registered: dict[tuple[str, str], list[str]], files: list[IndexedFile]
) -> set[tuple[str, str]]:
    """The (filename, sha256) of ``files`` the bucket proves it holds under a registered key."""
    wanted = sorted({(f.name, f.sha256, f.size) for f in files})

    def proof(item: tuple[str, str, int]) -> bool:
        name, sha, size = item
        return any(verify_object(store, key, size, sha) is None for key in registered.get((name, sha), []))

    with ThreadPoolExecutor(max_workers=_PROOF_WORKERS, thread_name_prefix="ov-cleanup") as pool:
        return {(n, s) for (n, s, _), ok in zip(wanted, pool.map(proof, wanted), strict=True) if ok}


def _archived(
    conn: psycopg.Connection, index: LandingIndex, empresa: str, bucket: str, records: list[IndexedFile]
) -> set[str]:
    """Record files (of any day) that are valid and whose every file is registered stored."""
    valid = [r for r in records if r.status == "valid"]
    linked = index.linked_files(empresa, valid)
    registered = _registered(conn, empresa, bucket, [f for r in valid for f in (r, *linked[r.name])])
    return {r.name for r in valid if all((f.name, f.sha256) in registered for f in (r, *linked[r.name]))}


def cleanup_landing(
    index: LandingIndex,
    conn: psycopg.Connection,
    store: ObjectStore,
    *,
    retention: int | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    empresas: tuple[str, ...] = EMPRESAS,
) -> CleanupReport:
    """Delete (or list, with ``dry_run``) landing files older than the retention whose bytes
    the registry and the bucket both show stored."""
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
        # Files named by versions of more than one day (one read of the index per empresa).
        across_days = {
            name: recs
            for name, recs in index.records_naming(empresa).items()
            if len({r.partition_date for r in recs}) > 1
        }
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
            old = [
                r
                for r in records
                if r.status == "valid"
                and r.mtime_ns < cutoff_ns
                and all(f.mtime_ns < cutoff_ns for f in linked.get(r.name, []))
            ]
            if not old:
                continue
            old_files = [f for r in old for f in (r, *linked.get(r.name, []))]
            registered = _registered(conn, empresa, store.bucket, old_files)
            candidates = [r for r in old if all((f.name, f.sha256) in registered for f in (r, *linked.get(r.name, [])))]
            report.kept_not_verified += len(old) - len(candidates)
            proven = _proven(store, registered, [f for r in candidates for f in (r, *linked.get(r.name, []))])
            deletable: set[str] = set()
            for rec in candidates:
                missing = [f.name for f in (rec, *linked.get(rec.name, [])) if (f.name, f.sha256) not in proven]
                if missing:
                    report.kept_not_in_bucket += 1
                    report.unproven += missing
                else:
                    deletable.add(rec.name)
            # Versions of other days naming this day's files (documento_prueba, adjuntar_archivo):
            # a file goes only when each of them is archived too.
            day_names = {r.name for r in records}
            elsewhere = {
                name: [r for r in across_days[name] if r.name not in day_names]
                for name in owners
                if name in across_days
            }
            others = {r.name: r for recs in elsewhere.values() for r in recs}
            archived = _archived(conn, index, empresa, store.bucket, list(others.values())) if others else set()
            files_by_name = {f.name: f for r in old for f in (r, *linked.get(r.name, []))}
            going: list[tuple[IndexedFile, Path, os.stat_result]] = []
            for name, f in sorted(files_by_name.items()):
                if not owners[name] or not owners[name] <= deletable:
                    continue
                if any(r.name not in archived for r in elsewhere.get(name, [])):
                    report.kept_named_elsewhere += 1
                    continue
                path = folder / name
                # Bytes on disk must still be the verified bytes, of a regular file (a link is
                # never followed); else leave the file alone.
                try:
                    found = _hashed(path)
                except NotARegularFile:
                    report.kept_changed += 1
                    continue
                if found is None:
                    continue
                st, sha = found
                if st.st_size != f.size or sha != f.sha256:
                    report.kept_changed += 1
                    continue
                going.append((f, path, st))
            if going and not dry_run:
                # Before the first file goes: the reports keep their rows (the mark), and the
                # index no longer lists what goes (a file kept below is indexed again as new).
                mark_cleaned(conn, empresa, day)
                index.forget(empresa, [(f.name, f.sha256) for f, _, _ in going])
            for _, path, st in going:
                if not dry_run:
                    if not _same_file(path, st):  # replaced since it was hashed
                        report.kept_changed += 1
                        continue
                    os.unlink(path)
                report.deleted.append(path)
                counts["files"] += 1
                counts["bytes"] += st.st_size
            counts["records"] += len(deletable)
        report.per_empresa[empresa] = counts
        report.files += counts["files"]
        report.bytes += counts["bytes"]
        report.records += counts["records"]
    return report
