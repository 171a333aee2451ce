"""Run-failure alerts, and the delivery every other alert shares, to a Slack webhook and/or e-mail (CONTRACT §8: ``OV_SLACK_WEBHOOK_URL``;
``OV_SMTP_HOST``, ``OV_SMTP_PORT``, ``OV_SMTP_USER``, ``OV_SMTP_PASSWORD``, ``OV_ALERT_FROM``,
``OV_ALERT_TO``). Nothing configured: no alerts (the sensor logs that it has nowhere to send).

A message names the job, the run id, the partition, the failed steps and the class of each
error, never personal data: exception messages may quote values from a record, so only the
messages of our own ``OperatorError``s (written for operators, checked to hold no values) and
of ``dg.Failure``s raised by our assets are included, cut to ``MAX_DETAIL`` characters.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import dagster as dg

from ov_assets import settings
from ov_assets.defs.automation.run_tags import MODE_TAG, RANGE_END_TAG, RANGE_START_TAG
from ov_assets.errors import OperatorError

MAX_DETAIL = 300
# Dagster's wrappers around the user's exception: the cause is the interesting class.
_WRAPPERS = frozenset(
    {
        "DagsterExecutionStepExecutionError",
        "DagsterUserCodeExecutionError",
        "DagsterExecutionHandleOutputError",
        "DagsterExecutionLoadInputError",
        "DagsterExecutionResourceInitError",
    }
)


@dataclass(frozen=True)
class AlertSettings:
    slack_webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    alert_from: str = ""
    alert_to: tuple[str, ...] = ()
    timeout_s: float = 15.0

    @classmethod
    def from_env(cls) -> AlertSettings:
        to = tuple(a.strip() for a in settings.env_str("OV_ALERT_TO").split(",") if a.strip())
        return cls(
            slack_webhook_url=settings.env_str("OV_SLACK_WEBHOOK_URL"),
            smtp_host=settings.env_str("OV_SMTP_HOST"),
            smtp_port=settings.env_int("OV_SMTP_PORT", 587),
            smtp_user=settings.env_str("OV_SMTP_USER"),
            smtp_password=settings.env_str("OV_SMTP_PASSWORD"),
            alert_from=settings.env_str("OV_ALERT_FROM", "ov-assets@localhost"),
            alert_to=to,
        )

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.alert_to)

    @property
    def enabled(self) -> bool:
        return bool(self.slack_webhook_url) or self.email_enabled


class Message(Protocol):
    """What every channel sends: a subject line and a plain text (check alerts, tick alerts and
    the daily summary are messages too, so they share one delivery and one no-secret rule)."""

    @property
    def subject(self) -> str: ...

    def text(self) -> str: ...


@dataclass(frozen=True)
class TextMessage:
    subject: str
    body: str

    def text(self) -> str:
        return self.body


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str
    detail: str = ""  # only for safe_message_classes()


@dataclass(frozen=True)
class FailureAlert:
    job: str
    run_id: str
    partition: str
    steps: tuple[StepFailure, ...]
    run_error_class: str = ""
    mode: str = ""  # the run's ov/mode tag: which schedule or sensor asked for it

    @property
    def subject(self) -> str:
        part = f" [{self.partition}]" if self.partition else ""
        return f"[ov-assets] run failed: {self.job}{part}"

    def text(self) -> str:
        lines = [
            self.subject,
            f"job: {self.job}",
            f"run id: {self.run_id}",
            f"partition: {self.partition or '-'}",
            f"asked for by: {self.mode or 'no schedule or sensor (UI, CLI or backfill)'}",
        ]
        for s in self.steps:
            lines.append(f"step {s.step}: {s.error_class}" + (f": {s.detail}" if s.detail else ""))
        if not self.steps:
            lines.append(f"run error: {self.run_error_class or 'unknown'}")
        lines.append("Open the run in the Dagster UI for the logs.")
        return "\n".join(lines)


def _innermost(error: object) -> object:
    """Dagster's wrapper errors hold the user exception as ``cause``."""
    seen = 0
    while (
        error is not None
        and getattr(error, "cls_name", None) in _WRAPPERS
        and getattr(error, "cause", None)
        and seen < 10
    ):
        error = getattr(error, "cause", None)
        seen += 1
    return error


