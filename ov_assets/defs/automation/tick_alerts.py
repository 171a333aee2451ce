"""Alerts on what fails without a failed run (issue 17): a sensor or schedule tick that errors
(one bad file stopping the landing sensor is such a case), and runs that stay queued or
started too long (a full queue, a hung browser).

Tick errors: every schedule and sensor the instance knows, read with ``instance.get_ticks``;
one message per instigator and Bogotá day while its ticks fail, and "recovered" at its next
good tick. The message names the error class and only the text of our own operator errors
(``alerts.describe_error``): a tick's exception text may quote a file's values.

Slow runs: a run queued longer than ``OV_ALERT_QUEUED_MINUTES`` or started longer ago than
``OV_ALERT_RUNNING_MINUTES`` alerts once per state. Dagster's run monitoring
(``deploy/dagster.yaml``) fails a run stuck starting and cancels one past
``max_runtime_seconds``; this alert comes first, while someone can still look.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorTick, TickStatus

from ov_assets import settings
from ov_assets.core.contract import BOGOTA
from ov_assets.defs.automation.alert_state import Episodes, bogota_day, send_all
from ov_assets.defs.automation.alerts import AlertSettings, TextMessage, describe_error, partition_label

TICKS_READ = 25  # newest ticks read per instigator and evaluation


@dataclass
class TickAlertState:
    last: dict[str, int] = field(default_factory=dict)  # instigator -> last tick id handled
    episodes: Episodes = field(default_factory=Episodes)
    pending: list[dict[str, str]] = field(default_factory=list)  # undelivered messages

    @classmethod
    def load(cls, cursor: str | None) -> TickAlertState:
        data = json.loads(cursor) if cursor else {}
        return cls(
            last=dict(data.get("last", {})),
            episodes=Episodes(dict(data.get("open", {}))),
            pending=list(data.get("pending", [])),
        )

    def dump(self) -> str:
        return json.dumps({"last": self.last, "open": self.episodes.open, "pending": self.pending}, sort_keys=True)


def _kind(tick: InstigatorTick) -> str:
    return str(getattr(tick.instigator_type, "value", tick.instigator_type)).lower()


# The daemon's wrappers around the error the sensor or schedule itself raised.
_TICK_WRAPPERS = frozenset(
    {
        "SensorExecutionError",
        "ScheduleExecutionError",
        "DagsterUserCodeProcessError",
        "DagsterUserCodeExecutionError",
        "DagsterExecutionInterruptedError",
    }
)


def tick_error(error: object) -> object:
    for _ in range(10):
        cause = getattr(error, "cause", None)
        if getattr(error, "cls_name", None) not in _TICK_WRAPPERS or cause is None:
            break
        error = cause
    return error


def tick_failure_message(tick: InstigatorTick) -> TextMessage:
    cls, detail = describe_error(tick_error(tick.error))
    kind, name = _kind(tick), tick.instigator_name
    when = dt.datetime.fromtimestamp(tick.timestamp, BOGOTA).strftime("%Y-%m-%d %H:%M:%S %Z")
    subject = f"[ov-assets] {kind} tick failed: {name}"
    lines = [
        subject,
        f"{kind}: {name}",
        f"tick: {when}",
        f"error: {cls}" + (f": {detail}" if detail else ""),
        f"consecutive failures: {getattr(tick, 'consecutive_failure_count', 0) or 1}",
        f"Open the {kind} in the Dagster UI for the tick's error. Next alert: tomorrow if it still "
        "fails, or when it recovers.",
    ]
    return TextMessage(subject, "\n".join(lines))


def tick_recovered_message(tick: InstigatorTick, since: str) -> TextMessage:
    kind, name = _kind(tick), tick.instigator_name
    subject = f"[ov-assets] {kind} recovered: {name}"
    return TextMessage(subject, f"{subject}\n{kind}: {name}\nfailing since: {since}")


def plan_tick_messages(state: TickAlertState, instance: dg.DagsterInstance) -> list[TextMessage]:
    """Advance ``state`` over every instigator's completed ticks since the last evaluation. A
    tick still running stops the walk for its instigator (it is read again when it ends)."""
    messages = []
    for inst_state in instance.all_instigator_state():
        ticks = instance.get_ticks(inst_state.instigator_origin_id, inst_state.selector_id, limit=TICKS_READ)
        if not ticks:
            continue
        key = f"{inst_state.instigator_type.value.lower()}:{inst_state.instigator_name}"
        last = state.last.get(key)
        ticks = sorted(ticks, key=lambda t: t.tick_id)
        if last is None:
            # First sight: only its newest completed tick counts (no alerts for old history).
            done = [t for t in ticks if t.status != TickStatus.STARTED]
            ticks = done[-1:]
            last = -1
        for tick in ticks:
            if tick.tick_id <= last:
                continue
            if tick.status == TickStatus.STARTED:
                break
            if tick.status == TickStatus.FAILURE:
                if state.episodes.failing(key, bogota_day(tick.timestamp)):
                    messages.append(tick_failure_message(tick))
            else:
                since = state.episodes.passing(key)
                if since is not None:
                    messages.append(tick_recovered_message(tick, since))
            state.last[key] = tick.tick_id
    return messages


def evaluate_ticks(context: dg.SensorEvaluationContext, config: AlertSettings | None = None) -> dg.SensorResult:
    config = config or AlertSettings.from_env()
    state = TickAlertState.load(context.cursor)
    messages = plan_tick_messages(state, context.instance)
    state.pending = send_all(context.log, state.pending, messages, config)
    state.episodes.prune(dt.datetime.now(BOGOTA).date())
    return dg.SensorResult(
        cursor=state.dump(),
        skip_reason=dg.SkipReason(
            f"{len(messages)} tick alerts" + (f", {len(state.pending)} waiting for delivery" if state.pending else "")
        ),
    )


@dg.sensor(
    name="tick_failure_alerts",
    minimum_interval_seconds=settings.alert_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sensor and schedule ticks that fail -> Slack and/or e-mail, one per instigator per day, "
    "and a 'recovered' at its next good tick.",
)
def tick_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return evaluate_ticks(context)


# --- runs queued or started too long -----------------------------------------------------------


def _partition(tags: dict[str, str]) -> str:
    return partition_label(tags) or tags.get("ov/partition") or "-"


def slow_run_messages(
    instance: dg.DagsterInstance, alerted: dict[str, str], now: float, queued_minutes: int, running_minutes: int
) -> tuple[list[TextMessage], dict[str, str]]:
    """Messages for runs newly past a limit, and the runs alerted that are still slow (run id ->
    status): a run alerts once per status, and is forgotten when it moves on."""
    still: dict[str, str] = {}
    messages = []
    limits = {dg.DagsterRunStatus.QUEUED: queued_minutes, dg.DagsterRunStatus.STARTED: running_minutes}
    for status, minutes in limits.items():
        for record in instance.get_run_records(dg.RunsFilter(statuses=[status]), limit=500):
            since = (
                record.start_time if status == dg.DagsterRunStatus.STARTED else None
            ) or record.create_timestamp.timestamp()
            if now - since < minutes * 60:
                continue
            run = record.dagster_run
            still[run.run_id] = status.value
            if alerted.get(run.run_id) == status.value:
                continue
            verb = "queued" if status == dg.DagsterRunStatus.QUEUED else "running"
            subject = f"[ov-assets] run {verb} over {minutes} min: {run.job_name} [{_partition(dict(run.tags))}]"
            messages.append(
                TextMessage(
                    subject,
                    "\n".join(
                        [
                            subject,
                            f"job: {run.job_name}",
                            f"run id: {run.run_id}",
                            f"partition: {_partition(dict(run.tags))}",
                            f"{verb} for: {int((now - since) // 60)} min",
                            "Queued: the run queue's limits (deploy/dagster.yaml) or a full daemon; running: a step that "
                            "hangs. Open the run in the Dagster UI.",
                        ]
                    ),
                )
            )
    return messages, still


@dg.sensor(
    name="slow_run_alerts",
    minimum_interval_seconds=settings.alert_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs queued longer than OV_ALERT_QUEUED_MINUTES or started longer ago than "
    "OV_ALERT_RUNNING_MINUTES -> Slack and/or e-mail, once per run and state.",
)
def slow_run_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    config = AlertSettings.from_env()
    data = json.loads(context.cursor) if context.cursor else {}
    messages, still = slow_run_messages(
        context.instance,
        dict(data.get("alerted", {})),
        time.time(),
        settings.alert_queued_minutes(),
        settings.alert_running_minutes(),
    )
    pending = send_all(context.log, data.get("pending", []), messages, config)
    return dg.SensorResult(
        cursor=json.dumps({"alerted": still, "pending": pending}, sort_keys=True),
        skip_reason=dg.SkipReason(
            f"{len(messages)} slow-run alerts" + (f", {len(pending)} waiting for delivery" if pending else "")
        ),
    )
