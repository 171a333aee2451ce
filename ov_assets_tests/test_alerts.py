"""Run-failure alerts against a local HTTP receiver (Slack webhook) and a local SMTP server
(aiosmtpd): job, run id, partition, step and error class, never personal data."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header

import dagster as dg
import pytest

from ov_assets.defs.automation.alerts import AlertSettings, build_alert, deliver, run_failure_alerts
from ov_assets.defs.automation.run_tags import partition_tags
from ov_assets.devkit.servers import free_port
from ov_assets.errors import OperatorError, StoreAccessError

PERSONAL = "María José Pérez Ñáñez 1045678912 mjperez@example.com"
PARTITION = "2025-10-08|afinia"
parts = dg.MultiPartitionsDefinition(
    {
        "date": dg.StaticPartitionsDefinition(["2025-10-08"]),
        "empresa": dg.StaticPartitionsDefinition(["afinia", "aire"]),
    }
)

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook, smtp_server


@dg.asset(partitions_def=parts)
def leaky() -> None:
    raise ValueError(f"bad value {PERSONAL}")  # a library error quoting a record's values


@dg.asset(partitions_def=parts)
def operator_problem() -> None:
    raise OperatorError("PostgreSQL host:5432/ov: cannot connect. Check POSTGRES_HOST and POSTGRES_PORT.")


def failed_context(
    asset: dg.AssetsDefinition, instance: dg.DagsterInstance, tags: dict[str, str] | None = None
) -> dg.RunFailureSensorContext:
    job = dg.Definitions(
        assets=[asset], jobs=[dg.define_asset_job("pqr_landing_job", partitions_def=parts)]
    ).resolve_job_def("pqr_landing_job")
    result = job.execute_in_process(partition_key=PARTITION, instance=instance, raise_on_error=False, tags=tags)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_event=failure, dagster_instance=instance, dagster_run=run
    ).for_run_failure()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def test_slack_and_email_alert_without_personal_data(instance, webhook, smtp_server, monkeypatch) -> None:
    url, receiver = webhook
    port, box = smtp_server
    monkeypatch.setenv("OV_SLACK_WEBHOOK_URL", url)
    monkeypatch.setenv("OV_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OV_SMTP_PORT", str(port))
    monkeypatch.setenv("OV_ALERT_FROM", "ov-assets@example.org")
    monkeypatch.setenv("OV_ALERT_TO", "ops@example.org, data@example.org")
    context = failed_context(leaky, instance, tags=partition_tags(PARTITION, "reextraction"))
    run_failure_alerts(context)

    [post] = receiver.received
    assert post["path"] == "/services/T000/B000/XXXX"
    text = post["json"]["text"]
    run_id = context.dagster_run.run_id
    assert "pqr_landing_job" in text and run_id in text and PARTITION in text
    assert "step leaky: ValueError" in text
    assert "asked for by: reextraction" in text  # the run's ov/mode tag
    for value in PERSONAL.split():
        assert value not in text

    [(sender, rcpts, raw)] = box.messages
    assert sender == "ov-assets@example.org" and rcpts == ["ops@example.org", "data@example.org"]
    mail = message_from_bytes(raw)
    assert mail["Subject"] == f"[ov-assets] run failed: pqr_landing_job [{PARTITION}]"
    body = mail.get_payload(decode=True).decode()
    assert run_id in body and "ValueError" in body
    # (searched as read, decoded: the raw message may carry the body quoted-printable or base64
    # and non-ASCII headers as encoded words, where "María" is not "María")
    headers = "\n".join(str(make_header(decode_header(v))) for v in mail.values())
    for value in PERSONAL.split():
        assert value not in body and value not in headers


@dg.asset(partitions_def=parts)
def bucket_problem() -> None:
    raise StoreAccessError("AWS S3: bucket 'ov-x' does not exist. Check AWS_S3_BUCKET_NAME.")


def test_operator_errors_keep_their_message(instance, webhook, monkeypatch) -> None:
    url, receiver = webhook
    monkeypatch.setenv("OV_SLACK_WEBHOOK_URL", url)
    run_failure_alerts(failed_context(operator_problem, instance))
    text = receiver.received[0]["json"]["text"]
    assert "step operator_problem: OperatorError: PostgreSQL host:5432/ov: cannot connect." in text
    # and so do its subclasses' (the bucket, the credentials, the portal's login, ...)
    run_failure_alerts(failed_context(bucket_problem, instance))
    text = receiver.received[1]["json"]["text"]
    assert "step bucket_problem: StoreAccessError: AWS S3: bucket 'ov-x' does not exist." in text


def test_nothing_configured_sends_nothing(instance, webhook, monkeypatch) -> None:
    _, receiver = webhook
    for name in ("OV_SLACK_WEBHOOK_URL", "OV_SMTP_HOST", "OV_ALERT_TO"):
        monkeypatch.delenv(name, raising=False)
    run_failure_alerts(failed_context(leaky, instance))
    assert receiver.received == []


def test_delivery_failure_is_reported_without_the_url(instance, webhook) -> None:
    url, receiver = webhook
    receiver.status = 500
    alert = build_alert(failed_context(leaky, instance))
    assert "asked for by: no schedule or sensor" in alert.text()  # no ov/mode tag: launched by hand
    failed = deliver(alert, AlertSettings(slack_webhook_url=url))
    assert failed == ["slack (HTTPError)"]
    dead = deliver(
        alert, AlertSettings(smtp_host="127.0.0.1", smtp_port=free_port(), alert_to=("a@example.org",), timeout_s=2)
    )
    assert dead == ["email (ConnectionRefusedError)"]


def test_alert_sensor_is_in_the_definitions_and_on_by_default() -> None:
    from ov_assets.definitions import defs

    sensor = defs.get_sensor_def("run_failure_alerts")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
