"""Planning a history load (``ov-assets backfill``): which partitions, in which order, which are
already finished, and the progress figures printed after each one.

Pure (no Dagster, no I/O) so that the rules a resumed load depends on are tested on their own:
newest day first (the days analysts ask about first are loaded first), a partition finished by
this load or proven loaded by its materializations is never repeated, and the rate and the
estimate come from the partitions actually run, not from the skipped ones.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ov_assets.core.contract import BOGOTA, EMPRESAS, FIRST_DAY

# A range longer than this is a history load: a backup of data_general is taken first
# (issue 16 §4) unless the operator says --no-backup.
BACKUP_OVER_DAYS = 7
# Days of one empresa per run of a files-only load (``--days-per-run``): a run's fixed cost is
# paid once for them. A load from the portal runs one day per run (hours each, and a failed run
# is run again day by day: re-extracting days that had succeeded is what the portal pays for).
FILES_DAYS_PER_RUN = 14


@dataclass(frozen=True, order=True)
class Partition:
    """One (day, empresa) partition; ``key`` is Dagster's ``date|empresa``."""

    day: dt.date
    empresa: str

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}|{self.empresa}"


def check_range(first: dt.date, last: dt.date, today: dt.date) -> None:
    """Refuse a range the partitions do not have, saying which bound is wrong."""
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    if first < FIRST_DAY:
        raise ValueError(f"--from {first} is before the first partition, {FIRST_DAY}")
    if last > today:
        raise ValueError(f"--to {last} is after today ({today}, Bogotá)")


def ordered_partitions(first: dt.date, last: dt.date, empresas: Sequence[str] = EMPRESAS) -> list[Partition]:
    """Every partition of the range, newest day first; within a day, empresas in the order given
    (one portal per run, so the two portals' politeness limits never add up in one run)."""
    days = (last - first).days + 1
    return [Partition(last - dt.timedelta(days=i), e) for i in range(days) for e in empresas]


def backfill_id(
    first: dt.date, last: dt.date, empresas: Sequence[str], files_only: bool, tables_only: bool = False
) -> str:
    """The load's name (the ``ov/backfill`` run tag): the same command gives the same id, so
    running it again resumes it (a tables-only load is another load: its finished days still
    need their objects). Short enough for a Dagster tag value."""
    suffix = ("-files" if files_only else "") + ("-tables" if tables_only else "")
    return f"{first:%Y%m%d}-{last:%Y%m%d}-{'+'.join(empresas)}{suffix}"


@dataclass(frozen=True)
class Materialized:
    """The latest materialization of one asset for one partition, as the instance holds it."""

    at: float  # epoch seconds
    metadata: Mapping[str, object] = field(default_factory=dict)


