"""A history load in one process, without the daemon (issue 16 §3, issue 20): runs of
``pqr_pipeline_job`` (or ``pqr_landing_job`` for files already in the landing folder; their
``*_tables_job`` without the objects) executed in this process, one after the other, recorded
in the Dagster instance with the ``ov/backfill`` tag so the UI lists them.

A run covers one partition, or a range of one empresa's consecutive days (``--days-per-run``):
a range pays a run's fixed cost (run start, the landing folder's listing, the checks) once for
its days, and loads them in one transaction. Why not Dagster's own backfills: they need the
daemon, and their range runs let one bad day hold up its range. Here a range that fails is run
again one partition at a time, so a bad day fails alone and the others load; the definitions
are imported once for every run.

What a resumed load skips, what order it goes in and the figures it prints are decided in
``ov_assets.core.history_plan``; this module reads the instance and runs the jobs. Politeness is
the scraper's (one shared limit per portal in PostgreSQL): nothing here touches a portal.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import dagster as dg

from ov_assets.core.contract import today_bogota
from ov_assets.core.history_plan import (
    Materialized,
    Partition,
    Plan,
    Progress,
    proven_loaded,
    runs_of,
)
from ov_assets.defs.automation.run_tags import RANGE_END_TAG, RANGE_START_TAG, partition_tags, range_tags
from ov_assets.defs.partitions import pqr_partitions
from ov_assets.errors import OperatorError

BACKFILL_TAG = "ov/backfill"
PROGRESS_TAGS = {
    "done": "ov/backfill-done",
    "records": "ov/backfill-records",
    "records_per_min": "ov/backfill-records-per-min",
    "eta": "ov/backfill-eta",
}
PIPELINE_ASSETS = ("raw_pqr_files", "pqr_records", "pqr_table", "pqr_s3_objects")
LANDING_ASSETS = PIPELINE_ASSETS[1:]
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def job_name(files_only: bool, tables_only: bool = False) -> str:
    """Files only: everything downstream of the landing folder (no portal, no browser). Tables
    only: without ``pqr_s3_objects`` (the rows first; the objects in a later load)."""
    name = "pqr_landing_job" if files_only else "pqr_pipeline_job"
    return name.replace("_job", "_tables_job") if tables_only else name


def assets_of(files_only: bool, tables_only: bool = False) -> Sequence[str]:
    assets = LANDING_ASSETS if files_only else PIPELINE_ASSETS
    return assets[:-1] if tables_only else assets


def run_keys(tags: Mapping[str, str]) -> list[str]:
    """The partitions a run of a load covers: its partition, or every one of its range."""
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not (start and end):
        return []
    return [str(k) for k in pqr_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))]


class BackfillBusy(OperatorError):
    """The same load is already running in another process."""


@contextmanager
def exclusive(dagster_home: Path, backfill: str) -> Iterator[None]:
    """One process per load: its runs left unfinished can then be told from running ones."""
    folder = dagster_home / "ov-backfill"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{backfill}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackfillBusy(
                f"the load {backfill} is already running in another process (lock {folder / backfill}.lock): "
                "wait for it, or stop it (Ctrl-C) before starting it again"
            ) from None
        yield
    finally:
        os.close(fd)  # (releases the lock)


def fail_abandoned_runs(instance: dg.DagsterInstance, backfill: str) -> list[str]:
    """Runs of this load left unfinished by a process that was killed: marked failed (the UI
    would show them running forever); their partitions run again. Call under ``exclusive``."""
    keys = []
    for record in instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill}, statuses=_UNFINISHED)):
        run = record.dagster_run
        instance.report_run_failed(
            run, "the ov-assets backfill process running it ended before the run did; the load reruns its partitions"
        )
        covered = run_keys(run.tags)
        keys.append(f"{covered[0]}..{covered[-1]}" if len(covered) > 1 else (covered or ["?"])[0])
    return keys


def load_started(instance: dg.DagsterInstance, backfill: str) -> bool:
    """Whether this load already ran a partition (then it is being resumed)."""
    return bool(instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill}), limit=1))


def succeeded_in_load(instance: dg.DagsterInstance, backfill: str) -> set[str]:
    """Partitions whose run of this load succeeded."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={BACKFILL_TAG: backfill}, statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    return {key for r in records for key in run_keys(r.dagster_run.tags)}


