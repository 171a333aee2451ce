"""An incremental index of the landing folder: (name, size, mtime, SHA-256, kind, partition,
outcome) per file, in SQLite under ``$OV_DATA_DIR/state``.

Only new or changed files (by size and mtime) are opened, so finding a partition's files in a
folder of 200,000 costs a directory listing plus that partition's new files, never a rescan of
every file (the old system's O(N^2)). The sensor and the assets share it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ov_assets.contract import BOGOTA, FIRST_DAY
from ov_assets.landing import FILE_RECORD, landing_dir, parse_name
from ov_assets.records import evaluate_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    empresa         TEXT NOT NULL,
    name            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    link_key        TEXT,
    partition_date  TEXT,
    numero_radicado TEXT,
    hash_registro   TEXT,
    status          TEXT,
    refs            TEXT NOT NULL DEFAULT '[]',
    indexed_at      TEXT NOT NULL,
    PRIMARY KEY (empresa, name)
);
CREATE INDEX IF NOT EXISTS files_partition ON files (empresa, partition_date) WHERE kind = 'json';
CREATE INDEX IF NOT EXISTS files_link ON files (empresa, link_key);
"""


@dataclass(frozen=True)
class IndexedFile:
    empresa: str
    name: str
    size: int
    mtime_ns: int
    sha256: str
    kind: str
    link_key: str | None
    partition_date: dt.date | None
    numero_radicado: str | None
    hash_registro: str | None
    status: str | None  # valid, or the reject code, for record files


@dataclass(frozen=True)
class RefreshResult:
    scanned: int
    new: list[IndexedFile]
    changed: list[IndexedFile]
    removed: int

    @property
    def touched_partitions(self) -> set[tuple[str, dt.date]]:
        return {(f.empresa, f.partition_date) for f in self.new + self.changed if f.partition_date}


def _bogota_day(mtime_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, BOGOTA).date()


