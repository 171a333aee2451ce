"""The new and changed files of a refresh, examined and written to the index in batches: in the
calling process for a few files, else in a pool of worker processes (read + hash + decode +
validate + write are per file and CPU-bound).

Batches are of names in name order (each commit then touches few pages of the key index), one
transaction per batch, the workers taking turns under a lock. A worker returns only the new and
changed files and the per-file frame columns of its record files, as frames: the main process
neither converts values one by one nor writes rows.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ov_assets.landing.examine import Examined, examine_guarded, iso_date, open_folder
from ov_assets.landing.index_store import connect, write_rows
from ov_assets.settings import index_workers, max_record_bytes

if TYPE_CHECKING:
    import polars as pl

# Refreshes that open at least this many files spread them over worker processes.
POOL_MIN_FILES = 4000
_BATCH = 1000


class Previous(NamedTuple):
    """The indexed state of a known file that a refresh opens again."""

    size: int
    mtime_ns: int
    # (status, partition_date) when it is evaluated again for its fecha or its rules, else None
    recheck: tuple[str | None, str | None] | None


class BatchResult(NamedTuple):
    """What a batch of files gave: how many files were opened; the new and the changed ones
    (name, partition_date, ``_changed``); the per-file frame columns of its record files
    (``records.base_frame`` plus ``_link_key``, ``_day``: the partition, ``_mtime_ns``)."""

    opened: int
    found: pl.DataFrame | None
    frame: pl.DataFrame | None


# In a worker process: the lock the workers of a refresh write under, and its index connection.
_WRITE_LOCK: Any = None
_WORKER_DB: dict[str, sqlite3.Connection] = {}


def _worker_db(path: str) -> sqlite3.Connection:
    db = _WORKER_DB.get(path)
    if db is None:
        db = _WORKER_DB[path] = connect(path, cache_kib=16384, mmap_bytes=0)
    return db


def _worker_init(lock: Any) -> None:
    global _WRITE_LOCK
    _WRITE_LOCK = lock
    _WORKER_DB.clear()  # (under fork: never a connection of the parent)
    # What the worker inherited (modules, this process's data under fork) lives as long as it:
    # the garbage collector need not walk it again at every full collection (nor touch its
    # pages, which fork shares with the parent until written).
    gc.freeze()


def index_many(
    db_path: str, folder: str, empresa: str, names: list[str], previous: dict[str, Previous], today: dt.date, now: str
) -> Iterator[BatchResult]:
    """``index_batch`` over batches of ``names``, in order: in this process for a few files,
    else in a pool of worker processes."""
    batches = [names[i : i + _BATCH] for i in range(0, len(names), _BATCH)]

    def known(batch: list[str]) -> dict[str, Previous]:
        return {n: previous[n] for n in batch if n in previous} if previous else {}

    count = index_workers()
    if count < 2 or len(names) < POOL_MIN_FILES:
        if batches:
            db = connect(db_path)
            try:
                for batch in batches:
                    yield index_batch(db_path, folder, empresa, batch, known(batch), today, now, db)
            finally:
                db.close()
        return
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.context import BaseContext

    # fork starts workers at once and shares this process's imports; it is only safe while no
    # other thread runs (a thread holding a lock at fork leaves it held in the child). Else
    # forkserver (a Dagster step runs threads): it imports this module once per process and
    # forks the workers from there.
    methods = multiprocessing.get_all_start_methods()
    ctx: BaseContext
    if "fork" in methods and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload([__name__])
    # A bounded window of batches in flight: results wait for this process in memory, so
    # submitting everything at once (``pool.map``) would hold most of a large refresh's results
    # at the same time.
    window = 3 * count
    with ProcessPoolExecutor(
        max_workers=min(count, len(batches)), mp_context=ctx, initializer=_worker_init, initargs=(ctx.Lock(),)
    ) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(index_batch, db_path, folder, empresa, batch, known(batch), today, now))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def index_batch(
    db_path: str,
    folder: str,
    empresa: str,
    names: list[str],
    previous: dict[str, Previous],
    today: dt.date,
    now: str,
    db: sqlite3.Connection | None = None,
) -> BatchResult:
    """Open, stat, hash and (record files) evaluate a batch of landing files and write their
    rows to the index (one transaction; ``db``, else this worker's connection). ``previous``:
    the indexed state of those already known. Files being written, and files removed since the
    listing, are left out.

    The garbage collector is paused meanwhile: the batch makes many objects and no cycles, and
    each collection would walk them all again."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _index_batch(db_path, folder, empresa, names, previous, today, now, db)
    finally:
        if collecting:
            gc.enable()


def _index_batch(
    db_path: str,
    folder: str,
    empresa: str,
    names: list[str],
    previous: dict[str, Previous],
    today: dt.date,
    now: str,
    db: sqlite3.Connection | None,
) -> BatchResult:
    import polars as pl

    from ov_assets.core.records import base_frame

    cap = max_record_bytes()
    out = Examined(empresa, today, now)
    try:
        dir_fd = open_folder(folder)
    except FileNotFoundError:
        return BatchResult(0, None, None)
    try:
        for name in names:
            examine_guarded(dir_fd, name, cap, out)
    finally:
        os.close(dir_fd)
    rows = out.rows
    if rows:
        write_rows(db if db is not None else _worker_db(db_path), rows, _WRITE_LOCK)
    # (columns built from lists, no polars expression: a forked worker must not start the
    # thread pool of polars, which the parent may hold locks of)
    found_names: list[str] = []
    found_days: list[dt.date | None] = []
    found_changed: list[bool] = []
    for row in rows:
        name, part, status = row.name, row.partition_date, row.status
        before = previous.get(name)
        if before is None:
            changed = False
        elif (before.size, before.mtime_ns) != (row.size, row.mtime_ns) or before.recheck not in (None, (status, part)):
            changed = True
        else:
            continue  # only evaluated again, same outcome: not a change
        found_names.append(name)
        found_days.append(iso_date(part) if part else None)
        found_changed.append(changed)
    found_frame = (
        pl.DataFrame(
            {"name": found_names, "partition_date": found_days, "_changed": found_changed},
            schema={"name": pl.String(), "partition_date": pl.Date(), "_changed": pl.Boolean()},
        )
        if found_names
        else None
    )
    frame = (
        base_frame(
            out.items,
            out.fallback,
            {
                "_link_key": (out.links, pl.String()),
                "_day": (out.days, pl.Date()),
                "_mtime_ns": (out.mtimes, pl.Int64()),
            },
        )
        if out.items
        else None
    )
    return BatchResult(len(rows), found_frame, frame)