def end_of_day(day: dt.date) -> float:
    """The epoch second at which ``day`` ended in Bogotá (the partitions' timezone)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BOGOTA).timestamp()


def proven_loaded(
    partition: Partition,
    latest: Mapping[str, Materialized | None],
    assets: Sequence[str],
    newest_file_at: float | None = None,
) -> bool:
    """Whether the assets' latest materializations prove the partition loaded, so that a load
    never repeats it (a day loaded by an earlier range, a schedule, the UI).

    Every asset of ``assets`` (upstream first) has a materialization no older than its upstream's.
    When ``raw_pqr_files`` is among them, its latest one extracted from the portal (a successful
    extraction is a complete one: the asset fails when the list was not walked to the end or a
    PQR could not be read) after the day had ended, so no PQR of the day can be missing. Without
    it (files only), the first asset was materialized after the newest landing file of the
    partition (``newest_file_at``) appeared.
    """
    chain = [latest.get(a) for a in assets]
    if not chain or any(m is None for m in chain):
        return False
    times = [m.at for m in chain if m is not None]
    if any(later < earlier for earlier, later in itertools.pairwise(times)):
        return False
    first = chain[0]
    assert first is not None
    if assets[0] == "raw_pqr_files":
        return first.metadata.get("extraction") == "portal" and first.at >= end_of_day(partition.day)
    return newest_file_at is None or first.at >= newest_file_at


@dataclass
class Plan:
    """The partitions of a load in order, and those already finished (not run again)."""

    partitions: list[Partition]
    finished: set[str]

    @property
    def todo(self) -> list[Partition]:
        return [p for p in self.partitions if p.key not in self.finished]

    @property
    def skipped(self) -> int:
        return sum(1 for p in self.partitions if p.key in self.finished)

    @property
    def days(self) -> int:
        return len({p.day for p in self.partitions})


def runs_of(todo: Sequence[Partition], days_per_run: int) -> list[list[Partition]]:
    """The partitions to run grouped into runs of one empresa's consecutive days (a Dagster
    partition range: every day between its ends), at most ``days_per_run`` each, in the order of
    ``todo`` (newest day first). A finished day in between splits a range, as does the other
    empresa never: its partitions form their own runs."""
    if days_per_run < 1:
        raise ValueError(f"days per run must be at least 1, not {days_per_run}")
    runs: list[list[Partition]] = []
    open_runs: dict[str, list[Partition]] = {}
    for p in todo:
        run = open_runs.get(p.empresa)
        if run and len(run) < days_per_run and run[-1].day - dt.timedelta(days=1) == p.day:
            run.append(p)
            continue
        open_runs[p.empresa] = [p]
        runs.append(open_runs[p.empresa])
    return runs


def make_plan(partitions: Iterable[Partition], finished: Iterable[str]) -> Plan:
    parts = list(partitions)
    keys = {p.key for p in parts}
    return Plan(parts, {k for k in finished if k in keys})


def duration(seconds: float | None) -> str:
    """``2h05m``, ``3m07s``, ``12s``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class Progress:
    """Figures of a load since this command started: partitions run, records, rate, estimate.

    ``total`` counts every partition of the plan, ``skipped`` those finished before; the rate and
    the estimate use only the partitions run by this command (a skipped one costs nothing)."""

    total: int
    skipped: int
    started: float  # monotonic seconds
    ran: int = 0
    records: int = 0
    failed: list[str] = field(default_factory=list)

    def add(self, key: str, ok: bool, records: int) -> None:
        self.ran += 1
        self.records += records
        if not ok:
            self.failed.append(key)

    @property
    def done(self) -> int:
        return self.skipped + self.ran

    def records_per_min(self, now: float) -> float:
        elapsed = now - self.started
        return self.records * 60.0 / elapsed if elapsed > 0 else 0.0

    def seconds_left(self, now: float) -> float | None:
        """Partitions left times the mean time of a partition run so far."""
        left = self.total - self.done
        if left == 0:
            return 0.0
        if self.ran == 0:
            return None
        return left * (now - self.started) / self.ran

    def figures(self, now: float) -> dict[str, str]:
        """The figures, as strings (printed, and added to the run as tags)."""
        return {
            "done": f"{self.done}/{self.total}",
            "records": str(self.records),
            "records_per_min": f"{self.records_per_min(now):.1f}",
            "eta": duration(self.seconds_left(now)),
        }

    def line(self, key: str, ok: bool, records: int, now: float, position: int | None = None) -> str:
        """The progress line of partition ``key``, the ``position``-th of the plan (by default
        the last one done); the figures are the load's so far."""
        f = self.figures(now)
        done = f["done"] if position is None else f"{position}/{self.total}"
        return (
            f"[{done}] {key} {'ok' if ok else 'FAILED'}: {records} records; "
            f"{f['records']} loaded, {f['records_per_min']} records/min, "
            f"elapsed {duration(now - self.started)}, about {f['eta']} left"
        )


def politeness_hours(pqrs: int, per_min: float) -> float:
    """Hours the portal part of a history of ``pqrs`` PQRs takes at ``per_min`` details per
    minute (the limit every run of a portal shares): the floor of a history load's duration."""
    return pqrs / per_min / 60.0 if per_min > 0 else 0.0