def safe_message_classes() -> frozenset[str]:
    """Error classes whose message is ours and safe to send: ``dg.Failure`` (raised by our
    assets) and ``OperatorError`` with every subclass (``StoreAccessError``, ``LoginError``,
    ...: a message is kept whatever subclass says it)."""
    names = {"Failure"}
    todo: list[type] = [OperatorError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


def describe_error(error: object) -> tuple[str, str]:
    """(class name, safe detail) of a ``SerializableErrorInfo``."""
    error = _innermost(error)
    if error is None:
        return "unknown", ""
    cls = getattr(error, "cls_name", None) or "unknown"
    detail = ""
    if cls in safe_message_classes():
        message = (getattr(error, "message", "") or "").strip()
        # "ov_assets.errors.OperatorError: text" -> "text"
        if ": " in message.split("\n", 1)[0]:
            message = message.split(": ", 1)[1]
        detail = " ".join(message.split())[:MAX_DETAIL]
    return cls, detail


def partition_label(tags: dict[str, str]) -> str:
    """A run's partition, or its range (``start...end``), for an alert; empty when neither."""
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return f"{start}...{end}" if start and end else ""


def build_alert(context: dg.RunFailureSensorContext) -> FailureAlert:
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        cls, detail = describe_error(getattr(data, "error", None))
        steps.append(StepFailure(event.step_key or "?", cls, detail))
    run_error = ""
    failure = context.failure_event
    if not steps and failure is not None:
        run_error, _ = describe_error(getattr(failure.event_specific_data, "error", None))
    tags = dict(run.tags)
    return FailureAlert(
        run.job_name, run.run_id, partition_label(tags), tuple(steps), run_error, tags.get(MODE_TAG, "")
    )


def send_slack(alert: Message, config: AlertSettings) -> None:
    body = json.dumps({"text": alert.text()}).encode()
    req = urllib.request.Request(
        config.slack_webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=config.timeout_s) as resp:
        if resp.status >= 300:
            raise OSError(f"Slack webhook answered HTTP {resp.status}")


def send_email(alert: Message, config: AlertSettings) -> None:
    msg = EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = config.alert_from
    msg["To"] = ", ".join(config.alert_to)
    msg.set_content(alert.text())
    if config.smtp_port == 465:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            config.smtp_host, config.smtp_port, timeout=config.timeout_s, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout_s)
    with smtp:
        smtp.ehlo()
        if config.smtp_port != 465 and smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if config.smtp_user:
            smtp.login(config.smtp_user, config.smtp_password)
        smtp.send_message(msg)


def deliver(alert: Message, config: AlertSettings) -> list[str]:
    """Send to every configured channel; returns the channels that failed (by name only: the
    exception text of a transport may hold a URL with a token)."""
    failed = []
    if config.slack_webhook_url:
        try:
            send_slack(alert, config)
        except Exception as exc:  # noqa: BLE001 - one failed channel never stops the other; named by class
            failed.append(f"slack ({type(exc).__name__})")
    if config.email_enabled:
        try:
            send_email(alert, config)
        except Exception as exc:  # noqa: BLE001 - one failed channel never stops the other; named by class
            failed.append(f"email ({type(exc).__name__})")
    return failed


def send_or_log(log: logging.Logger | dg.DagsterLogManager, message: Message, config: AlertSettings) -> bool:
    """Deliver ``message``; False only when every configured channel failed (the caller keeps
    it to try again). Nothing configured counts as sent: it is logged, once."""
    if not config.enabled:
        log.info(f"{message.subject}; no alert channel configured (OV_SLACK_WEBHOOK_URL, OV_SMTP_*)")
        return True
    failed = deliver(message, config)
    channels = int(bool(config.slack_webhook_url)) + int(config.email_enabled)
    if failed and len(failed) == channels:
        log.error(f"not delivered: {message.subject}: {', '.join(failed)}")
        return False
    if failed:
        log.warning(f"{message.subject}: {', '.join(failed)} failed")
    return True


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Failed runs -> Slack (OV_SLACK_WEBHOOK_URL) and/or e-mail (OV_SMTP_*), without personal data.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    config = AlertSettings.from_env()
    alert = build_alert(context)
    if not config.enabled:
        context.log.info(f"run {alert.run_id} failed; no alert channel configured (OV_SLACK_WEBHOOK_URL, OV_SMTP_*)")
        return
    failed = deliver(alert, config)
    channels = int(bool(config.slack_webhook_url)) + int(config.email_enabled)
    if failed and len(failed) == channels:
        # Nothing reached anyone: fail the tick so the daemon retries this run's alert.
        raise RuntimeError(f"alert for run {alert.run_id} not delivered: {', '.join(failed)}")
    if failed:
        context.log.warning(f"alert for run {alert.run_id}: {', '.join(failed)} failed")


all_alert_sensors = [run_failure_alerts]
