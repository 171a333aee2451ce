"""An incremental index of the landing folder: (name, size, mtime, SHA-256, kind, partition,
outcome) per file, in SQLite under ``$OV_DATA_DIR/state``.

Only new or changed files (by size and mtime) are opened, so finding a partition's files in a
folder of 200,000 costs a directory listing plus that partition's new files, never a rescan of
every file (the old system's O(N^2)). The sensor and the assets share it.

Where the time goes in a large refresh (a full reload: every file new), and how it is kept low:

- the listing stats only files already indexed; new files are stat'ed by whoever opens them;
- opening, hashing, decoding, validating, building the per-file frame columns and writing the
  index rows run in worker processes (``_index_batch``), on batches of names in name order (each
  commit then touches few pages of the key index), one transaction per batch, the workers taking
  turns under a lock; they return only the new/changed files and the frame columns, as frames;
- this process keeps the batch frames (up to FRESH_CACHE_BYTES), and ``partition_frame`` finishes
  the refreshed partitions together, up to ~2 x PREPARE_ROWS rows at a time (one rows query, one linked-
  files query, one polars plan, winners per partition); outcomes made by earlier runs come from
  the compact orjson blob stored per file.

Files are untrusted (issue 21): each is examined under its own guard (``_index_one``), opened
relative to the folder without following a symbolic link, checked to be a regular file, read
only up to ``OV_MAX_RECORD_BYTES`` when it is a record and hashed in chunks otherwise. What cannot
be loaded (a lone surrogate, a name that is not UTF-8 or not ours, a link, a folder, an oversized
record, an unreadable file) is indexed as a rejected record-frame row with its reason, so it
reaches ``ov_rejects`` and never stops the other files. A folder that is missing or empty while
the index lists files from it is an error (``LandingFolderUnavailable``), never "all removed".

The SQLite file can be deleted at any time: the next refresh rebuilds it from the landing folder.
"""

from __future__ import annotations

import datetime as dt
import errno
import gc
import hashlib
import json
import os
import re
import sqlite3
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ov_assets.core.contract import BAD_FILE_NAME, BOGOTA, FIRST_DAY, NOT_A_REGULAR_FILE, RECORD_TOO_LARGE, REFERENCE_NOT_LINKED, UNKNOWN_NAME, UNREADABLE, Reject, parse_extraction_ts
from ov_assets.errors import ConfigurationError, OperatorError
# (the endings of names being written: such files are skipped, not reported)
from ov_assets.core.file_names import _TEMPORARY_ENDINGS, FILE_RECORD, landing_dir, parse_name
from ov_assets.fs import NotARegularFile, open_regular
from ov_assets.core.records import RULES_VERSION, FileOutcome, evaluate_parts
from ov_assets.reports.consolidated import private_dir

