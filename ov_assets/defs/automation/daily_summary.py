"""The daily summary (issue 17): at 23:50 Bogotá one message says the pipeline is alive and what
it did that day, per empresa (rows inserted/updated, rejects by reason, warnings by code,
objects stored / pending / error; ``ov_assets.warehouse.summary``; the ``ov_quality_daily``
rows its loads wrote, ``ov_assets.warehouse.quality``), plus the checks failing and the runs
failed (from the Dagster instance) and the backfills still running. Sent to Slack
and/or e-mail like every alert, and kept as the metadata of the ``ov_daily_summary`` asset's
materialization, so the asset's page plots every number over time.

Counts, codes, check and job names only: never a personal value.
"""

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from ov_assets import settings
from ov_assets.core.contract import BOGOTA, EMPRESAS
from ov_assets.defs.automation.alerts import AlertSettings, TextMessage, send_or_log
from ov_assets.defs.resources import PostgresResource
from ov_assets.warehouse.quality import QualityDay, written_between
from ov_assets.warehouse.summary import EmpresaDay, day_bounds, summarize

SUMMARY_CRON = "50 23 * * *"
ALL = "all"  # checks and runs of no single empresa (table-wide checks, checks-only jobs)


@dataclass(frozen=True)
class InstanceDay:
    """What the Dagster instance says of the day: failing checks by empresa (latest evaluation
    of each check and partition that day), failed runs by empresa, running backfills."""

    checks_failing: dict[str, list[str]] = field(default_factory=dict)
    runs_failed: dict[str, Counter[str]] = field(default_factory=dict)
    backfills: list[str] = field(default_factory=list)


def _empresa_of(partition: str) -> str:
    suffix = partition.rsplit("|", 1)[-1] if partition else ""
    return suffix if suffix in EMPRESAS else ALL


def instance_day(instance: dg.DagsterInstance, day: dt.date) -> InstanceDay:
    start, end = (t.timestamp() for t in day_bounds(day))
    latest: dict[tuple[str, str, str], tuple[bool, str]] = {}
    partitions: dict[str, str] = {}
    after = None
    while True:
        records = instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                after_timestamp=start,
                before_timestamp=end,
                after_cursor=after,
            ),
            limit=5000,
            ascending=True,
        )
        for record in records:
            entry = record.event_log_entry
            evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if not isinstance(evaluation, dg.AssetCheckEvaluation):
                continue
            partition = getattr(evaluation, "partition", None)
            if not partition:
                if entry.run_id not in partitions:
                    run = instance.get_run_by_id(entry.run_id)
                    partitions[entry.run_id] = run.tags.get("dagster/partition", "") if run else ""
                partition = partitions[entry.run_id]
            key = (evaluation.check_name, evaluation.asset_key.to_user_string(), partition or "")
            latest[key] = (bool(evaluation.passed), evaluation.severity.value)
        if len(records) < 5000:
            break
        after = records[-1].storage_id
    failing: dict[str, list[str]] = {}
    for (check, asset, partition), (passed, severity) in sorted(latest.items()):
        if not passed:
            where = f"{check} on {asset}" + (f" [{partition}]" if partition else "") + f" ({severity})"
            failing.setdefault(_empresa_of(partition), []).append(where)

    runs: dict[str, Counter[str]] = {}
    for run_record in instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=dt.datetime.fromtimestamp(start, dt.UTC),
            updated_before=dt.datetime.fromtimestamp(end, dt.UTC),
        )
    ):
        tags = dict(run_record.dagster_run.tags)
        empresa = tags.get("ov/empresa") or _empresa_of(tags.get("dagster/partition", ""))
        runs.setdefault(empresa if empresa in EMPRESAS else ALL, Counter())[run_record.dagster_run.job_name] += 1

    backfills = []
    from dagster._core.execution.backfill import BulkActionStatus

    for backfill in instance.get_backfills(status=BulkActionStatus.REQUESTED, limit=20):
        done = Counter(
            r.status.value for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
        )
        since = dt.datetime.fromtimestamp(backfill.backfill_timestamp, BOGOTA).strftime("%Y-%m-%d %H:%M")
        backfills.append(
            f"backfill {backfill.backfill_id} since {since}: "
            f"{done.get('SUCCESS', 0)} runs succeeded, {done.get('FAILURE', 0)} failed, "
            f"{sum(done.values()) - done.get('SUCCESS', 0) - done.get('FAILURE', 0)} other"
        )
    return InstanceDay(failing, runs, backfills)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def quality_line(q: QualityDay) -> str:
    """The day's ``ov_quality_daily`` rows of one empresa, in one line (counts only)."""
    latency = "none stored" if q.max_latency_s is None else f"{q.max_latency_s:.0f} s"
    return (
        f"  quality: {q.partitions} partitions loaded, {q.files_seen} files, {q.rejected} rejected "
        f"(reject rate {q.reject_rate:.4f}), slowest extraction-to-load {latency}"
    )


