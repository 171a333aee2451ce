"""Check-failure alerts (issue 17, acceptance 1 and 3): real check evaluations in a Dagster
instance, the ``check_failure_alerts`` sensor evaluated on them, a stand-in Slack (HTTP) and a
real SMTP server receiving. A failing check alerts once, again not until the next Bogotá day,
"recovered" after it passes; no personal value is sent (the check's text metadata holds some)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import time_machine

from ov_assets.core.contract import BOGOTA
from ov_assets.defs.automation.check_alerts import check_failure_alerts
from ov_assets_tests.alert_servers import configure_channels

PERSONAL = "María José Pérez Ñáñez 1045678912 mjperez@example.com"
PARTITION = "2025-10-08|afinia"
parts = dg.MultiPartitionsDefinition(
    {
        "date": dg.StaticPartitionsDefinition(["2025-10-08"]),
        "empresa": dg.StaticPartitionsDefinition(["afinia", "aire"]),
    }
)
OUTCOME = {"passed": False, "severity": dg.AssetCheckSeverity.ERROR}

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook, smtp_server


@dg.asset(partitions_def=parts, check_specs=[dg.AssetCheckSpec("rows_match", asset="watched")])
def watched() -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="rows_match",
        passed=OUTCOME["passed"],
        severity=OUTCOME["severity"],
        # numbers are sent; the text (as a careless check might write) never is
        metadata={"missing": 3, "share": 0.25, "sample": PERSONAL, "flag": True},
    )


job = dg.Definitions(assets=[watched], jobs=[dg.define_asset_job("watch_job", partitions_def=parts)]).resolve_job_def(
    "watch_job"
)


def evaluate(
    instance: dg.DagsterInstance,
    passed: bool,
    at: dt.datetime,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    cursor: str | None = None,
) -> str | None:
    """Run the check at ``at`` (Bogotá; event timestamps follow the clock), then one tick of the
    sensor; returns the new cursor."""
    OUTCOME.update(passed=passed, severity=severity)
    with time_machine.travel(at, tick=True):
        result = job.execute_in_process(partition_key=PARTITION, instance=instance, raise_on_error=False)
        assert result.success
        return tick(instance, cursor)


def tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    result = check_failure_alerts(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result.cursor


def start(instance: dg.DagsterInstance) -> str | None:
    """The sensor's first tick, the day before the test's evaluations: it reads from then on."""
    with time_machine.travel(day(7), tick=True):
        return tick(instance, None)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def day(d: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2025, 10, d, hour, 0, tzinfo=BOGOTA)


def assert_no_personal(texts: list[str]) -> None:
    for text in texts:
        for value in PERSONAL.split():
            assert value not in text, value


def test_failing_check_alerts_once_a_day_then_recovers(instance, webhook, smtp_server, monkeypatch) -> None:
    url, receiver = webhook
    port, box = smtp_server
    configure_channels(monkeypatch, url, port)
    cursor = start(instance)

    cursor = evaluate(instance, False, day(8), cursor=cursor)
    [text] = receiver.texts()
    assert text.startswith(f"[ov-assets] check failed (ERROR): rows_match on watched [{PARTITION}]")
    assert "severity: ERROR" in text and "missing: 3" in text and "share: 0.25" in text
    assert "sample" not in text and "flag" not in text
    [(subject, body)] = box.decoded()
    assert subject == f"[ov-assets] check failed (ERROR): rows_match on watched [{PARTITION}]"
    assert "missing: 3" in body

    # Failing again the same day (also a later hour, also a restart of the sensor): nothing.
    cursor = evaluate(instance, False, day(8, 15), cursor=cursor)
    cursor = evaluate(instance, False, day(8, 23), cursor=cursor)
    assert len(receiver.texts()) == 1 and len(box.messages) == 1

    # The next Bogotá day, still failing: one alert again.
    cursor = evaluate(instance, False, day(9, 0), cursor=cursor)
    cursor = evaluate(instance, False, day(9, 11), cursor=cursor)
    assert len(receiver.texts()) == 2 and "check failed (ERROR)" in receiver.texts()[1]

    # It passes: "recovered", once.
    cursor = evaluate(instance, True, day(9, 12), cursor=cursor)
    cursor = evaluate(instance, True, day(9, 13), cursor=cursor)
    assert len(receiver.texts()) == 3
    recovered = receiver.texts()[2]
    assert recovered.startswith(f"[ov-assets] check recovered: rows_match on watched [{PARTITION}]")
    assert "failing since: 2025-10-09" in recovered

    # Failing again after recovering is a new problem: it alerts the same day.
    evaluate(instance, False, day(9, 14), cursor=cursor)
    assert len(receiver.texts()) == 4 and "check failed" in receiver.texts()[3]
    assert len(box.messages) == 4
    assert_no_personal(receiver.texts() + [s + b for s, b in box.decoded()])


def test_warn_alerts_per_setting(instance, webhook, monkeypatch) -> None:
    url, receiver = webhook
    configure_channels(monkeypatch, url, None)
    cursor = start(instance)
    monkeypatch.setenv("OV_ALERT_CHECK_WARNINGS", "0")
    cursor = evaluate(instance, False, day(8), dg.AssetCheckSeverity.WARN, cursor)
    assert receiver.texts() == []
    monkeypatch.delenv("OV_ALERT_CHECK_WARNINGS")  # default: WARN alerts too
    evaluate(instance, False, day(8, 11), dg.AssetCheckSeverity.WARN, cursor)
    [text] = receiver.texts()
    assert text.startswith("[ov-assets] check failed (WARN): rows_match") and "severity: WARN" in text


def test_undelivered_alert_is_sent_on_a_later_tick(instance, webhook, monkeypatch) -> None:
    url, receiver = webhook
    configure_channels(monkeypatch, url, None)
    cursor = start(instance)
    receiver.status = 500  # Slack down: the alert is kept
    cursor = evaluate(instance, False, day(8), cursor=cursor)
    assert len(receiver.received) == 1
    receiver.status = 200
    cursor = tick(instance, cursor)
    assert len(receiver.received) == 2 and "check failed" in receiver.texts()[1]
    tick(instance, cursor)
    assert len(receiver.received) == 2  # and only once


def test_alert_sensors_are_in_the_definitions_and_on_by_default() -> None:
    from ov_assets.definitions import defs

    for name in ("check_failure_alerts", "tick_failure_alerts", "slow_run_alerts", "heartbeat"):
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