def latest_materializations(
    instance: dg.DagsterInstance, assets: Sequence[str], keys: Sequence[str], chunk: int = 400
) -> dict[str, dict[str, Materialized]]:
    """partition key -> asset -> its latest materialization (newest first, one pass per asset)."""
    out: dict[str, dict[str, Materialized]] = {k: {} for k in keys}
    for asset in assets:
        for i in range(0, len(keys), chunk):
            cursor = None
            while True:
                page = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=list(keys[i : i + chunk])),
                    limit=1000,
                    cursor=cursor,
                )
                for rec in page.records:
                    mat = rec.asset_materialization
                    if rec.partition_key is None or mat is None or asset in out[rec.partition_key]:
                        continue
                    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                    out[rec.partition_key][asset] = Materialized(rec.timestamp, meta)
                if not page.has_more:
                    break
                cursor = page.cursor
    return out


def newest_landing_files(data_dir: Path, partitions: Sequence[Partition]) -> dict[str, float]:
    """partition key -> mtime of its newest record file in the landing folder (files-only loads
    repeat a partition whose files are newer than its load)."""
    from ov_assets.landing.index import LandingIndex

    index = LandingIndex(data_dir)
    today = today_bogota()
    out: dict[str, float] = {}
    for empresa in sorted({p.empresa for p in partitions}):
        index.refresh(empresa, today)
    for p in partitions:
        files = index.record_files(p.empresa, p.day)
        if files:
            out[p.key] = max(f.mtime_ns for f in files) / 1e9
    return out


def finished_partitions(
    instance: dg.DagsterInstance,
    backfill: str,
    partitions: Sequence[Partition],
    files_only: bool,
    data_dir: Path,
    tables_only: bool = False,
) -> set[str]:
    """Partitions a resumed load does not run again: finished by this load, or proven loaded
    by their latest materializations (``history_plan.proven_loaded``)."""
    done = succeeded_in_load(instance, backfill)
    rest = [p for p in partitions if p.key not in done]
    if not rest:
        return done
    assets = assets_of(files_only, tables_only)
    latest = latest_materializations(instance, assets, [p.key for p in rest])
    # Only a partition with every asset materialized can be proven loaded: the landing folder
    # is listed for those alone (a first load lists it in its first run, not twice).
    candidates = [p for p in rest if all(a in latest[p.key] for a in assets)]
    newest = newest_landing_files(data_dir, candidates) if files_only and candidates else {}
    return done | {p.key for p in candidates if proven_loaded(p, latest[p.key], assets, newest.get(p.key))}


@dataclass
class PartitionRun:
    """One run of a load: its partitions, whether it succeeded, the records (record files read)
    of each partition, and the step that failed (a name, nothing the run's data holds)."""

    keys: list[str]
    ok: bool
    run_id: str
    records: dict[str, int]
    failed_step: str = ""


def _records(result: dg.ExecuteInProcessResult, keys: Sequence[str]) -> dict[str, int]:
    """Records per partition from ``pqr_records``' materializations: a range run's carry the
    range's figures, and its per-partition counts as ``partition_records``."""
    out = dict.fromkeys(keys, 0)
    for mat in result.asset_materializations_for_node("pqr_records"):
        per_partition = mat.metadata.get("partition_records")
        if per_partition is not None:
            counts: dict[str, int] = getattr(per_partition, "value", None) or {}
            out |= {k: int(v) for k, v in counts.items() if k in out}
        elif mat.partition in out:
            value = mat.metadata.get("dagster/row_count")
            out[mat.partition] = int(getattr(value, "value", 0) or 0)
    return out