if TYPE_CHECKING:
    import polars as pl

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
-- Bumped by every transaction that writes files: a refresh that started from an empty index
-- of an empresa and saw no other writer knows its fresh frames are the whole index.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('generation', 0);
"""
_BUMP = "UPDATE meta SET value = value + 1 WHERE key = 'generation'"
_GENERATION = "SELECT value FROM meta WHERE key = 'generation'"
# Only the indexes the queries use: the primary key (listing, lookups by name), a partition's
# record files, links between a record and its PDF/attachments. Every index is paid on each of
# the (many) inserts of a large refresh: the wide covering indexes of earlier versions are gone.
_INDEXES = """
DROP INDEX IF EXISTS files_stat; DROP INDEX IF EXISTS files_recheck; DROP INDEX IF EXISTS files_status;
DROP INDEX IF EXISTS files_partition_cov; DROP INDEX IF EXISTS files_partition_cov2;
DROP INDEX IF EXISTS files_partition_cov3;
CREATE INDEX IF NOT EXISTS files_partition ON files (empresa, partition_date) WHERE kind = 'json';
DROP INDEX IF EXISTS files_link;
-- kind: the lookup of a record's PDF/attachments skips the record file itself in the index.
CREATE INDEX IF NOT EXISTS files_link_kind ON files (empresa, link_key, kind);
-- The landing sensor's and the schedules' "indexed since" (every tick): without it each tick
-- read the whole table (~1 KB per file, outcomes included). One refresh writes one value, so
-- its inserts all land at the right edge of this index.
CREATE INDEX IF NOT EXISTS files_indexed_at ON files (indexed_at);
"""
# Only the few rows a refresh must evaluate again (a fecha after the day it was read, outcomes
# of other rules): a partial index keeps that lookup free of a table scan and cheap to maintain.
_RECHECK_WHERE = ("kind = 'json' AND (status = 'fecha_out_of_range' OR rules_version IS NULL "
                  f"OR rules_version <> {RULES_VERSION})")
_INDEXES += f"CREATE INDEX IF NOT EXISTS files_recheck_v{RULES_VERSION} ON files (empresa) WHERE {_RECHECK_WHERE};\n"


class IndexedFile(NamedTuple):
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


class RefreshResult:
    """What a refresh found: files listed, new and changed files (``IndexedFile`` lists, read
    from the index when first asked for: a refresh keeps only their names and partitions, not a
    million rows no caller may look at), files removed."""

    def __init__(self, scanned: int, index: LandingIndex, empresa: str, found: list[pl.DataFrame],
                 removed: int) -> None:
        self.scanned = scanned
        self.removed = removed
        self._index = index
        self._empresa = empresa
        self._found = found  # frames of (name, partition_date, _changed)
        self._lists: dict[bool, list[IndexedFile]] = {}

    def _files(self, changed: bool) -> list[IndexedFile]:
        if changed not in self._lists:
            names = [name for frame in self._found for name, _, was in frame.iter_rows() if was is changed]
            with self._index._db() as db:
                rows = db.execute(
                    f"SELECT {LandingIndex._COLUMNS} FROM files WHERE empresa = ? AND name IN "
                    "(SELECT value FROM json_each(?)) ORDER BY name", (self._empresa, json.dumps(names))).fetchall()
            self._lists[changed] = [LandingIndex._row(row) for row in rows]
        return self._lists[changed]

    @property
    def new(self) -> list[IndexedFile]:
        return self._files(False)

    @property
    def changed(self) -> list[IndexedFile]:
        return self._files(True)

    @property
    def touched_partitions(self) -> set[tuple[str, dt.date]]:
        return {(self._empresa, d) for frame in self._found
                for d in frame["partition_date"].drop_nulls().unique().to_list()}

    def __repr__(self) -> str:
        changed = sum(frame["_changed"].sum() for frame in self._found)
        new = sum(frame.height for frame in self._found) - changed
        return f"RefreshResult(scanned={self.scanned}, new={new}, changed={changed}, removed={self.removed})"


class LandingFolderUnavailable(OperatorError):
    """The landing folder is missing or empty while something says it held files."""

    def __init__(self, empresa: str, folder: str, evidence: str) -> None:
        super().__init__(
            f"the landing folder of {empresa} ({folder}) is missing or empty, but {evidence}: is the folder "
            "mounted (and OV_DATA_DIR right)? Nothing was changed or loaded.")


def _bogota_day(mtime_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, BOGOTA).date()


class LandingIndex:
    """The index of ``$OV_DATA_DIR/downloads/*/oficina_virtual/processed``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        state = private_dir(self.data_dir / "state")
        self.path = state / "landing_index.sqlite3"
        # Owner-only before SQLite creates it (its -wal and -shm files take the same mode): the
        # index holds file names, radicados and outcomes.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
        self.files_opened = 0  # how many landing files this object read (tests assert on it)
        # Per empresa, the per-file frame columns (``records.base_frame``) of the record files this
        # object's refresh just evaluated, so that ``partition_frame`` in the same run reads
        # nothing back from SQLite; bounded by FRESH_CACHE_BYTES (beyond, the index serves them).
        self._fresh: dict[str, list[pl.DataFrame]] = {}
        self._fresh_all: dict[str, pl.DataFrame] = {}  # merged, of partitions not finished yet:
        self._fresh_days: dict[str, dict[dt.date, int]] = {}  # and their rows
        self._ready: dict[str, dict[dt.date, pl.DataFrame]] = {}  # finished, handed out once
        # Per empresa, the generation after a refresh whose fresh frames hold every record file
        # the index has for it (it started empty and nobody else wrote): while the generation
        # is still that, finishing its partitions need not compare them with the index.
        self._complete: dict[str, int] = {}
        with self._db() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
            for column, kind in (("outcome", "BLOB"), ("rules_version", "INTEGER")):
                if column not in columns:  # an index written before outcomes were kept
                    db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")
            db.executescript(_INDEXES)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = _connect(self.path)
        try:
            yield db
        finally:
            db.close()

    def _forget(self, empresa: str) -> None:
        """Drop what an earlier refresh of this object kept in memory for the empresa."""
        for kept in (self._fresh, self._fresh_all, self._fresh_days, self._ready, self._complete):
            kept.pop(empresa, None)

    def folder(self, empresa: str) -> Path:
        return landing_dir(self.data_dir, empresa)

    def forget(self, empresa: str, files: Iterable[tuple[str, str]]) -> int:
        """Drop the rows of (name, sha256) files deleted on purpose (the cleanup), before they
        go: a folder the cleanup empties is then an empty index, never taken for an unmounted
        folder by the next refresh. Returns the rows dropped."""
        pairs = [(empresa, name, sha) for name, sha in files]
        if not pairs:
            return 0
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("DELETE FROM files WHERE empresa = ? AND name = ? AND sha256 = ?", pairs)
            dropped = db.total_changes - before
            db.execute(_BUMP)
            db.execute("COMMIT")
        self._forget(empresa)
        return dropped

    def refresh(self, empresa: str, today: dt.date, stable_before_ns: int | None = None) -> RefreshResult:
        """Bring the index up to date with the folder: open only new or changed files.

        Each new or changed record file is read, hashed and evaluated once here; its outcome is
        kept in the index so ``partition_frame`` never reads it again. Files rejected for a
        ``fecha`` after today, and outcomes made under older rules, are evaluated again.
        ``stable_before_ns``: skip files modified after this instant (still being written);
        they are picked up by a later refresh.

        The listing stats only the files already indexed (to see whether they changed); a new
        file is stat'ed by whoever opens it. Opening, hashing and evaluating run in worker
        processes for large refreshes (``_index_many``); this process only writes their rows.
        """
        folder = os.fspath(self.folder(empresa))
        with self._db() as db:
            known = {name: (size, mtime) for name, size, mtime in
                     db.execute("SELECT name, size, mtime_ns FROM files WHERE empresa = ?", (empresa,))}
            again = {name: (status, part) for name, status, part in db.execute(
                f"SELECT name, status, partition_date FROM files WHERE empresa = ? AND {_RECHECK_WHERE}", (empresa,))}
            generation = db.execute(_GENERATION).fetchone()[0]
        scanned = 0
        unseen = set(known)  # at the end of the listing: the files removed
        todo: list[str] = []
        if os.path.isdir(folder):
            with os.scandir(folder) as entries:
                # Every entry: links, folders and names that are not ours are reported (as
                # rejects, by ``_index_one``); stat never follows a link.
                for entry in entries:
                    real = entry.name
                    name = stored_name(real)
                    scanned += 1
                    unseen.discard(name)
                    previous = known.get(name)
                    if previous is None and stable_before_ns is None:
                        todo.append(real)
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if previous == (st.st_size, st.st_mtime_ns) and name not in again:
                        continue
                    if stable_before_ns is not None and st.st_mtime_ns > stable_before_ns:
                        continue
                    todo.append(real)
        if known and not scanned:
            # An unmounted (or wrongly configured) folder is not "every file removed": nothing
            # in the index is touched, and whatever runs on it stops here.
            raise LandingFolderUnavailable(empresa, folder, (
                f"the landing index lists {len(known)} files from it (if they were removed on purpose, delete "
                f"{self.path}: it is rebuilt from the folders)"))
        # In name order: each batch then covers one range of names, so its writes touch few
        # pages of the key and link indexes (a commit writes every page its rows touched).
        todo.sort()
        previous = {key: (*known[key], again.get(key)) for key in map(stored_name, todo) if key in known}
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        found: list[pl.DataFrame] = []
        self._forget(empresa)
        frames: list[pl.DataFrame] = []
        cached = 0
        writes = 0  # transactions of this refresh (a batch that indexed files writes once)
        complete = not known  # every record file of the empresa is in ``frames`` (so far)
        for opened, found_files, frame in _index_many(
                os.fspath(self.path), folder, empresa, todo, previous, today, now):
            self.files_opened += opened
            writes += opened > 0
            if found_files is not None:
                found.append(found_files)
            if frame is not None:
                if cached < FRESH_CACHE_BYTES:
                    frames.append(frame)
                    cached += frame.estimated_size()
                else:
                    complete = False
        removed = sorted(unseen)
        with self._db() as db:
            if removed:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM files WHERE empresa = ? AND name = ?", [(empresa, n) for n in removed])
                db.execute(_BUMP)
                db.execute("COMMIT")
                writes += 1
            now_generation = db.execute(_GENERATION).fetchone()[0]
        if frames:
            self._fresh[empresa] = frames
            if complete and now_generation == generation + writes:  # and nobody else wrote
                self._complete[empresa] = now_generation
        return RefreshResult(scanned, self, empresa, found, len(removed))

    def _stored(self, empresa: str, today: dt.date, rows: list[tuple[str, int, int, str, str | None]]
                ) -> tuple[list[tuple[str, str, int, list]], dict[str, dt.datetime], dict[str, str | None]]:
        """(name, sha256, size, ``FileOutcome.as_list()``) per record file of ``rows`` (name,
        size, mtime_ns, sha256, link_key), mtimes and link keys, from the outcomes stored in the
        index; a file is read again only when its stored outcome is missing or of other rules."""
        blobs: dict[str, bytes | None] = {}
        if rows:
            with self._db() as db:
                blobs = dict(db.execute(
                    "SELECT name, outcome FROM files WHERE empresa = ? AND name IN (SELECT value FROM json_each(?))",
                    (empresa, json.dumps([r[0] for r in rows]))))
        items: list[tuple[str, str, int, list]] = []
        mtimes: dict[str, dt.datetime] = {}
        links: dict[str, str | None] = {}
        loads = orjson.loads
        for name, size, mtime_ns, sha, link in rows:
            blob = blobs.get(name)
            parts = None
            if blob is not None:
                try:
                    parts = loads(blob)
                except orjson.JSONDecodeError:
                    parts = None
                if parts.__class__ is not list or len(parts) != 9 or parts[0] != RULES_VERSION:
                    parts = None
            if parts is None:  # evaluated again, as the refresh would (never written here)
                found = self._examine(empresa, name, today)
                if found is None:
                    continue  # removed since the refresh; the next refresh drops it
                name, sha, size, parts = found
            items.append((name, sha, size, parts))
            if parts[1] is not None and parts[6] is None:  # only then is the mtime used
                mtimes[name] = _bogota_naive(mtime_ns)
            links[name] = link
        return items, mtimes, links

    def _examine(self, empresa: str, name: str, today: dt.date) -> tuple[str, str, int, list] | None:
        """(name, sha256, size, outcome) of one file of the folder, read the way the refresh
        reads it (``_index_one``: no link followed, the size cap, every failure a reject); None
        when it is gone or no longer a record-frame file."""
        self.files_opened += 1
        out = _Found(empresa, today, "")
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            dir_fd = os.open(self.folder(empresa), flags)
        except FileNotFoundError:
            return None
        try:
            _index_guarded(dir_fd, name, max_record_bytes(), out)
        finally:
            os.close(dir_fd)
        return out.items[0] if out.items else None

    def _prepared(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame | None:
        """The finished frame of a partition this object's refresh evaluated (see ``_fresh``),
        handed out once (a second call for the partition reads the index); None for others.

        Partitions are finished together (the asked one and the next ones by date): one query
        for their index rows, one for their linked files and one polars plan, instead of all
        three per partition; all at once up to 2 x PREPARE_ROWS rows, else in chunks of about
        PREPARE_ROWS (finishing takes ~4 KB per row while it runs: the memory of a full reload)."""
        ready = self._ready.get(empresa)
        if ready and day in ready:
            return ready.pop(day)  # once: the memory goes with it
        import polars as pl

        if empresa in self._fresh:  # merged once, on the first partition asked for
            merged = pl.concat(self._fresh.pop(empresa), rechunk=False)
            self._fresh_all[empresa] = merged
            self._fresh_days[empresa] = dict(merged.group_by("_day").len().iter_rows())
        pending = self._fresh_days.get(empresa)
        if not pending or day not in pending:
            return None
        order = sorted(pending)
        at = order.index(day)
        chunk: list[dt.date] = []
        rows = 0
        limit = PREPARE_ROWS if sum(pending.values()) > 2 * PREPARE_ROWS else float("inf")
        for d in order[at:] + order[:at]:
            if chunk and rows + pending[d] > limit:
                break
            chunk.append(d)
            rows += pending.pop(d)
        merged = self._fresh_all[empresa]
        # (the merged frame holds the partitions of earlier chunks too: only a chunk of all of
        # its rows may take it whole)
        fresh = merged if rows == merged.height else merged.filter(pl.col("_day").is_in(chunk))
        if not pending:
            del self._fresh_all[empresa], self._fresh_days[empresa]
        ready = self._ready.setdefault(empresa, {})
        ready.update(self._finish_days(empresa, chunk, fresh, today))
        return ready.pop(day)

    def _finish_days(self, empresa: str, days: list[dt.date], base: pl.DataFrame, today: dt.date
                     ) -> dict[dt.date, pl.DataFrame]:
        """Finished frames (``records.finish_frame``) of these partitions from the fresh per-file
        columns of their files (``base``): files changed or moved by another process since the
        refresh are taken from the index instead, files indexed by others are added from it."""
        import polars as pl

        from ov_assets.core.records import base_frame, empty_frame, finish_frame

        with self._db() as db:
            if self._complete.get(empresa) == db.execute(_GENERATION).fetchone()[0]:
                rows = None  # ``base`` is all the index holds for these days, as it is now
            else:
                rows = db.execute(  # (name, size, mtime_ns, sha256, link_key, partition_date)
                    "SELECT name, size, mtime_ns, sha256, link_key, partition_date FROM files "
                    "WHERE empresa = ? AND kind = 'json' AND partition_date IN (SELECT value FROM json_each(?))",
                    (empresa, json.dumps([d.isoformat() for d in days])),
                ).fetchall()
        if rows is not None:
            current = {r[0]: (r[2], r[5]) for r in rows}
            usable = [current.get(n) == (m, d) for n, m, d in zip(
                base["file_name"].to_list(), base["_mtime_ns"].to_list(), base["_day"].dt.to_string().to_list())]
            if not all(usable):  # changed or moved by another process since this refresh
                base = base.filter(pl.Series(usable, dtype=pl.Boolean()))
        parts = [base.drop("_mtime_ns")]
        if rows is not None and len(rows) > base.height:  # files this refresh did not evaluate (or not as they are now)
            have = set(base["file_name"].to_list())
            others = [r for r in rows if r[0] not in have]
            items, mtimes, links = self._stored(empresa, today, [r[:5] for r in others])
            day_of = {r[0]: _date(r[5]) for r in others}
            parts.append(base_frame(items, mtimes, {
                "_link_key": ([links[it[0]] for it in items], pl.String()),
                "_day": ([day_of[it[0]] for it in items], pl.Date()),
            }))
        base = pl.concat(parts, how="diagonal") if len(parts) > 1 else parts[0]
        out: dict[dt.date, pl.DataFrame] = {}
        if not base.is_empty():
            frame = finish_frame(empresa, None, *_linked(self, empresa, base))
            # Sorted by partition: each partition is a zero-copy slice (``partition_by`` copies).
            at = 0
            for day, rows_of_day in frame["partition_date"].rle().struct.unnest().select("value", "len").iter_rows():
                out[day] = frame.slice(at, rows_of_day)
                at += rows_of_day
        for d in days:
            if d not in out:  # (every file of the day changed or moved since the refresh)
                out[d] = empty_frame()
        return out

    def _partition_base(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame:
        """The per-file columns (``records.base_frame`` + ``_link_key``) of a partition's record
        files, from the outcomes stored in the index."""
        import polars as pl

        from ov_assets.core.records import base_frame

        with self._db() as db:
            rows = db.execute(
                "SELECT name, size, mtime_ns, sha256, link_key FROM files "
                "WHERE empresa = ? AND partition_date = ? AND kind = 'json'",
                (empresa, day.isoformat()),
            ).fetchall()
        items, mtimes, links = self._stored(empresa, today, rows)
        return base_frame(items, mtimes, {"_link_key": ([links[it[0]] for it in items], pl.String())})

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
            by_name = {r.name: r for r in records}
            for f in map(self._row, cur):
                owners = set(by_link.get(f.link_key or "", []))
                owners |= {o for o in referenced_by.get(f.name, ())
                           if same_pqr(f.link_key, by_name[o].link_key, by_name[o].numero_radicado)}
                for owner in owners:
                    out[owner].append(f)
        return out

    def records_naming(self, empresa: str) -> dict[str, list[IndexedFile]]:
        """File name -> the record files of any day whose documento_prueba / adjuntar_archivo
        name it (a portal-named ``<uuid>.<ext>`` attachment may be named by several versions).
        Reads every record's refs of the empresa: for the weekly cleanup, not per partition."""
        out: dict[str, list[IndexedFile]] = {}
        with self._db() as db:
            cur = db.execute(
                f"SELECT j.value, {', '.join('f.' + c.strip() for c in self._COLUMNS.split(','))} "
                "FROM files f, json_each(f.refs) j WHERE f.empresa = ? AND f.kind = 'json' AND f.refs != '[]'",
                (empresa,))
            for name, *row in cur:
                out.setdefault(name, []).append(self._row(tuple(row)))
        return out

    def latest_hashes(self, empresa: str, days: Iterable[dt.date], today: dt.date | None = None) -> set[str]:
        """hash_registro of the latest valid version (the winner) of each radicado of these days
        in the landing folder. Only the latest: the scraper writes a PQR again unless its hash
        is one of these, and a status that went A -> B -> A must give a new A (the older A is
        there too, but B is what the folder holds as current)."""
        import polars as pl

        from ov_assets.core.contract import today_bogota
        from ov_assets.core.records import finish_frame

        today = today or today_bogota()
        out: set[str] = set()
        for day in days:
            frame = finish_frame(empresa, day, self._partition_base(empresa, day, today), None)
            out.update(frame.filter(pl.col("is_winner"))["hash_registro"].to_list())
        return out


def partition_frame(index: LandingIndex, empresa: str, day: dt.date, today: dt.date) -> "pl.DataFrame":
    """Every record file of one partition, decoded and validated, with its linked files and
    the winners marked: what ``pqr_records`` materializes. Reads no file the index has already
    evaluated (call ``index.refresh`` first)."""
    from ov_assets.core.records import finish_frame

    prepared = index._prepared(empresa, day, today)
    if prepared is not None:
        return prepared
    base = index._partition_base(empresa, day, today)
    return finish_frame(empresa, day, *_linked(index, empresa, base))  # (drops the helper columns)


def _linked(index: LandingIndex, empresa: str, base: "pl.DataFrame") -> "tuple[pl.DataFrame, pl.DataFrame | None]":
    """``base`` (per-file columns with ``_link_key``) and the PDFs and attachments
    (``records.LINKED_SCHEMA``) of its valid record files: same link key, or named by the
    record and of the same PQR (``same_pqr``). A named file of another PQR is not linked (it
    would be stored and listed as this PQR's); its record gets the ``reference_not_linked``
    warning instead."""
    import polars as pl

    from ov_assets.core.records import LINKED_SCHEMA

    valid_rows = base.filter(pl.col("status") == "valid")

    def keys(*columns: str) -> list[str]:  # distinct, non-empty (sets made by polars)
        values = pl.concat([valid_rows[c] for c in columns]).drop_nulls()
        return values.filter(values != "").unique().sort().to_list()

    link_keys, refs = keys("_link_key"), keys("documento_prueba", "adjuntar_archivo")
    if not link_keys and not refs:
        return base, None
    with index._db() as db:
        # Two indexed lookups (an OR of both would scan every file of the empresa).
        found = db.execute(
            "SELECT kind, name, size, sha256, link_key FROM files WHERE empresa = ?1 AND kind != 'json' AND "
            "link_key IN (SELECT value FROM json_each(?2)) "
            "UNION SELECT kind, name, size, sha256, link_key FROM files WHERE empresa = ?1 AND kind != 'json' AND "
            "name IN (SELECT value FROM json_each(?3))",
            (empresa, orjson.dumps(link_keys).decode(), orjson.dumps(refs).decode()),
        ).fetchall()
    if not found:
        return base, None
    files = pl.DataFrame(found, schema={"file_type": pl.String(), "filename": pl.String(), "size": pl.Int64(),
                                        "sha256": pl.String(), "link_key": pl.String()}, orient="row")
    owner = pl.col("file_name").alias("owner")
    by_name = pl.concat([
        valid_rows.select(owner, pl.col(c).alias("key"), "_link_key", "numero_radicado")
        for c in ("documento_prueba", "adjuntar_archivo")
    ]).filter(pl.col("key").is_not_null() & (pl.col("key") != "")).join(
        files.rename({"link_key": "_file_key"}), left_on="key", right_on="filename"
    ).with_columns(pl.col("key").alias("filename")).with_columns(_same_pqr_expr().alias("_ok"))
    refused = by_name.filter(~pl.col("_ok"))["owner"].unique()
    if not refused.is_empty():
        base = base.with_columns(
            pl.when(pl.col("file_name").is_in(refused.implode()))
            .then(pl.concat_str(pl.col("warnings"), pl.lit(REFERENCE_NOT_LINKED), separator=",").str.strip_chars(","))
            .otherwise(pl.col("warnings")).alias("warnings"))
    linked = pl.concat([
        valid_rows.select(owner, pl.col("_link_key").alias("key")).filter(pl.col("key").is_not_null())
        .join(files, left_on="key", right_on="link_key").drop("key"),
        by_name.filter(pl.col("_ok")).select(list(LINKED_SCHEMA)),
    ], how="diagonal").unique(["owner", "filename"]).sort("owner", "filename").select(list(LINKED_SCHEMA))
    return base, linked


def same_pqr(file_link_key: str | None, record_link_key: str | None, radicado: str | None) -> bool:
    """May a record link a file its ``documento_prueba`` / ``adjuntar_archivo`` names? Only a
    file of the same PQR: the ``{sgc}`` of its name is the record's own ``{sgc}``, its radicado
    or the ``PQR_{radicado}_...`` of a PQR without SGC; or a portal ``<uuid>.<ext>`` name (no
    ``{sgc}``: the portal's own name of that attachment). ``_same_pqr_expr`` is the same rule
    in polars."""
    if file_link_key is None:
        return True
    sgc = file_link_key.rsplit("|", 1)[0]
    return (sgc == (record_link_key or "").rsplit("|", 1)[0]
            or bool(radicado) and (sgc == radicado or sgc.startswith(f"PQR_{radicado}_")))


def _same_pqr_expr() -> "pl.Expr":
    """``same_pqr`` over the columns ``_file_key``, ``_link_key`` and ``numero_radicado``."""
    import polars as pl

    def sgc(column: str) -> pl.Expr:
        return pl.col(column).str.replace(r"\|[^|]*$", "")

    radicado = pl.col("numero_radicado")
    return (pl.col("_file_key").is_null() | (sgc("_file_key") == sgc("_link_key")).fill_null(False)
            | (sgc("_file_key") == radicado).fill_null(False)
            | sgc("_file_key").str.starts_with(pl.concat_str(pl.lit("PQR_"), radicado, pl.lit("_"))).fill_null(False))


def _bogota_naive(mtime_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, BOGOTA).replace(tzinfo=None)


def _connect(path: str | os.PathLike[str], cache_kib: int = 65536, mmap_bytes: int | None = None) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # 64 MiB: a partition's rows are spread over the table. A worker writes batches of names
    # in order: the pages it touches are few and near each other (16 MiB, no memory map).
    db.execute(f"PRAGMA cache_size=-{cache_kib}")
    db.execute(f"PRAGMA mmap_size={MMAP_BYTES if mmap_bytes is None else mmap_bytes}")
    db.execute("PRAGMA wal_autocheckpoint=8192")  # fewer checkpoints (fsyncs) in large refreshes
    return db


_Row = tuple  # one row of the files table, in column order
_INSERT = "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
# (size, mtime_ns, (status, partition_date) when evaluated again else None) of an indexed file
_Previous = tuple[int, int, "tuple[str | None, str | None] | None"]


def _index_batch(db_path: str, folder: str, empresa: str, names: list[str], previous: dict[str, _Previous],
                 today: dt.date, now: str, db: sqlite3.Connection | None = None
                 ) -> tuple[int, pl.DataFrame | None, pl.DataFrame | None]:
    """Open, stat, hash and (record files) evaluate a batch of landing files and write their
    rows to the index (one transaction; ``db``, else this worker's connection): returns how
    many files were opened, the new and the changed ones as a frame (``previous``: the indexed
    state of those already known; name, partition_date, ``_changed``), and the per-file frame
    columns of the record files (``records.base_frame`` plus ``_link_key``, ``_day``: the
    partition, ``_mtime_ns``), built here, in the worker, so that the main process neither
    converts values one by one nor writes rows. Files whose names are
    not ours, and files removed since the listing, are left out.

    The garbage collector is paused meanwhile: the batch makes many objects and no cycles, and
    each collection would walk them all again (about a tenth of the time)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _index_batch_(db_path, folder, empresa, names, previous, today, now, db)
    finally:
        if collecting:
            gc.enable()


def _index_batch_(db_path: str, folder: str, empresa: str, names: list[str], previous: dict[str, _Previous],
                  today: dt.date, now: str, db: sqlite3.Connection | None
                  ) -> tuple[int, pl.DataFrame | None, pl.DataFrame | None]:
    import polars as pl

    from ov_assets.core.records import base_frame

    cap = max_record_bytes()
    out = _Found(empresa, today, now)
    try:
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return 0, None, None
    try:
        for name in names:
            _index_guarded(dir_fd, name, cap, out)
    finally:
        os.close(dir_fd)
    rows = out.rows
    if rows:
        _write_rows(db if db is not None else _worker_db(db_path), rows)
    # (columns built from lists, no polars expression: a forked worker must not start the
    # thread pool of polars, which the parent may hold locks of)
    found_names: list[str] = []
    found_days: list[dt.date | None] = []
    found_changed: list[bool] = []
    for row in rows:
        name, size, mtime_ns, part, status = row[1], row[2], row[3], row[7], row[10]
        before = previous.get(name)
        if before is None:
            changed = False
        elif before[:2] != (size, mtime_ns) or before[2] not in (None, (status, part)):
            changed = True
        else:
            continue  # only evaluated again, same outcome: not a change
        found_names.append(name)
        found_days.append(_date(part) if part else None)
        found_changed.append(changed)
    found_frame = pl.DataFrame(
        {"name": found_names, "partition_date": found_days, "_changed": found_changed},
        schema={"name": pl.String(), "partition_date": pl.Date(), "_changed": pl.Boolean()},
    ) if found_names else None
    frame = base_frame(out.items, out.fallback, {
        "_link_key": (out.links, pl.String()), "_day": (out.days, pl.Date()), "_mtime_ns": (out.mtimes, pl.Int64()),
    }) if out.items else None
    return len(rows), found_frame, frame


class _Found:
    """What ``_index_one`` made of a batch's files: index rows and, per record-frame row, the
    (name, sha256, size, ``FileOutcome.as_list()``) item, link key, partition day and mtime, and
    the mtime as extraction time of the valid records that carry none."""

    def __init__(self, empresa: str, today: dt.date, now: str) -> None:
        self.empresa, self.today, self.now = empresa, today, now
        self.rows: list[_Row] = []
        self.items: list[tuple[str, str, int, list]] = []
        self.links: list[str | None] = []
        self.days: list[dt.date] = []
        self.mtimes: list[int] = []
        self.fallback: dict[str, dt.datetime] = {}


def _index_guarded(dir_fd: int, name: str, cap: int, out: _Found) -> None:
    """``_index_one``; a file it cannot make sense of becomes an ``unreadable`` reject: no
    content, name or kind of file stops the other files of the folder (or every refresh)."""
    try:
        _index_one(dir_fd, name, cap, out)
    except Exception as exc:  # noqa: BLE001 - kept as the file's reason (its class: no content)
        try:
            _reject_into(dir_fd, name, stored_name(name), None, UNREADABLE,
                         f"the file could not be read or evaluated ({type(exc).__name__})", out)
        except OSError:
            pass  # gone since the listing: the next refresh drops it


def _index_one(dir_fd: int, name: str, cap: int, out: _Found) -> None:
    """Classify, open (never through a symbolic link), hash and, for a record file, evaluate one
    landing file; append its index row (and record-frame item) to ``out``. Every file but those
    being written gets a row: what cannot be loaded is a reject with its reason."""
    stored = stored_name(name)
    if stored[:1] == "." or stored.endswith(_TEMPORARY_ENDINGS):
        return  # being written (the scraper writes aside, then renames)
    if stored is not name:
        _reject_into(dir_fd, name, stored, None, BAD_FILE_NAME,
                     "the file name is not valid UTF-8 (a cp1252 name from a Windows zip?): the file "
                     "was not read; rename it", out)
        return
    parsed = parse_name(name)
    if parsed is None:
        _reject_into(dir_fd, name, name, None, UNKNOWN_NAME,
                     "the name is none of the landing folder's (CONTRACT §2): the file was not read; "
                     "rename it if it is a PQR file, else move it out of the folder", out)
        return
    try:  # relative to the folder: one path component, and never through a symbolic link
        fd, st = open_regular(name, dir_fd)
    except FileNotFoundError:
        return  # removed since the listing
    except NotARegularFile as exc:
        _reject_into(dir_fd, name, name, parsed.ts, NOT_A_REGULAR_FILE, exc.detail, out, exc.st)
        return
    except OSError as exc:
        _reject_into(dir_fd, name, name, parsed.ts, UNREADABLE,
                     f"the file could not be opened ({errno.errorcode.get(exc.errno or 0, 'OSError')})", out)
        return
    try:
        if parsed.kind != FILE_RECORD:
            sha, size = _hash_fd(fd)
            out.rows.append((out.empresa, name, size, st.st_mtime_ns, sha, parsed.kind, parsed.link_key, None,
                             None, None, None, "[]", out.now, None, None))
            return
        data = _read_fd(fd, st.st_size, cap) if st.st_size <= cap else None
        if data is None or len(data) > cap:  # (or it grew past the cap since fstat)
            os.lseek(fd, 0, os.SEEK_SET)
            sha, size = _hash_fd(fd)
            _reject_into(dir_fd, name, name, parsed.ts, RECORD_TOO_LARGE,
                         f"the record file has {size} bytes, above OV_MAX_RECORD_BYTES ({cap}): not read",
                         out, st, sha, size)
            return
    finally:
        os.close(fd)
    sha = hashlib.sha256(data).hexdigest()
    _record_into(name, parsed.link_key, parsed.ts, st, sha, len(data),
                 evaluate_parts(name, data, sha, out.today), out)


def _reject_into(dir_fd: int, name: str, stored: str, ts: str | None, code: str, detail: str, out: _Found,
                 st: os.stat_result | None = None, sha: str = "", size: int | None = None) -> None:
    """A file rejected before its content was evaluated: a record-frame row (kind ``json``, so
    it reaches ``ov_rejects`` through its partition like a rejected record file) holding the
    reason, linked to nothing. ``stored``: the name as the index keeps it; ``sha`` "" when the
    file was not read."""
    if st is None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    size = st.st_size if size is None else size
    parts = FileOutcome(stored, sha, size, reject=Reject(code, detail)).as_list()
    _record_into(stored, None, ts if ts is not None else _name_ts(stored), st, sha, size, parts, out)


def _record_into(name: str, link_key: str | None, ts: str | None, st: os.stat_result, sha: str, size: int,
                 parts: list[Any], out: _Found) -> None:
    """Append the index row and record-frame item of a record file (or of a file rejected as
    one) whose outcome is ``parts``. Partition: its fecha's day, else the ``{ts}`` of its name,
    else its mtime's day (CONTRACT §5)."""
    values, reject = parts[1], parts[4]
    if values is not None:
        status, refs, hreg = "valid", parts[7], parts[2]
    else:
        status, refs, hreg = reject[0], (), None
    iso_day = parts[8]
    if iso_day is not None:
        day = _date(iso_day)
    else:
        named = parse_extraction_ts(ts)
        day = named.date() if named and FIRST_DAY <= named.date() <= out.today else _bogota_day(st.st_mtime_ns)
        iso_day = day.isoformat()
    row = (out.empresa, name, size, st.st_mtime_ns, sha, FILE_RECORD, link_key, iso_day, parts[5], hreg, status,
           orjson.dumps(refs).decode() if refs else "[]", out.now, orjson.dumps(parts), RULES_VERSION)
    out.rows.append(row)  # (all that may fail is done: the lists stay aligned)
    out.items.append((name, sha, size, parts))
    out.links.append(link_key)
    out.days.append(day)
    out.mtimes.append(st.st_mtime_ns)
    if values is not None and parts[6] is None:
        out.fallback[name] = _bogota_naive(st.st_mtime_ns)


def stored_name(name: str) -> str:
    """The name as the index (and ``ov_rejects``) keep it: ``name`` itself when it is valid
    UTF-8, else its bytes with the invalid ones written ``\\xNN`` (``os.scandir`` hands such
    names over with surrogate escapes, which no UTF-8 store accepts)."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


_TS_ANYWHERE = re.compile(r"(?<!\d)(\d{8}_\d{6})(?!\d)")


def _name_ts(name: str) -> str | None:
    """A ``{ts}`` anywhere in a name that follows no rule (its partition, CONTRACT §5)."""
    found = _TS_ANYWHERE.search(name)
    return found[1] if found else None


def max_record_bytes() -> int:
    """``OV_MAX_RECORD_BYTES``: the largest record file read (default 8 MiB; a real record is a
    few KB, free text included): a larger one is rejected ``record_too_large`` unread, so one
    file cannot take a worker's memory."""
    raw = os.environ.get("OV_MAX_RECORD_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_RECORD_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1024:
        raise ConfigurationError(f"OV_MAX_RECORD_BYTES={raw!r}: give a number of bytes of at least 1024 "
                                 f"(unset: {DEFAULT_MAX_RECORD_BYTES})")
    return value


DEFAULT_MAX_RECORD_BYTES = 8 * 2**20
_DAYS: dict[str, dt.date] = {}  # ISO day -> date, shared by the records of a day
_CHUNK = 1 << 20


def _date(iso_day: str) -> dt.date:
    return _DAYS.get(iso_day) or _DAYS.setdefault(iso_day, dt.date.fromisoformat(iso_day))


def _read_fd(fd: int, size: int, cap: int) -> bytes:
    """The file's bytes; more than ``cap`` of them only when it is over the cap."""
    data = os.read(fd, size + 1)
    if len(data) <= size:  # a short read of a regular file: its end
        return data
    chunks = [data]  # the file grew since fstat
    total = len(data)
    while chunks[-1] and total <= cap:
        chunks.append(os.read(fd, _CHUNK))
        total += len(chunks[-1])
    return b"".join(chunks)


def _hash_fd(fd: int) -> tuple[str, int]:
    """SHA-256 and size of the file from its position on, in chunks (one ``os.read`` returns at
    most ~2 GiB on Linux: a larger file read at once was hashed truncated)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _write_rows(db: sqlite3.Connection, rows: list[_Row]) -> None:
    """One write transaction; the workers of a refresh take turns (``_WRITE_LOCK``) rather than
    wait in SQLite's busy handler, which sleeps in steps of milliseconds."""
    lock = _WRITE_LOCK
    if lock is not None:
        lock.acquire()
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_INSERT, rows)
            db.execute(_BUMP)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        if lock is not None:
            lock.release()



# Fresh per-file frames kept by a refresh for ``partition_frame`` (beyond, the index serves them).
FRESH_CACHE_BYTES = 256 * 2**20
# Partitions finished together by ``partition_frame`` (rows, about; up to twice as many at once).
PREPARE_ROWS = 50_000
# SQLite memory-maps at most this much of the index: reads of a large index (the listing's
# sizes and mtimes, a partition's rows) are much faster so, but the pages read count in the RSS
# of the process. Workers, which only write, map nothing.
MMAP_BYTES = 256 * 2**20
# Refreshes that open at least this many files spread them over worker processes.
POOL_MIN_FILES = 4000
_BATCH = 1000


def _workers() -> int:
    configured = os.environ.get("OV_INDEX_WORKERS")
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            pass
    return max(1, min(os.cpu_count() or 1, 4))


# In a worker process: the lock the workers of a refresh write under, and its index connection.
_WRITE_LOCK: Any = None
_WORKER_DB: dict[str, sqlite3.Connection] = {}


def _worker_db(path: str) -> sqlite3.Connection:
    db = _WORKER_DB.get(path)
    if db is None:
        db = _WORKER_DB[path] = _connect(path, cache_kib=16384, mmap_bytes=0)
    return db


def _worker_init(lock: Any) -> None:
    global _WRITE_LOCK
    _WRITE_LOCK = lock
    _WORKER_DB.clear()  # (under fork: never a connection of the parent)
    # What the worker inherited (modules, this process's data under fork) lives as long as it:
    # the garbage collector need not walk it again at every full collection (nor touch its
    # pages, which fork shares with the parent until written).
    gc.freeze()


def _index_many(db_path: str, folder: str, empresa: str, names: list[str], previous: dict[str, _Previous],
                today: dt.date, now: str
                ) -> Iterator[tuple[int, pl.DataFrame | None, pl.DataFrame | None]]:
    """``_index_batch`` over batches of names: in this process for a few files, else in a pool
    of worker processes (read + hash + decode + validate + write are per file and CPU-bound)."""
    batches = [names[i:i + _BATCH] for i in range(0, len(names), _BATCH)]

    def known(batch: list[str]) -> dict[str, _Previous]:
        return {n: previous[n] for n in batch if n in previous} if previous else {}

    workers = _workers()
    if workers < 2 or len(names) < POOL_MIN_FILES:
        if batches:
            db = _connect(db_path)
            try:
                for batch in batches:
                    yield _index_batch(db_path, folder, empresa, batch, known(batch), today, now, db)
            finally:
                db.close()
        return
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork starts workers at once and shares this process's imports; it is only safe while no
    # other thread runs (a thread holding a lock at fork leaves it held in the child). Else
    # forkserver (a Dagster step runs threads): it imports this module once per process and
    # forks the workers from there.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["ov_assets.landing.index"])
    # A bounded window of batches in flight: results wait for this process in memory, so
    # submitting everything at once (``pool.map``) would hold most of a large refresh's results
    # at the same time.
    window = 3 * workers
    with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=ctx,
                             initializer=_worker_init, initargs=(ctx.Lock(),)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(_index_batch, db_path, folder, empresa, batch, known(batch), today, now))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