def summary_message(
    day: dt.date, rows: list[EmpresaDay], inst: InstanceDay, quality: dict[str, QualityDay] | None = None
) -> TextMessage:
    failing = sum(len(v) for v in inst.checks_failing.values())
    failed = sum(sum(c.values()) for c in inst.runs_failed.values())
    subject = f"[ov-assets] daily summary {day.isoformat()}: {failing} checks failing, {failed} runs failed"
    lines = [subject]
    for r in rows:
        lines += [
            f"{r.empresa}: {r.loads} loads, {r.inserted} rows inserted, {r.updated} updated",
            f"  rejects ({sum(r.rejects.values())}): {_counts(r.rejects)}",
            f"  warnings ({sum(r.warnings.values())}): {_counts(r.warnings)}",
            f"  objects: {r.stored} stored today; {r.pending} pending, {r.error} error (now)",
            *([quality_line(quality[r.empresa])] if quality and r.empresa in quality else []),
            f"  checks failing ({len(inst.checks_failing.get(r.empresa, []))}): "
            + ("; ".join(inst.checks_failing.get(r.empresa, [])) or "none"),
            f"  runs failed ({sum(inst.runs_failed.get(r.empresa, Counter()).values())}): "
            + _counts(dict(inst.runs_failed.get(r.empresa, Counter()))),
        ]
    if inst.checks_failing.get(ALL) or inst.runs_failed.get(ALL):
        lines.append(
            f"table-wide checks failing ({len(inst.checks_failing.get(ALL, []))}): "
            + ("; ".join(inst.checks_failing.get(ALL, [])) or "none")
        )
        lines.append(f"other runs failed: {_counts(dict(inst.runs_failed.get(ALL, Counter())))}")
    lines += inst.backfills or ["no backfill running"]
    return TextMessage(subject, "\n".join(lines))


def summary_metadata(
    day: dt.date, rows: list[EmpresaDay], inst: InstanceDay, quality: dict[str, QualityDay] | None = None
) -> dict[str, dg.MetadataValue]:
    """Numbers the asset's page plots over time, one series per name."""
    meta: dict[str, dg.MetadataValue] = {"day": dg.MetadataValue.text(day.isoformat())}
    for r in rows:
        e = r.empresa
        meta |= {
            f"{e}_loads": dg.MetadataValue.int(r.loads),
            f"{e}_inserted": dg.MetadataValue.int(r.inserted),
            f"{e}_updated": dg.MetadataValue.int(r.updated),
            f"{e}_rejects": dg.MetadataValue.int(sum(r.rejects.values())),
            f"{e}_warnings": dg.MetadataValue.int(sum(r.warnings.values())),
            f"{e}_objects_stored": dg.MetadataValue.int(r.stored),
            f"{e}_objects_pending": dg.MetadataValue.int(r.pending),
            f"{e}_objects_error": dg.MetadataValue.int(r.error),
            f"{e}_checks_failing": dg.MetadataValue.int(len(inst.checks_failing.get(e, []))),
            f"{e}_runs_failed": dg.MetadataValue.int(sum(inst.runs_failed.get(e, Counter()).values())),
        }
    for e, q in (quality or {}).items():  # ov_quality_daily (issue 19)
        meta[f"{e}_quality_partitions"] = dg.MetadataValue.int(q.partitions)
        meta[f"{e}_reject_rate"] = dg.MetadataValue.float(q.reject_rate)
        if q.max_latency_s is not None:
            meta[f"{e}_load_latency_s_max"] = dg.MetadataValue.float(q.max_latency_s)
    meta["checks_failing"] = dg.MetadataValue.int(sum(len(v) for v in inst.checks_failing.values()))
    meta["runs_failed"] = dg.MetadataValue.int(sum(sum(c.values()) for c in inst.runs_failed.values()))
    return meta


class DailySummaryConfig(dg.Config):
    day: str = ""  # YYYY-MM-DD; empty: today in Bogotá (the schedule passes its tick's day)


@dg.asset(
    name="ov_daily_summary",
    group_name="monitoring",
    description="What the pipeline did on a day (rows, rejects, warnings, objects, checks, runs): sent to "
    "Slack/e-mail at 23:50 Bogotá and kept as metadata, plotted over time.",
)
def ov_daily_summary(
    context: dg.AssetExecutionContext, config: DailySummaryConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(config.day) if config.day else dt.datetime.now(BOGOTA).date()
    rows = postgres.run(lambda conn: summarize(conn, day))
    start, end = day_bounds(day)
    quality = postgres.run(lambda conn: {e: written_between(conn, e, start, end) for e in EMPRESAS})
    inst = instance_day(context.instance, day)
    message = summary_message(day, rows, inst, quality)
    delivered = send_or_log(context.log, message, AlertSettings.from_env())
    meta = summary_metadata(day, rows, inst, quality)
    meta["summary"] = dg.MetadataValue.md("```\n" + message.text() + "\n```")
    meta["delivered"] = dg.MetadataValue.bool(delivered)
    return dg.MaterializeResult(metadata=meta)


daily_summary_job = dg.define_asset_job(
    "daily_summary_job",
    selection=dg.AssetSelection.assets(ov_daily_summary),
    executor_def=dg.in_process_executor,
    description="The daily summary (ov_daily_summary).",
)


@dg.schedule(
    name="daily_summary_schedule",
    cron_schedule=SUMMARY_CRON,
    execution_timezone="America/Bogota",
    job=daily_summary_job,
    default_status=(
        dg.DefaultScheduleStatus.RUNNING if settings.environment() == "production" else dg.DefaultScheduleStatus.STOPPED
    ),
    description="Daily 23:50: the day's summary to Slack and/or e-mail, and as ov_daily_summary metadata.",
)
def daily_summary_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled: dt.datetime | None = context.scheduled_execution_time
    when = (scheduled or dt.datetime.now(BOGOTA)).astimezone(BOGOTA)
    day = when.date().isoformat()
    return dg.RunRequest(
        run_key=f"daily_summary:{day}", run_config={"ops": {"ov_daily_summary": {"config": {"day": day}}}}
    )