def run_partitions(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    keys: Sequence[str],
    tags: Mapping[str, str],
    resources: Mapping[str, object] | None = None,
) -> PartitionRun:
    """``job`` for one partition, or one empresa's consecutive days ``keys`` (newest first) as a
    range, in this process, recorded in ``instance``; a failure is a result, never an exception
    (the next run starts)."""
    result = job.execute_in_process(
        partition_key=keys[0] if len(keys) == 1 else None,
        instance=instance,
        raise_on_error=False,
        resources=resources,
        tags=dict(tags),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    failed = [e.step_key or "" for e in result.all_events if e.is_step_failure]
    return PartitionRun(list(keys), result.success, result.run_id, _records(result, keys), ", ".join(failed))


class Interrupted(Exception):
    """The operator asked to stop (Ctrl-C); what ran is kept, the load resumes where it was."""


@contextmanager
def stop_on_interrupt(say: Callable[[str], None], resume_hint: str) -> Iterator[threading.Event]:
    """The first Ctrl-C lets the run in progress finish and stops after it; a second one stops
    at once (that run's partitions run again when the load resumes)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise Interrupted()
        stop.set()
        say(f"stopping after the run in progress (Ctrl-C again to stop now). {resume_hint}")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _in_thread(fn: Callable[[], PartitionRun]) -> PartitionRun:
    """Run ``fn`` in a worker thread, the main thread waiting: Ctrl-C reaches our handler (Dagster
    would take SIGINT for itself in the main thread and end the run half way)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["run"] = fn()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread, whatever it is)
            box["error"] = exc

    worker = threading.Thread(target=target, name="ov-backfill-run", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if "error" in box:
        raise box["error"]
    run: PartitionRun = box["run"]
    return run


def _tags(run: Sequence[Partition], mode: str) -> dict[str, str]:
    """A run's partition tags: one partition, or the range from its oldest day to its newest."""
    if len(run) == 1:
        return partition_tags(run[0].key, mode)
    return range_tags(run[-1].key, run[0].key, mode)


def load(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    plan: Plan,
    backfill: str,
    mode: str,
    say: Callable[[str], None],
    stop: threading.Event,
    resources: Mapping[str, object] | None = None,
    days_per_run: int = 1,
) -> Progress:
    """Run the plan's partitions not finished yet, in order, ``days_per_run`` consecutive days of
    an empresa per run; one progress line per partition after its run, the figures also added to
    the run as tags. A range run that fails is run again one partition at a time (the loads are
    idempotent: what the failed run wrote is found unchanged). Stops before the next run once
    ``stop`` is set."""
    progress = Progress(total=len(plan.partitions), skipped=plan.skipped, started=time.monotonic())
    pending = runs_of(plan.todo, days_per_run)
    while pending and not stop.is_set():
        parts = pending.pop(0)
        keys = [p.key for p in parts]
        tags = {
            BACKFILL_TAG: backfill,
            **_tags(parts, mode),
            "ov/backfill-position": f"{progress.done + 1}-{progress.done + len(keys)}/{len(plan.partitions)}",
            # the load retries its own failed days (run it again); not the daemon's run_retries
            "dagster/max_retries": "0",
        }
        if len(keys) > 1:
            say(f"run of {keys[-1]}..{keys[0]} ({len(keys)} partitions) started")
        run = _in_thread(lambda k=keys, t=tags: run_partitions(job, instance, k, t, resources))  # type: ignore[misc]
        if not run.ok and len(keys) > 1:
            say(
                f"the run of {keys[-1]}..{keys[0]} failed (step {run.failed_step or 'run'}; run {run.run_id}): "
                "its partitions run again one at a time"
            )
            pending[:0] = [[p] for p in parts]
            continue
        first = progress.done + 1
        for key in keys:
            progress.add(key, run.ok, run.records[key])
        now = time.monotonic()
        for position, key in enumerate(keys, start=first):
            line = progress.line(key, run.ok, run.records[key], now, position)
            if not run.ok:
                line += f" (failed step: {run.failed_step or 'run'}; run {run.run_id})"
            say(line)
        instance.add_run_tags(run.run_id, {PROGRESS_TAGS[k]: v for k, v in progress.figures(now).items()})
    return progress
