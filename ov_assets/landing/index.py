"""An incremental index of the landing folder: (name, size, mtime, SHA-256, kind, partition,
outcome) per file, in SQLite under ``$OV_DATA_DIR/state``.

Only new or changed files (by size and mtime) are opened, so finding a partition's files in a
folder of 200,000 costs a directory listing plus that partition's new files, never a rescan of
every file (the old system's O(N^2)). The sensor and the assets share it.

``LandingIndex`` is the facade callers use: ``refresh`` and the queries. Its parts:

- ``index_store``: the SQLite file, its schema and queries, the named rows;
- ``examine``: one landing file, opened and evaluated the way the index takes it in (files are
  untrusted: whatever cannot be loaded is indexed as a rejected record with its reason);
- ``index_workers``: the new and changed files of a refresh, in batches, in worker processes
  for large refreshes; they write the index rows and return the per-file frame columns;
- ``partition_frames``: a partition's frame, finished from the fresh frames of the refresh or
  from the outcomes stored in the index; ``linked_files``: a record's PDFs and attachments.

A folder that is missing or empty while the index lists files from it is an error
(``LandingFolderUnavailable``), never "all removed". The SQLite file can be deleted at any
time: the next refresh rebuilds it from the landing folder.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ov_assets.core.file_names import landing_dir
from ov_assets.errors import LandingFolderUnavailable
from ov_assets.fs import private_dir
from ov_assets.landing.examine import examine_file, stored_name
from ov_assets.landing.index_store import IndexedFile, IndexStore, RecordItem
from ov_assets.landing.index_workers import Previous, index_many
from ov_assets.landing.linked_files import linked_files
from ov_assets.landing.partition_frames import FRESH_CACHE_BYTES, PartitionFrames

if TYPE_CHECKING:
    import polars as pl

__all__ = ["IndexedFile", "LandingFolderUnavailable", "LandingIndex", "RefreshResult", "partition_frame"]


class RefreshResult:
    """What a refresh found: files listed, new and changed files (``IndexedFile`` lists, read
    from the index when first asked for: a refresh keeps only their names and partitions, not a
    million rows no caller may look at), files removed, and files ``opened`` (read: new,
    changed or evaluated again), which is the cost the index exists to keep small, and files
    ``unstable`` (modified after ``stable_before_ns``: not indexed yet)."""

    def __init__(
        self,
        scanned: int,
        store: IndexStore,
        empresa: str,
        found: list[pl.DataFrame],
        removed: int,
        opened: int = 0,
        unstable: int = 0,
    ) -> None:
        self.scanned = scanned
        self.removed = removed
        self.opened = opened
        self.unstable = unstable  # new or changed files left for later: modified after the cutoff
        self._store = store
        self._empresa = empresa
        self._found = found  # frames of (name, partition_date, _changed)
        self._lists: dict[bool, list[IndexedFile]] = {}

    def _files(self, changed: bool) -> list[IndexedFile]:
        if changed not in self._lists:
            names = [name for frame in self._found for name, _, was in frame.iter_rows() if was is changed]
            self._lists[changed] = self._store.files_named(self._empresa, names)
        return self._lists[changed]

    @property
    def new(self) -> list[IndexedFile]:
        return self._files(False)

    @property
    def changed(self) -> list[IndexedFile]:
        return self._files(True)

    @property
    def touched_partitions(self) -> set[tuple[str, dt.date]]:
        return {
            (self._empresa, d) for frame in self._found for d in frame["partition_date"].drop_nulls().unique().to_list()
        }

    def __repr__(self) -> str:
        changed = sum(frame["_changed"].sum() for frame in self._found)
        new = sum(frame.height for frame in self._found) - changed
        return (
            f"RefreshResult(scanned={self.scanned}, new={new}, changed={changed}, removed={self.removed}, "
            f"opened={self.opened})"
        )


class LandingIndex:
    """The index of ``$OV_DATA_DIR/downloads/*/oficina_virtual/processed``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.store = IndexStore(private_dir(self.data_dir / "state") / "landing_index.sqlite3")
        self.path = self.store.path
        self.frames = PartitionFrames(self.store, self._examine)

    def folder(self, empresa: str) -> Path:
        return landing_dir(self.data_dir, empresa)

    def forget(self, empresa: str, files: Iterable[tuple[str, str]]) -> int:
        """Drop the rows of (name, sha256) files deleted on purpose (the cleanup), before they
        go: a folder the cleanup empties is then an empty index, never taken for an unmounted
        folder by the next refresh. Returns the rows dropped."""
        files = list(files)
        if not files:
            return 0
        dropped = self.store.forget(empresa, files)
        self.frames.forget(empresa)
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
        processes for large refreshes (``index_workers``); this process keeps their frames.
        """
        folder = os.fspath(self.folder(empresa))
        known, again, generation = self.store.listing(empresa)
        scanned = 0
        unseen = set(known)  # at the end of the listing: the files removed
        todo: list[str] = []
        unstable = 0
        if os.path.isdir(folder):
            with os.scandir(folder) as entries:
                # Every entry: links, folders and names that are not ours are reported (as
                # rejects, by ``examine``); stat never follows a link.
                for entry in entries:
                    real = entry.name
                    name = stored_name(real)
                    scanned += 1
                    unseen.discard(name)
                    indexed = known.get(name)
                    if indexed is None and stable_before_ns is None:
                        todo.append(real)
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if indexed == (st.st_size, st.st_mtime_ns) and name not in again:
                        continue
                    if stable_before_ns is not None and st.st_mtime_ns > stable_before_ns:
                        unstable += 1
                        continue
                    todo.append(real)
        if known and not scanned:
            # An unmounted (or wrongly configured) folder is not "every file removed": nothing
            # in the index is touched, and whatever runs on it stops here.
            raise LandingFolderUnavailable(
                empresa,
                folder,
                (
                    f"the landing index lists {len(known)} files from it (if they were removed on purpose, delete "
                    f"{self.path}: it is rebuilt from the folders)"
                ),
            )
        # In name order: each batch then covers one range of names, so its writes touch few
        # pages of the key and link indexes (a commit writes every page its rows touched).
        todo.sort()
        previous = {key: Previous(*known[key], again.get(key)) for key in map(stored_name, todo) if key in known}
        now = dt.datetime.now(dt.UTC).isoformat()
        found: list[pl.DataFrame] = []
        self.frames.forget(empresa)
        frames: list[pl.DataFrame] = []
        cached = 0.0  # estimated bytes of ``frames``
        writes = 0  # transactions of this refresh (a batch that indexed files writes once)
        complete = not known  # every record file of the empresa is in ``frames`` (so far)
        files_opened = 0
        for opened, found_files, frame in index_many(os.fspath(self.path), folder, empresa, todo, previous, today, now):
            files_opened += opened
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
        writes += bool(removed)
        now_generation = self.store.remove(empresa, removed)
        if frames:  # complete, and nobody else wrote: the frames are the whole index
            self.frames.keep(
                empresa, frames, now_generation if complete and now_generation == generation + writes else None
            )
        return RefreshResult(scanned, self.store, empresa, found, len(removed), files_opened, unstable)

    def _examine(self, empresa: str, name: str, today: dt.date) -> RecordItem | None:
        """``examine_file`` in the empresa's folder (a partition frame's file without a stored outcome)."""
        return examine_file(self.folder(empresa), empresa, name, today)

    def partition_frame(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame:
        """Every record file of one partition, decoded and validated, with its linked files and
        the winners marked: what ``pqr_records`` materializes. Reads no file the index has
        already evaluated (call ``refresh`` first)."""
        return self.frames.frame(empresa, day, today)

    def record_files(self, empresa: str, day: dt.date) -> list[IndexedFile]:
        """The record (JSON) files routed to a partition."""
        return self.store.record_files(empresa, day)

    def linked_files(
        self, empresa: str, records: Iterable[IndexedFile], refs: dict[str, list[str]] | None = None
    ) -> dict[str, list[IndexedFile]]:
        """Record file name -> its PDF and attachments (same ``{sgc}_{ts}``, or named by the record).

        ``refs``: the file names each record names (documento_prueba, adjuntar_archivo), when the
        caller has them; else they are read from the index."""
        return linked_files(self.store, empresa, records, refs)

    def records_naming(self, empresa: str) -> dict[str, list[IndexedFile]]:
        """File name -> the record files of any day whose documento_prueba / adjuntar_archivo
        name it (a portal-named ``<uuid>.<ext>`` attachment may be named by several versions).
        Reads every record's refs of the empresa: for the weekly cleanup, not per partition."""
        return self.store.records_naming(empresa)

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
            frame = finish_frame(empresa, day, self.frames.stored_base(empresa, day, today), None)
            out.update(frame.filter(pl.col("is_winner"))["hash_registro"].to_list())
        return out


def partition_frame(index: LandingIndex, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame:
    """``index.partition_frame``: one partition's frame (call ``index.refresh`` first)."""
    return index.partition_frame(empresa, day, today)
