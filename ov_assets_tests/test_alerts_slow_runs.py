"""Slow-run alerts (issue 17): ``slow_run_alerts`` evaluated on a real Dagster instance whose runs
were queued or started in the past (the clock moved with time-machine while they were stored,
so their create and start times are the storage's own), sending to a stand-in Slack (HTTP).
A run queued past OV_ALERT_QUEUED_MINUTES or started past OV_ALERT_RUNNING_MINUTES alerts once;
fresh runs do not; nothing from the run's config or other tags is sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import time_machine
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from ov_assets.defs.automation.tick_alerts import slow_run_alerts
from ov_assets_tests.alert_servers import configure_channels

PERSONAL = "María José Pérez Ñáñez 1045678912 mjperez@example.com"
PARTITION = "2025-10-08|afinia"
QUEUED_MIN, RUNNING_MIN = 60, 240

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _origin(job: str) -> RemoteJobOrigin:
    """Where a run launched from the project's code location comes from (Dagster requires it of
    a queued run; nothing loads it here)."""
    return RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("ov_assets"), "__repository__"), job)


def _event(kind: dg.DagsterEventType, job: str) -> dg.DagsterEvent:
    return dg.DagsterEvent(event_type_value=kind.value, job_name=job)


def add_run(
    instance: dg.DagsterInstance, at: dt.datetime, job: str, started: bool, partition_tags: dict[str, str] | None = None
) -> str:
    """A run stored at ``at`` (queued), and reported started then when ``started``; its config
    and a tag hold a personal value, as a careless launch could."""
    with time_machine.travel(at, tick=False):
        run = instance.add_run(
            dg.DagsterRun(
                job_name=job,
                status=dg.DagsterRunStatus.QUEUED,
                remote_job_origin=_origin(job),
                run_config={"ops": {"note": PERSONAL}},
                tags={**(partition_tags or {"dagster/partition": PARTITION}), "ov/note": PERSONAL},
            )
        )
        if started:
            instance.report_dagster_event(_event(dg.DagsterEventType.RUN_START, job), run.run_id)
    return run.run_id


def tick(instance: dg.DagsterInstance, cursor: str | None, at: dt.datetime) -> str | None:
    with time_machine.travel(at, tick=False):
        return slow_run_alerts(dg.build_sensor_context(instance=instance, cursor=cursor)).cursor


def test_slow_runs_alert_once_and_fresh_runs_do_not(instance, webhook, monkeypatch) -> None:
    url, receiver = webhook
    configure_channels(monkeypatch, url, None)
    monkeypatch.setenv("OV_ALERT_QUEUED_MINUTES", str(QUEUED_MIN))
    monkeypatch.setenv("OV_ALERT_RUNNING_MINUTES", str(RUNNING_MIN))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ago = lambda minutes: now - dt.timedelta(minutes=minutes)  # noqa: E731

    stuck_queue = add_run(instance, ago(90), "queued_job", started=False)  # queued 90 > 60
    hung = add_run(instance, ago(300), "running_job", started=True)  # running 300 > 240
    add_run(instance, ago(30), "fresh_queued_job", started=False)  # queued 30 < 60
    add_run(instance, ago(120), "fresh_running_job", started=True)  # running 120 < 240 (though > 60)

    cursor = tick(instance, None, now)
    texts = receiver.texts()
    assert len(texts) == 2, texts
    by_job = {t.split("\n")[1]: t for t in texts}
    queued, running = by_job["job: queued_job"], by_job["job: running_job"]
    assert queued.startswith(f"[ov-assets] run queued over {QUEUED_MIN} min: queued_job [{PARTITION}]")
    assert f"run id: {stuck_queue}" in queued and "queued for: 90 min" in queued
    assert running.startswith(f"[ov-assets] run running over {RUNNING_MIN} min: running_job [{PARTITION}]")
    assert f"run id: {hung}" in running and "running for: 300 min" in running

    # Later ticks, the same runs still slow: nothing more (once per run).
    cursor = tick(instance, cursor, now + dt.timedelta(minutes=1))
    cursor = tick(instance, cursor, now + dt.timedelta(minutes=20))
    assert len(receiver.texts()) == 2

    # The queued run starts (fresh as a running run: no alert); the fresh queued run passes its
    # limit (queued 30 + 35 = 65 min): it alerts, alone.
    instance.report_dagster_event(_event(dg.DagsterEventType.RUN_START, "queued_job"), stuck_queue)
    tick(instance, cursor, now + dt.timedelta(minutes=35))
    texts = receiver.texts()
    assert len(texts) == 3, texts
    assert texts[2].startswith(f"[ov-assets] run queued over {QUEUED_MIN} min: fresh_queued_job [{PARTITION}]")

    for text in receiver.texts():
        for value in PERSONAL.split():
            assert value not in text, value


def test_a_slow_range_run_names_its_range(instance, webhook, monkeypatch) -> None:
    """A history load's range run (``ov-assets backfill --files-only``) carries range tags, not
    one partition: the alert names the range."""
    url, receiver = webhook
    configure_channels(monkeypatch, url, None)
    monkeypatch.setenv("OV_ALERT_RUNNING_MINUTES", str(RUNNING_MIN))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = "2025-10-01|afinia", "2025-10-14|afinia"
    tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
    add_run(instance, now - dt.timedelta(minutes=300), "pqr_landing_job", started=True, partition_tags=tags)
    tick(instance, None, now)
    (text,) = receiver.texts()
    assert text.startswith(f"[ov-assets] run running over {RUNNING_MIN} min: pqr_landing_job [{start}...{end}]")
