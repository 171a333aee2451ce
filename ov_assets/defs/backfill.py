"""A history load in one process, without the daemon (issue 16 §3, issue 20): each partition's
run of ``pqr_pipeline_job`` (or ``pqr_landing_job`` for files already in the landing folder)
executed in this process, one after the other, recorded in the Dagster instance with the
``ov/backfill`` tag so the UI lists them.

Why not Dagster's own backfills: they need the daemon, and range runs
(``BackfillPolicy.multi_run``) let one bad day hold up its chunk. Here a day that fails is
reported and the next one runs; the definitions are imported once for every run.

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
from ov_assets.core.history_plan import Materialized, Partition, Plan, Progress, proven_loaded
from ov_assets.defs.automation.run_tags import partition_tags
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


def job_name(files_only: bool) -> str:
    """Files only: everything downstream of the landing folder (no portal, no browser)."""
    return "pqr_landing_job" if files_only else "pqr_pipeline_job"


def assets_of(files_only: bool) -> Sequence[str]:
    return LANDING_ASSETS if files_only else PIPELINE_ASSETS


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
            run, "the ov-assets backfill process running it ended before the run did; the load reruns the partition"
        )
        keys.append(run.tags.get("dagster/partition", "?"))
    return keys


def load_started(instance: dg.DagsterInstance, backfill: str) -> bool:
    """Whether this load already ran a partition (then it is being resumed)."""
    return bool(instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill}), limit=1))


def succeeded_in_load(instance: dg.DagsterInstance, backfill: str) -> set[str]:
    """Partitions whose run of this load succeeded."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={BACKFILL_TAG: backfill}, statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    return {r.dagster_run.tags["dagster/partition"] for r in records if "dagster/partition" in r.dagster_run.tags}


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
) -> set[str]:
    """Partitions a resumed load does not run again: finished by this load, or proven loaded
    by their latest materializations (``history_plan.proven_loaded``)."""
    done = succeeded_in_load(instance, backfill)
    rest = [p for p in partitions if p.key not in done]
    if not rest:
        return done
    assets = assets_of(files_only)
    latest = latest_materializations(instance, assets, [p.key for p in rest])
    newest = newest_landing_files(data_dir, rest) if files_only else {}
    return done | {p.key for p in rest if proven_loaded(p, latest[p.key], assets, newest.get(p.key))}


@dataclass
class PartitionRun:
    """One partition's run: whether it succeeded, its records (record files read), and the
    step that failed (a name, nothing the run's data holds)."""

    key: str
    ok: bool
    run_id: str
    records: int
    failed_step: str = ""


def run_partition(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    key: str,
    tags: Mapping[str, str],
    resources: Mapping[str, object] | None = None,
) -> PartitionRun:
    """``job`` for one partition in this process, recorded in ``instance``; a failure is a
    result, never an exception (the next partition runs)."""
    result = job.execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        resources=resources,
        tags=dict(tags),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    records = 0
    for mat in result.asset_materializations_for_node("pqr_records"):
        value = mat.metadata.get("dagster/row_count")
        records += int(getattr(value, "value", 0) or 0)
    failed = [e.step_key or "" for e in result.all_events if e.is_step_failure]
    return PartitionRun(key, result.success, result.run_id, records, ", ".join(failed))


class Interrupted(Exception):
    """The operator asked to stop (Ctrl-C); what ran is kept, the load resumes where it was."""


@contextmanager
def stop_on_interrupt(say: Callable[[str], None], resume_hint: str) -> Iterator[threading.Event]:
    """The first Ctrl-C lets the partition in progress finish and stops after it; a second
    one stops at once (that partition runs again when the load resumes)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise Interrupted()
        stop.set()
        say(f"stopping after the partition in progress (Ctrl-C again to stop now). {resume_hint}")

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


def load(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    plan: Plan,
    backfill: str,
    mode: str,
    say: Callable[[str], None],
    stop: threading.Event,
    resources: Mapping[str, object] | None = None,
) -> Progress:
    """Run the plan's partitions not finished yet, in order; one progress line after each, its
    figures also added to the run as tags. Stops before the next partition once ``stop`` is set."""
    todo = plan.todo
    progress = Progress(total=len(plan.partitions), skipped=plan.skipped, started=time.monotonic())
    for i, part in enumerate(todo, start=1):
        if stop.is_set():
            break
        tags = {
            BACKFILL_TAG: backfill,
            **partition_tags(part.key, mode),
            "ov/backfill-position": f"{plan.skipped + i}/{len(plan.partitions)}",
            # the load retries its own failed days (run it again); not the daemon's run_retries
            "dagster/max_retries": "0",
        }
        run = _in_thread(lambda p=part, t=tags: run_partition(job, instance, p.key, t, resources))  # type: ignore[misc]
        progress.add(part.key, run.ok, run.records)
        now = time.monotonic()
        line = progress.line(part.key, run.ok, run.records, now)
        if not run.ok:
            line += f" (failed step: {run.failed_step or 'run'}; run {run.run_id})"
        say(line)
        instance.add_run_tags(run.run_id, {PROGRESS_TAGS[k]: v for k, v in progress.figures(now).items()})
    return progress
