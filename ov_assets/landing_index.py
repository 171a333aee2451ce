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

import orjson

from ov_assets.contract import BOGOTA, FIRST_DAY, parse_extraction_ts
from ov_assets.landing import FILE_RECORD, landing_dir, parse_name
from ov_assets.records import RULES_VERSION, FileOutcome, evaluate_file

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
    outcome         BLOB,
    rules_version   INTEGER,
    PRIMARY KEY (empresa, name)
);
CREATE INDEX IF NOT EXISTS files_partition ON files (empresa, partition_date) WHERE kind = 'json';
CREATE INDEX IF NOT EXISTS files_link ON files (empresa, link_key);
-- Covering: the refresh's listing of (name, size, mtime) never touches the stored outcomes.
CREATE INDEX IF NOT EXISTS files_stat ON files (empresa, name, size, mtime_ns);
-- Covering for a partition's record files (partition_frame): the rows' outcomes stay unread.
CREATE INDEX IF NOT EXISTS files_partition_cov3 ON files (empresa, partition_date, name, size, mtime_ns, sha256, link_key, kind)
    WHERE kind = 'json';
"""
# Only the few rows a refresh must evaluate again (a fecha after the day it was read, outcomes
# of other rules): a partial index keeps that lookup free of a table scan and cheap to maintain.
_RECHECK_WHERE = ("kind = 'json' AND (status = 'fecha_out_of_range' OR rules_version IS NULL "
                  f"OR rules_version <> {RULES_VERSION})")
_SCHEMA += ("DROP INDEX IF EXISTS files_recheck; DROP INDEX IF EXISTS files_status; DROP INDEX IF EXISTS files_partition;\n"
            "DROP INDEX IF EXISTS files_partition_cov; DROP INDEX IF EXISTS files_partition_cov2;\n"
            f"CREATE INDEX IF NOT EXISTS files_recheck_v{RULES_VERSION} ON files (empresa) WHERE {_RECHECK_WHERE};\n")


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
        # Outcomes this object's refresh just produced, so that partition_frame in the same run
        # does not read them back from SQLite; bounded (beyond it, the index serves them).
        self._fresh: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._fresh_bytes = 0
        with self._db() as db:
            db.executescript(_SCHEMA.split("CREATE INDEX", 1)[0])
            columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
            for column, kind in (("outcome", "BLOB"), ("rules_version", "INTEGER")):
                if column not in columns:  # an index written before outcomes were kept
                    db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a partition's rows are spread over the table
            db.execute("PRAGMA mmap_size=1073741824")
            db.execute("PRAGMA wal_autocheckpoint=8192")  # fewer checkpoints (fsyncs) in large refreshes
            yield db
        finally:
            db.close()

    def folder(self, empresa: str) -> Path:
        return landing_dir(self.data_dir, empresa)

    def read(self, empresa: str, name: str) -> bytes:
        self.files_opened += 1
        return _read(os.path.join(self.folder(empresa), name))

    def refresh(self, empresa: str, today: dt.date, stable_before_ns: int | None = None) -> RefreshResult:
        """Bring the index up to date with the folder: open only new or changed files.

        Each new or changed record file is read, hashed and evaluated once here; its outcome is
        kept in the index so ``partition_frame`` never reads it again. Files rejected for a
        ``fecha`` after today, and outcomes made under older rules, are evaluated again.
        ``stable_before_ns``: skip files modified after this instant (still being written);
        they are picked up by a later refresh.
        """
        folder = os.fspath(self.folder(empresa))
        with self._db() as db:
            known = {name: (size, mtime) for name, size, mtime in
                     db.execute("SELECT name, size, mtime_ns FROM files WHERE empresa = ?", (empresa,))}
            again = {name: (status, part) for name, status, part in db.execute(
                f"SELECT name, status, partition_date FROM files WHERE empresa = ? AND {_RECHECK_WHERE}", (empresa,))}
        seen: set[str] = set()
        todo: list[tuple[str, str, str | None, str | None, int, int, bool]] = []
        if os.path.isdir(folder):
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    name = entry.name
                    st = entry.stat()
                    seen.add(name)
                    previous = known.get(name)
                    if previous == (st.st_size, st.st_mtime_ns) and name not in again:
                        continue
                    if stable_before_ns is not None and st.st_mtime_ns > stable_before_ns:
                        continue
                    parsed = parse_name(name)
                    if parsed is None:
                        continue
                    todo.append((name, parsed.kind, parsed.link_key, parsed.ts, st.st_size, st.st_mtime_ns,
                                 previous is None))
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        new: list[IndexedFile] = []
        changed: list[IndexedFile] = []
        rows: list[tuple[object, ...]] = []
        with self._db() as db:

            def flush() -> None:  # bounded memory, and short write transactions (the sensor shares the index)
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.execute("COMMIT")
                rows.clear()

            for item, row in zip(todo, _index_many(folder, todo, today)):
                if row is None:  # removed since the listing
                    continue
                self.files_opened += 1
                name, kind, link_key, _ts, _size, mtime_ns, is_new = item
                size, sha, partition, radicado, hreg, status, refs, blob = row
                indexed = IndexedFile(empresa, name, size, mtime_ns, sha, kind, link_key,
                                      dt.date.fromisoformat(partition) if partition else None, radicado, hreg, status)
                if is_new:
                    new.append(indexed)
                elif known.get(name) != (size, mtime_ns) or again.get(name, (status, partition)) != (status, partition):
                    changed.append(indexed)  # (a file only evaluated again counts when its outcome moved)
                rows.append((empresa, name, size, mtime_ns, sha, kind, link_key, partition, radicado, hreg, status,
                             refs, now, blob, RULES_VERSION if blob is not None else None))
                if blob is not None and self._fresh_bytes < FRESH_CACHE_BYTES:
                    self._fresh[(empresa, name)] = (mtime_ns, blob)
                    self._fresh_bytes += len(blob)
                if len(rows) >= 5000:
                    flush()
            flush()
            removed = [name for name in known if name not in seen]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM files WHERE empresa = ? AND name = ?", [(empresa, n) for n in removed])
            db.execute("COMMIT")
        return RefreshResult(len(seen), new, changed, len(removed))

    def outcomes(self, empresa: str, day: dt.date, today: dt.date) -> tuple[list[FileOutcome], dict[str, dt.datetime]]:
        """The evaluated record files of a partition (from the index; a file is read again only
        when its stored outcome is missing or was made under other rules) and their mtimes."""
        items, mtimes, _links = self._stored(empresa, day, today)
        out = [FileOutcome.from_json(name, sha, size, orjson.dumps(p)) for name, sha, size, p in items]
        return [o for o in out if o is not None], mtimes

    def _stored(self, empresa: str, day: dt.date, today: dt.date
                ) -> tuple[list[tuple[str, str, int, list]], dict[str, dt.datetime], dict[str, str | None]]:
        """(name, sha256, size, ``FileOutcome.as_list()``) per record file of a partition, mtimes
        and link keys. Outcomes this process just produced come from memory, the others from the
        index; a file is read again only when its stored outcome is missing or of other rules."""
        fresh = self._fresh
        with self._db() as db:
            rows = db.execute(
                "SELECT name, size, mtime_ns, sha256, link_key FROM files "
                "WHERE empresa = ? AND partition_date = ? AND kind = 'json' ORDER BY name",
                (empresa, day.isoformat()),
            ).fetchall()
            missing = [r[0] for r in rows if fresh.get((empresa, r[0]), (None,))[0] != r[2]]
            blobs = dict(db.execute(
                "SELECT name, outcome FROM files WHERE empresa = ? AND name IN (SELECT value FROM json_each(?))",
                (empresa, json.dumps(missing)))) if missing else {}
        lacking = set(missing)
        items: list[tuple[str, str, int, list]] = []
        mtimes: dict[str, dt.datetime] = {}
        links: dict[str, str | None] = {}
        loads = orjson.loads
        for name, size, mtime_ns, sha, link in rows:
            blob = blobs.get(name) if name in lacking else fresh[(empresa, name)][1]
            parts = None
            if blob is not None:
                try:
                    parts = loads(blob)
                except orjson.JSONDecodeError:
                    parts = None
                if parts.__class__ is not list or len(parts) != 9 or parts[0] != RULES_VERSION:
                    parts = None
            if parts is None:
                try:
                    data = self.read(empresa, name)
                except FileNotFoundError:
                    continue  # removed since the refresh; the next refresh drops it
                sha, size = hashlib.sha256(data).hexdigest(), len(data)
                parts = evaluate_file(name, data, sha, today).as_list()
            items.append((name, sha, size, parts))
            mtimes[name] = _bogota_naive(mtime_ns)
            links[name] = link
        return items, mtimes, links

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

    def linked_files(self, empresa: str, records: Iterable[IndexedFile],
                     refs: dict[str, list[str]] | None = None) -> dict[str, list[IndexedFile]]:
        """Record file name -> its PDF and attachments (same ``{sgc}_{ts}``, or named by the record).

        ``refs``: the file names each record names (documento_prueba, adjuntar_archivo), when the
        caller has them; else they are read from the index."""
        records = list(records)
        out: dict[str, list[IndexedFile]] = {r.name: [] for r in records}
        with self._db() as db:
            if refs is None:
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
            # Two indexed lookups (an OR of both would scan every file of the empresa).
            cur = db.execute(
                f"SELECT {self._COLUMNS} FROM files WHERE empresa = ?1 AND kind != 'json' AND "
                "link_key IN (SELECT value FROM json_each(?2)) "
                f"UNION SELECT {self._COLUMNS} FROM files WHERE empresa = ?1 AND kind != 'json' AND "
                "name IN (SELECT value FROM json_each(?3))",
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
    the winners marked: what ``pqr_records`` materializes. Reads no file the index has already
    evaluated (call ``index.refresh`` first)."""
    import polars as pl  # noqa: F401  (typing of the return value)

    from ov_assets.records import LinkedFile, frame_from_lists

    items, mtimes, links = index._stored(empresa, day, today)
    entries = [_Named(name, links.get(name)) for name, _sha, _size, _p in items]
    linked = index.linked_files(empresa, entries, {name: p[7] for name, _sha, _size, p in items})  # type: ignore[arg-type]
    files = {
        name: [LinkedFile(f.kind, f.name, f.size, f.sha256) for f in sorted(fs, key=lambda f: f.name)]
        for name, fs in linked.items()
    }
    return frame_from_lists(empresa, day, items, files, fallback_extraction=mtimes)