class LandingIndex:
    """The index of ``$OV_DATA_DIR/downloads/*/oficina_virtual/processed``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        state = self.data_dir / "state"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state / "landing_index.sqlite3"
        self.files_opened = 0  # how many landing files this object read (tests assert on it)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def folder(self, empresa: str) -> Path:
        return landing_dir(self.data_dir, empresa)

    def read(self, empresa: str, name: str) -> bytes:
        self.files_opened += 1
        return (self.folder(empresa) / name).read_bytes()

    def _index_file(
        self, empresa: str, name: str, size: int, mtime_ns: int, today: dt.date
    ) -> tuple[IndexedFile, list[str]] | None:
        parsed = parse_name(name)
        if parsed is None:
            return None
        try:
            data = self.read(empresa, name)
        except FileNotFoundError:
            return None
        sha = hashlib.sha256(data).hexdigest()
        partition = radicado = hash_reg = status = None
        refs: list[str] = []
        if parsed.kind == FILE_RECORD:
            outcome = evaluate_file(name, data, sha, today)
            if outcome.record is not None:
                partition = outcome.record.fecha.date()
                hash_reg = outcome.record.hash_registro
                status = "valid"
                refs = outcome.referenced
            else:
                assert outcome.reject is not None
                status = outcome.reject.code
                named = parsed.extraction_time
                partition = named.date() if named and FIRST_DAY <= named.date() <= today else _bogota_day(mtime_ns)
            radicado = outcome.numero_radicado
        return IndexedFile(empresa, name, len(data), mtime_ns, sha, parsed.kind, parsed.link_key,
                           partition, radicado, hash_reg, status), refs

    def refresh(self, empresa: str, today: dt.date, stable_before_ns: int | None = None) -> RefreshResult:
        """Bring the index up to date with the folder: open only new or changed files.

        ``stable_before_ns``: skip files modified after this instant (still being written);
        they are picked up by a later refresh.
        """
        folder = self.folder(empresa)
        with self._db() as db:
            known = {name: (size, mtime) for name, size, mtime in
                     db.execute("SELECT name, size, mtime_ns FROM files WHERE empresa = ?", (empresa,))}
        seen: set[str] = set()
        new: list[IndexedFile] = []
        changed: list[IndexedFile] = []
        rows: list[tuple[object, ...]] = []
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        if folder.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat()
                    seen.add(entry.name)
                    previous = known.get(entry.name)
                    if previous == (st.st_size, st.st_mtime_ns):
                        continue
                    if stable_before_ns is not None and st.st_mtime_ns > stable_before_ns:
                        continue
                    indexed = self._index_file(empresa, entry.name, st.st_size, st.st_mtime_ns, today)
                    if indexed is None:
                        continue
                    item, refs = indexed
                    (new if previous is None else changed).append(item)
                    rows.append((item.empresa, item.name, item.size, item.mtime_ns, item.sha256, item.kind,
                                 item.link_key, item.partition_date.isoformat() if item.partition_date else None,
                                 item.numero_radicado, item.hash_registro, item.status, json.dumps(refs), now))
        removed = [name for name in known if name not in seen]
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("DELETE FROM files WHERE empresa = ? AND name = ?", [(empresa, n) for n in removed])
            db.execute("COMMIT")
        return RefreshResult(len(seen), new, changed, len(removed))

    @staticmethod
    def _row(row: tuple[object, ...]) -> IndexedFile:
        e, name, size, mtime, sha, kind, link, part, rad, hreg, status = row
        return IndexedFile(e, name, size, mtime, sha, kind, link,
                           dt.date.fromisoformat(part) if part else None, rad, hreg, status)

    _COLUMNS = "empresa, name, size, mtime_ns, sha256, kind, link_key, partition_date, numero_radicado, hash_registro, status"

    def record_files(self, empresa: str, day: dt.date) -> list[IndexedFile]:
        """The record (JSON) files routed to a partition."""
        with self._db() as db:
            cur = db.execute(
                f"SELECT {self._COLUMNS} FROM files WHERE empresa = ? AND partition_date = ? AND kind = 'json' ORDER BY name",
                (empresa, day.isoformat()),
            )
            return [self._row(r) for r in cur]

    def linked_files(self, empresa: str, records: Iterable[IndexedFile]) -> dict[str, list[IndexedFile]]:
        """Record file name -> its PDF and attachments (same ``{sgc}_{ts}``, or named by the record)."""
        records = list(records)
        out: dict[str, list[IndexedFile]] = {r.name: [] for r in records}
        with self._db() as db:
            refs = {name: json.loads(raw) for name, raw in db.execute(
                "SELECT name, refs FROM files WHERE empresa = ? AND name IN (SELECT value FROM json_each(?))",
                (empresa, json.dumps(list(out))))}
            referenced_by: dict[str, set[str]] = {}
            for owner, names in refs.items():
                for n in names:
                    referenced_by.setdefault(n, set()).add(owner)
            by_link: dict[str, list[str]] = {}
            for r in records:
                if r.link_key:
                    by_link.setdefault(r.link_key, []).append(r.name)
            wanted_names = sorted(referenced_by)
            cur = db.execute(
                f"SELECT {self._COLUMNS} FROM files WHERE empresa = ? AND kind != 'json' AND "
                "(link_key IN (SELECT value FROM json_each(?)) OR name IN (SELECT value FROM json_each(?)))",
                (empresa, json.dumps(sorted(by_link)), json.dumps(wanted_names)),
            )
            for f in map(self._row, cur):
                owners = set(by_link.get(f.link_key or "", []))
                owners |= referenced_by.get(f.name, set())
                for owner in owners:
                    out[owner].append(f)
        return out

    def latest_hashes(self, empresa: str, days: Iterable[dt.date]) -> set[str]:
        """hash_registro of the valid versions already in the landing folder for these days."""
        with self._db() as db:
            cur = db.execute(
                "SELECT hash_registro FROM files WHERE empresa = ? AND status = 'valid' AND partition_date IN "
                "(SELECT value FROM json_each(?))",
                (empresa, json.dumps([d.isoformat() for d in days])),
            )
            return {h for (h,) in cur}


def partition_frame(index: LandingIndex, empresa: str, day: dt.date, today: dt.date) -> "pl.DataFrame":
    """Every record file of one partition, decoded and validated, with its linked files and
    the winners marked: what ``pqr_records`` materializes."""
    import polars as pl  # noqa: F401  (typing of the return value)

    from ov_assets.records import LinkedFile, build_frame

    entries = index.record_files(empresa, day)
    linked = index.linked_files(empresa, entries)
    outcomes = []
    mtimes: dict[str, dt.datetime] = {}
    for entry in entries:
        try:
            data = index.read(empresa, entry.name)
        except FileNotFoundError:
            continue  # removed since the refresh; the next refresh drops it
        outcomes.append(evaluate_file(entry.name, data, hashlib.sha256(data).hexdigest(), today))
        mtimes[entry.name] = dt.datetime.fromtimestamp(entry.mtime_ns / 1e9, BOGOTA).replace(tzinfo=None)
    files = {
        name: [LinkedFile(f.kind, f.name, f.size, f.sha256) for f in sorted(fs, key=lambda f: f.name)]
        for name, fs in linked.items()
    }
    return build_frame(empresa, day, outcomes, files, fallback_extraction=mtimes)
