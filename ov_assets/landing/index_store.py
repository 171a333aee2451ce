"""The SQLite file of the landing index: its schema (and the upgrade of index files written by
earlier versions), the named rows it holds and every query of it.

One row per landing file: (empresa, name) -> size, mtime, SHA-256, kind, link key, partition,
radicado, hash_registro, status, referenced names and the record's outcome in its compact form
(``Outcome``), so that a partition is never read from the folder twice. The file can be deleted
at any time: the next refresh rebuilds it from the landing folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ov_assets.core.records import RULES_VERSION

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
_RECHECK_WHERE = (
    f"kind = 'json' AND (status = 'fecha_out_of_range' OR rules_version IS NULL OR rules_version <> {RULES_VERSION})"
)
_INDEXES += f"CREATE INDEX IF NOT EXISTS files_recheck_v{RULES_VERSION} ON files (empresa) WHERE {_RECHECK_WHERE};\n"
_INSERT = "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_COLUMNS = (
    "empresa, name, size, mtime_ns, sha256, kind, link_key, partition_date, numero_radicado, hash_registro, status"
)
# The files other than records of some link keys (?2) or names (?3), as ``{}`` columns: two
# indexed lookups (an OR of both would scan every file of the empresa).
_LINKED = (
    "SELECT {0} FROM files WHERE empresa = ?1 AND kind != 'json' AND link_key IN (SELECT value FROM json_each(?2)) "
    "UNION SELECT {0} FROM files WHERE empresa = ?1 AND kind != 'json' AND name IN (SELECT value FROM json_each(?3))"
)

# SQLite memory-maps at most this much of the index: reads of a large index (the listing's
# sizes and mtimes, a partition's rows) are much faster so, but the pages read count in the RSS
# of the process. Workers, which only write, map nothing.
MMAP_BYTES = 256 * 2**20


class IndexedFile(NamedTuple):
    """A landing file as the index knows it (what callers of the index are handed)."""

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


class IndexRow(NamedTuple):
    """One row of the ``files`` table, in column order (what a refresh writes)."""

    empresa: str
    name: str
    size: int
    mtime_ns: int
    sha256: str
    kind: str
    link_key: str | None
    partition_date: str | None  # ISO day
    numero_radicado: str | None
    hash_registro: str | None
    status: str | None
    refs: str  # JSON list of the file names the record names
    indexed_at: str
    outcome: bytes | None  # the record's ``Outcome`` as JSON
    rules_version: int | None


class Outcome(NamedTuple):
    """A record file's outcome in the compact form ``FileOutcome.as_list()`` makes (and the
    index stores as a JSON list), read by name."""

    rules_version: int
    values: list[str] | None  # the 18 canonical values of a valid record, else None
    hash_registro: str | None
    warnings: list[str] | None
    reject: list[str] | None  # [code, detail] of a rejected record
    numero_radicado: str | None
    extracted: str | None  # extraction time (ISO), when the record or its name gives one
    refs: list[str]  # the file names the record names (documento_prueba, adjuntar_archivo)
    fecha_day: str | None  # the day (ISO) its fecha gives

    @classmethod
    def load(cls, blob: bytes | None) -> Outcome | None:
        """The stored outcome; None when there is none, it is unreadable or of other rules
        (the file is then evaluated again)."""
        if blob is None:
            return None
        try:
            parts = orjson.loads(blob)
        except orjson.JSONDecodeError:
            return None
        if parts.__class__ is not list or len(parts) != 9 or parts[0] != RULES_VERSION:
            return None
        return cls._make(parts)


class RecordItem(NamedTuple):
    """A record file and its outcome: one input row of ``records.base_frame``."""

    name: str
    sha256: str
    size: int
    outcome: Outcome


class StoredRecord(NamedTuple):
    """What a partition's frame needs of a record file's row, besides its outcome."""

    name: str
    size: int
    mtime_ns: int
    sha256: str
    link_key: str | None
    partition_date: str | None


def indexed_file(row: tuple[Any, ...]) -> IndexedFile:
    """The ``IndexedFile`` of a row selected as ``_COLUMNS``."""
    e, name, size, mtime, sha, kind, link, part, rad, hreg, status = row
    return IndexedFile(
        e, name, size, mtime, sha, kind, link, dt.date.fromisoformat(part) if part else None, rad, hreg, status
    )


def connect(path: str | os.PathLike[str], cache_kib: int = 65536, mmap_bytes: int | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # 64 MiB: a partition's rows are spread over the table. A worker writes batches of names
    # in order: the pages it touches are few and near each other (16 MiB, no memory map).
    db.execute(f"PRAGMA cache_size=-{cache_kib}")
    db.execute(f"PRAGMA mmap_size={MMAP_BYTES if mmap_bytes is None else mmap_bytes}")
    db.execute("PRAGMA wal_autocheckpoint=8192")  # fewer checkpoints (fsyncs) in large refreshes
    return db


def write_rows(db: sqlite3.Connection, rows: list[IndexRow], lock: Any = None) -> None:
    """Insert or replace ``rows`` in one write transaction. ``lock``: held meanwhile, so that
    the workers of a refresh take turns rather than wait in SQLite's busy handler, which sleeps
    in steps of milliseconds."""
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


def _in(values: Iterable[str]) -> str:
    """A list bound to one parameter, read in SQL as ``(SELECT value FROM json_each(?))``."""
    return json.dumps(list(values))


class IndexStore:
    """The index's SQLite file (created owner-only, schema brought up to date on open); each
    query opens its own short connection, so that an object of it may be shared by threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Owner-only before SQLite creates it (its -wal and -shm files take the same mode): the
        # index holds file names, radicados and outcomes.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
        with self.connect() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
            for column, kind in (("outcome", "BLOB"), ("rules_version", "INTEGER")):
                if column not in columns:  # an index written before outcomes were kept
                    db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")
            db.executescript(_INDEXES)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index, closed on exit."""
        db = connect(self.path)
        try:
            yield db
        finally:
            db.close()

    def generation(self) -> int:
        """The count of transactions that wrote files so far (any process)."""
        with self.connect() as db:
            return int(db.execute(_GENERATION).fetchone()[0])

    def listing(self, empresa: str) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[str | None, str | None]], int]:
        """What a refresh compares the folder with: name -> (size, mtime_ns) of every indexed
        file, name -> (status, partition_date) of the record files to evaluate again (a fecha
        after the day it was read, outcomes of other rules), and the generation."""
        with self.connect() as db:
            known = {
                name: (size, mtime)
                for name, size, mtime in db.execute(
                    "SELECT name, size, mtime_ns FROM files WHERE empresa = ?", (empresa,)
                )
            }
            again = {
                name: (status, part)
                for name, status, part in db.execute(
                    f"SELECT name, status, partition_date FROM files WHERE empresa = ? AND {_RECHECK_WHERE}", (empresa,)
                )
            }
            generation = db.execute(_GENERATION).fetchone()[0]
        return known, again, generation

    def remove(self, empresa: str, names: list[str]) -> int:
        """Drop the rows of files gone from the folder (one transaction, when there are any);
        returns the generation after it."""
        with self.connect() as db:
            if names:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM files WHERE empresa = ? AND name = ?", [(empresa, n) for n in names])
                db.execute(_BUMP)
                db.execute("COMMIT")
            return int(db.execute(_GENERATION).fetchone()[0])

    def forget(self, empresa: str, files: list[tuple[str, str]]) -> int:
        """Drop the rows of these (name, sha256) files, in one transaction; returns the rows
        dropped."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany(
                "DELETE FROM files WHERE empresa = ? AND name = ? AND sha256 = ?",
                [(empresa, name, sha) for name, sha in files],
            )
            dropped = db.total_changes - before
            db.execute(_BUMP)
            db.execute("COMMIT")
        return dropped

    def files_named(self, empresa: str, names: list[str]) -> list[IndexedFile]:
        """The indexed files of these names, by name."""
        with self.connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE empresa = ? AND name IN "
                "(SELECT value FROM json_each(?)) ORDER BY name",
                (empresa, _in(names)),
            ).fetchall()
        return [indexed_file(row) for row in rows]

    def outcomes(self, empresa: str, names: list[str]) -> dict[str, bytes | None]:
        """name -> stored outcome (``Outcome`` as JSON, None when not kept) of these files."""
        with self.connect() as db:
            return dict(
                db.execute(
                    "SELECT name, outcome FROM files WHERE empresa = ? AND name IN (SELECT value FROM json_each(?))",
                    (empresa, _in(names)),
                )
            )

    def partition_records(
        self, empresa: str, days: list[dt.date], unless_generation: int | None = None
    ) -> list[StoredRecord] | None:
        """The record files of these partitions; None when the generation is still
        ``unless_generation`` (the caller then holds them all already)."""
        with self.connect() as db:
            if unless_generation is not None and unless_generation == db.execute(_GENERATION).fetchone()[0]:
                return None
            return list(
                map(
                    StoredRecord._make,
                    db.execute(
                        "SELECT name, size, mtime_ns, sha256, link_key, partition_date FROM files "
                        "WHERE empresa = ? AND kind = 'json' AND partition_date IN (SELECT value FROM json_each(?))",
                        (empresa, _in(d.isoformat() for d in days)),
                    ),
                )
            )

    def record_files(self, empresa: str, day: dt.date) -> list[IndexedFile]:
        """The record (JSON) files routed to a partition, by name."""
        with self.connect() as db:
            cur = db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE empresa = ? AND partition_date = ? AND kind = 'json' ORDER BY name",
                (empresa, day.isoformat()),
            )
            return [indexed_file(r) for r in cur]

    def refs(self, empresa: str, names: list[str]) -> dict[str, list[str]]:
        """name -> the file names each of these records names."""
        with self.connect() as db:
            return {
                name: json.loads(raw)
                for name, raw in db.execute(
                    "SELECT name, refs FROM files WHERE empresa = ? AND name IN (SELECT value FROM json_each(?))",
                    (empresa, _in(names)),
                )
            }

    def others_linked(self, empresa: str, link_keys: list[str], names: list[str]) -> list[IndexedFile]:
        """The files other than records (PDFs, attachments) of these link keys or names."""
        with self.connect() as db:
            return [
                indexed_file(r) for r in db.execute(_LINKED.format(_COLUMNS), (empresa, _in(link_keys), _in(names)))
            ]

    def others_linked_rows(
        self, empresa: str, link_keys: list[str], names: list[str]
    ) -> list[tuple[str, str, int, str, str | None]]:
        """``others_linked`` as (kind, name, size, sha256, link_key) rows, for a frame."""
        with self.connect() as db:
            return db.execute(
                _LINKED.format("kind, name, size, sha256, link_key"),
                (empresa, orjson.dumps(link_keys).decode(), orjson.dumps(names).decode()),
            ).fetchall()

    def records_naming(self, empresa: str) -> dict[str, list[IndexedFile]]:
        """File name -> the record files of any day that name it (reads every record's refs)."""
        out: dict[str, list[IndexedFile]] = {}
        with self.connect() as db:
            cur = db.execute(
                f"SELECT j.value, {', '.join('f.' + c.strip() for c in _COLUMNS.split(','))} "
                "FROM files f, json_each(f.refs) j WHERE f.empresa = ? AND f.kind = 'json' AND f.refs != '[]'",
                (empresa,),
            )
            for name, *row in cur:
                out.setdefault(name, []).append(indexed_file(tuple(row)))
        return out
