"""Partition frames: every record file of a partition, decoded and validated, with its linked
files and the winners marked (``records.finish_frame``), from outcomes already evaluated.

After a refresh, the per-file frame columns its workers built are kept (up to
``FRESH_CACHE_BYTES``) and the refreshed partitions are finished together from them, up to
about 2 x ``PREPARE_ROWS`` rows at a time (one rows query, one linked-files query, one polars
plan, winners per partition). Other partitions come from the outcomes stored in the index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from ov_assets.landing.examine import bogota_naive, iso_date
from ov_assets.landing.index_store import IndexStore, Outcome, RecordItem, StoredRecord
from ov_assets.landing.linked_files import linked_frame

if TYPE_CHECKING:
    import polars as pl

# Fresh per-file frames kept by a refresh for ``PartitionFrames.frame`` (beyond, the index
# serves them).
FRESH_CACHE_BYTES = 256 * 2**20
# Partitions finished together (rows, about; up to twice as many at once).
PREPARE_ROWS = 50_000

# Reads one record-frame file of an empresa's folder again, as of ``today``: (empresa, name, today).
Examine = Callable[[str, str, dt.date], "RecordItem | None"]


class PartitionFrames:
    """The partition frames of one ``LandingIndex``, and the fresh frames its refreshes keep."""

    def __init__(self, store: IndexStore, examine: Examine) -> None:
        self._store = store
        self._examine = examine
        # Per empresa, the per-file frame columns (``records.base_frame``) of the record files
        # the last refresh evaluated, so that ``frame`` reads nothing back from SQLite.
        self._fresh: dict[str, list[pl.DataFrame]] = {}
        self._fresh_all: dict[str, pl.DataFrame] = {}  # merged, of partitions not finished yet:
        self._fresh_days: dict[str, dict[dt.date, int]] = {}  # and their rows
        self._ready: dict[str, dict[dt.date, pl.DataFrame]] = {}  # finished, handed out once
        # Per empresa, the generation after a refresh whose fresh frames hold every record file
        # the index has for it (it started empty and nobody else wrote): while the generation
        # is still that, finishing its partitions need not compare them with the index.
        self._complete: dict[str, int] = {}

    def forget(self, empresa: str) -> None:
        """Drop what an earlier refresh kept in memory for the empresa."""
        for kept in (self._fresh, self._fresh_all, self._fresh_days, self._ready, self._complete):
            kept.pop(empresa, None)

    def keep(self, empresa: str, frames: list[pl.DataFrame], complete_at: int | None) -> None:
        """Keep a refresh's fresh frames; ``complete_at``: the index generation at which they
        are every record file the index holds for the empresa (None: not known to be)."""
        self._fresh[empresa] = frames
        if complete_at is not None:
            self._complete[empresa] = complete_at

    def is_complete(self, empresa: str) -> bool:
        """Whether the kept frames are known to be the whole index of the empresa."""
        return empresa in self._complete

    def holds(self, empresa: str) -> bool:
        """Whether frames of the empresa are still kept in memory (fresh or finished)."""
        return bool(self._fresh.get(empresa) or self._fresh_all.get(empresa) is not None or self._ready.get(empresa))

    def frame(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame:
        """The finished frame of one partition: prepared from the fresh frames when they hold
        it (handed out once), else from the outcomes stored in the index."""
        from ov_assets.core.records import finish_frame

        prepared = self._prepared(empresa, day, today)
        if prepared is not None:
            return prepared
        base = self.stored_base(empresa, day, today)
        return finish_frame(empresa, day, *linked_frame(self._store, empresa, base))  # (drops the helper columns)

    def stored_base(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame:
        """The per-file columns (``records.base_frame`` + ``_link_key``) of a partition's record
        files, from the outcomes stored in the index."""
        import polars as pl

        from ov_assets.core.records import base_frame

        rows = self._store.partition_records(empresa, [day]) or []
        items, mtimes, links = self._stored(empresa, today, rows)
        return base_frame(
            items,
            mtimes,
            {"_link_key": ([links[it.name] for it in items], pl.String())},
        )

    def _prepared(self, empresa: str, day: dt.date, today: dt.date) -> pl.DataFrame | None:
        """The finished frame of a partition the last refresh evaluated, handed out once (a
        second call for the partition reads the index); None for others.

        Partitions are finished together (the asked one and the next ones by date): one query
        for their index rows, one for their linked files and one polars plan, instead of all
        three per partition; all at once up to 2 x PREPARE_ROWS rows, else in chunks of about
        PREPARE_ROWS (finishing holds every row of a chunk in memory while it runs)."""
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

    def _finish_days(
        self, empresa: str, days: list[dt.date], base: pl.DataFrame, today: dt.date
    ) -> dict[dt.date, pl.DataFrame]:
        """Finished frames (``records.finish_frame``) of these partitions from the fresh per-file
        columns of their files (``base``): files changed or moved by another process since the
        refresh are taken from the index instead, files indexed by others are added from it."""
        import polars as pl

        from ov_assets.core.records import base_frame, empty_frame, finish_frame

        # None: ``base`` is all the index holds for these days, as it is now
        rows = self._store.partition_records(empresa, days, self._complete.get(empresa))
        if rows is not None:
            current = {r.name: (r.mtime_ns, r.partition_date) for r in rows}
            usable = [
                current.get(n) == (m, d)
                for n, m, d in zip(
                    base["file_name"].to_list(),
                    base["_mtime_ns"].to_list(),
                    base["_day"].dt.to_string().to_list(),
                    strict=True,
                )
            ]
            if not all(usable):  # changed or moved by another process since this refresh
                base = base.filter(pl.Series(usable, dtype=pl.Boolean()))
        parts = [base.drop("_mtime_ns")]
        if rows is not None and len(rows) > base.height:  # files this refresh did not evaluate (or not as they are now)
            have = set(base["file_name"].to_list())
            others = [r for r in rows if r.name not in have]
            items, mtimes, links = self._stored(empresa, today, others)
            day_of = {r.name: iso_date(r.partition_date) for r in others if r.partition_date}
            parts.append(
                base_frame(
                    items,
                    mtimes,
                    {
                        "_link_key": ([links[it.name] for it in items], pl.String()),
                        "_day": ([day_of[it.name] for it in items], pl.Date()),
                    },
                )
            )
        base = pl.concat(parts, how="diagonal") if len(parts) > 1 else parts[0]
        out: dict[dt.date, pl.DataFrame] = {}
        if not base.is_empty():
            frame = finish_frame(empresa, None, *linked_frame(self._store, empresa, base))
            # Sorted by partition: each partition is a zero-copy slice (``partition_by`` copies).
            at = 0
            for day, rows_of_day in frame["partition_date"].rle().struct.unnest().select("value", "len").iter_rows():
                out[day] = frame.slice(at, rows_of_day)
                at += rows_of_day
        for d in days:
            if d not in out:  # (every file of the day changed or moved since the refresh)
                out[d] = empty_frame()
        return out

    def _stored(
        self, empresa: str, today: dt.date, rows: list[StoredRecord]
    ) -> tuple[list[RecordItem], dict[str, dt.datetime], dict[str, str | None]]:
        """The ``RecordItem`` of each record file of ``rows``, mtimes and link keys, from the
        outcomes stored in the index; a file is read again only when its stored outcome is
        missing or of other rules."""
        blobs = self._store.outcomes(empresa, [r.name for r in rows]) if rows else {}
        items: list[RecordItem] = []
        mtimes: dict[str, dt.datetime] = {}
        links: dict[str, str | None] = {}
        load = Outcome.load
        for row in rows:
            name = row.name
            outcome = load(blobs.get(name))
            if outcome is None:  # evaluated again, as the refresh would (never written here)
                item = self._examine(empresa, name, today)
                if item is None:
                    continue  # removed since the refresh; the next refresh drops it
            else:
                item = RecordItem(name, row.sha256, row.size, outcome)
            items.append(item)
            if item.outcome.values is not None and item.outcome.extracted is None:  # only then is the mtime used
                mtimes[item.name] = bogota_naive(row.mtime_ns)
            links[item.name] = row.link_key
        return items, mtimes, links