@dataclass(frozen=True)
class _Named:
    name: str
    link_key: str | None


def _bogota_naive(mtime_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, BOGOTA).replace(tzinfo=None)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]
        while chunks[-1]:  # the file grew, or a file system that returns short reads
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks) if len(chunks) > 2 else chunks[0]
    finally:
        os.close(fd)


_IndexRow = tuple[int, str, "str | None", "str | None", "str | None", "str | None", str, "bytes | None"]


def _index_one(folder: str, item: tuple, today: dt.date) -> _IndexRow | None:
    """Read, hash and (for record files) evaluate one landing file."""
    name, kind, _link, ts, _size, mtime_ns, _new = item
    try:
        data = _read(os.path.join(folder, name))
    except (FileNotFoundError, IsADirectoryError):
        return None
    sha = hashlib.sha256(data).hexdigest()
    if kind != FILE_RECORD:
        return len(data), sha, None, None, None, None, "[]", None
    outcome = evaluate_file(name, data, sha, today)
    if outcome.record is not None:
        status, refs = "valid", outcome.referenced
        hreg: str | None = outcome.record.hash_registro
    else:
        assert outcome.reject is not None
        status, refs, hreg = outcome.reject.code, [], None
    day = outcome.fecha_day
    if day is None:
        named = parse_extraction_ts(ts)
        day = named.date() if named and FIRST_DAY <= named.date() <= today else _bogota_day(mtime_ns)
    return (len(data), sha, day.isoformat(), outcome.numero_radicado, hreg, status,
            json.dumps(refs) if refs else "[]", outcome.to_json())


def _index_batch(folder: str, items: list[tuple], today: dt.date) -> list[_IndexRow | None]:
    return [_index_one(folder, item, today) for item in items]


FRESH_CACHE_BYTES = 256 * 2**20
# Refreshes that open at least this many files spread them over worker processes.
POOL_MIN_FILES = 4000
_BATCH = 500


def _workers() -> int:
    configured = os.environ.get("OV_INDEX_WORKERS")
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            pass
    return max(1, min(os.cpu_count() or 1, 4))


def _index_many(folder: str, items: list[tuple], today: dt.date) -> Iterator[_IndexRow | None]:
    """``_index_one`` over many files, in order: in this process for a few files, else in a
    pool of worker processes (read + hash + decode + validate are per file and CPU-bound)."""
    workers = _workers()
    if workers < 2 or len(items) < POOL_MIN_FILES:
        for item in items:
            yield _index_one(folder, item, today)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: safe in a process that runs threads (a Dagster step); it imports this module
    # once and forks the workers from there.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["ov_assets.landing_index"])
    batches = [items[i:i + _BATCH] for i in range(0, len(items), _BATCH)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for rows in pool.map(_index_batch, [folder] * len(batches), batches, [today] * len(batches)):
            yield from rows
