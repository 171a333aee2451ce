"""Alerts on failing asset checks (issue 17): non-blocking checks (the 23:30 integrity checks,
the hourly reconciliation, ``load_freshness``, ``portal_yielded_pqrs``, ``reject_rate``) do not
fail their run, so ``run_failure_alerts`` never hears of them.

The sensor reads the instance's new ``ASSET_CHECK_EVALUATION`` events (cursor: the last storage
id) and, for every failed evaluation (ERROR always, WARN unless ``OV_ALERT_CHECK_WARNINGS=0``),
sends one message naming the check, asset, partition, severity and the check's counts (numeric
metadata only: a check's text metadata may list radicados or keys, never sent). One message per
check and partition per Bogotá day; "recovered" when it passes again. The open failures live in
the cursor with what was read (run by run), so a restarted daemon neither repeats nor forgets
them; a message no channel accepted waits there for the next tick.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from ov_assets import settings
from ov_assets.core.contract import BOGOTA
from ov_assets.defs.automation.alert_state import Episodes, bogota_day, send_all
from ov_assets.defs.automation.alerts import AlertSettings, TextMessage

BATCH = 1000  # runs, and evaluations per run, read per tick; the rest next tick
MAX_MESSAGES = 20  # per tick; more become one digest message (a backfill failing 300 partitions)
MAX_DIGEST_LINES = 200


@dataclass(frozen=True)
class CheckOutcome:
    """One evaluation, reduced to what may be sent: names, partition, severity, numbers."""

    check: str
    asset: str
    partition: str
    severity: str
    passed: bool
    counts: tuple[tuple[str, float], ...]
    run_id: str
    timestamp: float

    @property
    def key(self) -> str:
        return "\t".join((self.check, self.asset, self.partition))

    @property
    def where(self) -> str:
        return f"{self.check} on {self.asset}" + (f" [{self.partition}]" if self.partition else "")


def failure_message(o: CheckOutcome) -> TextMessage:
    subject = f"[ov-assets] check failed ({o.severity}): {o.where}"
    lines = [
        subject,
        f"check: {o.check}",
        f"asset: {o.asset}",
        f"partition: {o.partition or '-'}",
        f"severity: {o.severity}",
    ]
    lines += [f"{name}: {_number(value)}" for name, value in o.counts]
    lines += [
        f"run id: {o.run_id}",
        "Open the asset's Checks tab in the Dagster UI for the details.",
        "Next alert for this check and partition: tomorrow if it still fails, or when it recovers.",
    ]
    return TextMessage(subject, "\n".join(lines))


def recovered_message(o: CheckOutcome, since: str) -> TextMessage:
    subject = f"[ov-assets] check recovered: {o.where}"
    return TextMessage(
        subject,
        "\n".join(
            [
                subject,
                f"check: {o.check}",
                f"asset: {o.asset}",
                f"partition: {o.partition or '-'}",
                f"failing since: {since}",
                f"run id: {o.run_id}",
            ]
        ),
    )


def digest_message(messages: list[TextMessage]) -> TextMessage:
    subject = f"[ov-assets] {len(messages)} check alerts"
    lines = [subject] + [m.subject.removeprefix("[ov-assets] ") for m in messages[:MAX_DIGEST_LINES]]
    if len(messages) > MAX_DIGEST_LINES:
        lines.append(f"... and {len(messages) - MAX_DIGEST_LINES} more")
    lines.append("Open the Checks tab of the assets in the Dagster UI for the details.")
    return TextMessage(subject, "\n".join(lines))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def numeric_counts(metadata: Mapping[str, object] | None) -> tuple[tuple[str, float], ...]:
    """Only numbers leave the instance: int/float metadata values, by their key."""
    out = []
    for name, value in sorted(dict(metadata or {}).items()):
        raw = value.value if isinstance(value, (dg.IntMetadataValue, dg.FloatMetadataValue)) else value
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw is None:
            continue
        if isinstance(raw, float) and not math.isfinite(raw):
            continue
        out.append((str(name), raw))
    return tuple(out)


@dataclass
class CheckAlertState:
    """The sensor's cursor. ``after``: runs updated after this timestamp are read; ``runs``:
    run id -> [event cursor in that run, its update timestamp, finished?] for the runs being
    followed (in progress, or finished within ``OVERLAP_S``); ``open``: open failures;
    ``pending``: messages not yet delivered."""

    after: float | None = None
    runs: dict[str, list] = field(default_factory=dict)
    episodes: Episodes = field(default_factory=Episodes)
    pending: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, cursor: str | None) -> CheckAlertState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(
            after=data.get("after"),
            runs=dict(data.get("runs", {})),
            episodes=Episodes(dict(data.get("open", {}))),
            pending=list(data.get("pending", [])),
        )

    def dump(self) -> str:
        return json.dumps(
            {"after": self.after, "runs": self.runs, "open": self.episodes.open, "pending": self.pending},
            sort_keys=True,
        )


# Runs whose update time is this close to the last read are read again (their per-run cursor
# keeps them from repeating): update timestamps of runs finishing together may tie.
OVERLAP_S = 120.0
_FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def read_outcomes(instance: dg.DagsterInstance, state: CheckAlertState) -> list[CheckOutcome]:
    """The evaluations stored since the last read, run by run (every event log storage answers
    this, also Dagster's run-sharded SQLite of ``dagster dev``, where storage ids are per run).
    Advances ``state.after`` and ``state.runs``."""
    after = state.after or 0.0
    records = instance.get_run_records(
        dg.RunsFilter(updated_after=dt.datetime.fromtimestamp(after - OVERLAP_S, dt.UTC)),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    updated = {r.dagster_run.run_id: r for r in records}
    out: list[CheckOutcome] = []
    for run_id in sorted(set(state.runs) | set(updated), key=lambda rid: (state.runs.get(rid) or [None, 0.0])[1]):
        cursor, seen_update, finished = state.runs.get(run_id) or [None, 0.0, False]
        record = updated.get(run_id)
        if record is None and finished:
            continue
        if record is None:
            record = next(iter(instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)), None)
            if record is None:  # deleted
                state.runs.pop(run_id, None)
                continue
        update_ts = record.update_timestamp.timestamp()
        if finished and update_ts <= seen_update:
            continue
        run = record.dagster_run
        conn = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=BATCH
        )
        partition = run.tags.get("dagster/partition", "")
        for ev in conn.records:
            entry = ev.event_log_entry
            evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if not isinstance(evaluation, dg.AssetCheckEvaluation):
                continue
            out.append(
                CheckOutcome(
                    check=evaluation.check_name,
                    asset=evaluation.asset_key.to_user_string(),
                    partition=getattr(evaluation, "partition", None) or partition,
                    severity=evaluation.severity.value,
                    passed=bool(evaluation.passed),
                    counts=numeric_counts(evaluation.metadata),
                    run_id=run_id,
                    timestamp=entry.timestamp,
                )
            )
        done = run.status in _FINISHED and not conn.has_more
        state.runs[run_id] = [conn.cursor or cursor, update_ts, done]
        after = max(after, update_ts)
    state.after = after
    state.runs = {rid: v for rid, v in state.runs.items() if not v[2] or v[1] >= after - 2 * OVERLAP_S}
    out.sort(key=lambda o: o.timestamp)
    return out


def plan_messages(state: CheckAlertState, outcomes: list[CheckOutcome], warn: bool) -> list[TextMessage]:
    """Advance the open failures over ``outcomes``; the messages they call for."""
    messages = []
    for o in outcomes:
        if not o.passed and (o.severity == "ERROR" or warn):
            if state.episodes.failing(o.key, bogota_day(o.timestamp)):
                messages.append(failure_message(o))
        elif o.passed:
            since = state.episodes.passing(o.key)
            if since is not None:
                messages.append(recovered_message(o, since))
    return messages


def evaluate(context: dg.SensorEvaluationContext, config: AlertSettings | None = None) -> dg.SensorResult:
    """One tick: read, plan, send (a digest beyond ``MAX_MESSAGES``); what cannot be delivered
    stays in the cursor for the next tick."""
    config = config or AlertSettings.from_env()
    state = CheckAlertState.load(context.cursor)
    if state.after is None:
        # First tick: start from now, not from every evaluation the instance ever stored.
        state.after = time.time()
        return dg.SensorResult(cursor=state.dump(), skip_reason=dg.SkipReason("started: evaluations from now on"))
    outcomes = read_outcomes(context.instance, state)
    messages = plan_messages(state, outcomes, settings.alert_check_warnings())
    if len(messages) > MAX_MESSAGES:
        messages = [digest_message(messages)]
    state.pending = send_all(context.log, state.pending, messages, config)
    state.episodes.prune(dt.datetime.now(BOGOTA).date())
    reason = f"{len(outcomes)} evaluations read, {len(messages)} alerts" + (
        f", {len(state.pending)} waiting for delivery" if state.pending else ""
    )
    return dg.SensorResult(cursor=state.dump(), skip_reason=dg.SkipReason(reason))


@dg.sensor(
    name="check_failure_alerts",
    minimum_interval_seconds=settings.alert_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Failed asset checks (ERROR; WARN unless OV_ALERT_CHECK_WARNINGS=0) -> Slack and/or e-mail, "
    "one per check and partition per day, and a 'recovered' when they pass again.",
)
def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return evaluate(context)
