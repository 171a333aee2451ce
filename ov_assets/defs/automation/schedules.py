"""The schedules of CONTRACT §10, in America/Bogota.

Each is a ``@dg.schedule`` that returns its run requests (``build_schedule_from_partitioned_job``
takes no custom cron for time-partitioned jobs, NOTES). Run keys are
``{schedule}:{tick time}:{partition}`` so they are unique per tick and a retried tick does not
launch twice. Every run on a partition carries the tags of ``concurrency.partition_tags``.

Schedules start RUNNING when ``OV_ENV=production`` (unattended operation) and STOPPED elsewhere
(turn them on in the UI), so a developer's ``dagster dev`` does not scrape at 04:00.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import psycopg

from ov_assets import settings
from ov_assets.core.contract import BOGOTA, EMPRESAS, FINAL_STATUSES
from ov_assets.defs.automation.landing_runs import indexed_partitions_since, valid_day
from ov_assets.defs.automation.run_tags import mode_tags, partition_tags
from ov_assets.defs.jobs import (
    integrity_checks_job,
    landing_cleanup_job,
    pqr_pipeline_job,
    pqr_s3_retry_job,
    reconciliation_checks_job,
    reports_archive_job,
)
from ov_assets.defs.resources import LandingResource, PostgresResource
from ov_assets.warehouse.loading import SCHEMA, table_name

TIMEZONE = "America/Bogota"
REEXTRACTION_DAYS = 60
STABLE_SECONDS = 5

BULK_CRON = "0 4 * * 1-6"  # Mon-Sat 04:00
INCREMENTAL_CRON = "0 4-22/2 * * 1-6"  # Mon-Sat 04:00, 06:00, ..., 22:00
REEXTRACTION_CRON = "0 3 * * *"
VERIFICATION_CRON = "0 * * * *"
INTEGRITY_CRON = "30 23 * * *"
REPORTS_CRON = "45 23 * * *"
CLEANUP_CRON = "0 2 * * 0"  # Sunday 02:00


def _default_status() -> dg.DefaultScheduleStatus:
    return (
        dg.DefaultScheduleStatus.RUNNING if settings.environment() == "production" else dg.DefaultScheduleStatus.STOPPED
    )


def tick_time(context: dg.ScheduleEvaluationContext) -> dt.datetime:
    """The tick's scheduled time in Bogotá (a context built by hand must be given one: Dagster
    raises on reading a scheduled time that was never set)."""
    when = context.scheduled_execution_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=BOGOTA)
    return when.astimezone(BOGOTA)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M%z")


def partition_requests(
    name: str, when: dt.datetime, partitions: list[tuple[dt.date, str]], mode: str, checks_only: bool = False
) -> list[dg.RunRequest]:
    """One run request per (day, empresa), in date then empresa order, days not yet existing
    (or before 2020-10-01) left out.

    ``checks_only``: the target job selects only asset checks; Dagster 1.13 cannot validate a
    ``partition_key`` for such a job (``Job has no PartitionsDefinition``), so the partition goes
    in the ``dagster/partition`` tag, which is what the run's context reads."""
    today = when.date()
    out = []
    for day, empresa in sorted(set(partitions)):
        if not valid_day(day, today):
            continue
        key = f"{day.isoformat()}|{empresa}"
        tags = partition_tags(key, mode)
        if checks_only:
            tags["dagster/partition"] = key
        out.append(
            dg.RunRequest(run_key=f"{name}:{_stamp(when)}:{key}", partition_key=None if checks_only else key, tags=tags)
        )
    return out


# --- bulk ------------------------------------------------------------------------------------


@dg.schedule(
    name="pqr_bulk_schedule",
    cron_schedule=BULK_CRON,
    execution_timezone=TIMEZONE,
    job=pqr_pipeline_job,
    default_status=_default_status(),
    description="Mon-Sat 04:00: extract and reprocess yesterday and today, both empresas.",
)
def pqr_bulk_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    when = tick_time(context)
    days = (when.date() - dt.timedelta(days=1), when.date())
    return partition_requests("bulk", when, [(d, e) for d in days for e in EMPRESAS], "bulk")


# --- incremental -----------------------------------------------------------------------------


def previous_incremental_tick(when: dt.datetime) -> dt.datetime:
    """The tick before ``when`` of ``INCREMENTAL_CRON`` (04:00 follows the last 22:00 of a
    Mon-Sat day: Monday 04:00 follows Saturday 22:00)."""
    if when.hour > 4 or (when.hour == 4 and when.minute > 0):
        return when - dt.timedelta(hours=2)
    day = when.date() - dt.timedelta(days=1)
    while day.weekday() == 6:  # Sunday has no ticks
        day -= dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(22, 0), BOGOTA)


@dg.schedule(
    name="pqr_incremental_schedule",
    cron_schedule=INCREMENTAL_CRON,
    execution_timezone=TIMEZONE,
    job=pqr_pipeline_job,
    default_status=_default_status(),
    description="Mon-Sat every 2 h 04:00-22:00: today's partitions plus every partition with "
    "files that arrived since the previous tick.",
)
def pqr_incremental_schedule(context: dg.ScheduleEvaluationContext, landing: LandingResource) -> list[dg.RunRequest]:
    when = tick_time(context)
    index = landing.index()
    stable_before = int((dt.datetime.now(dt.UTC).timestamp() - STABLE_SECONDS) * 1e9)
    for empresa in EMPRESAS:
        index.refresh(empresa, when.date(), stable_before_ns=stable_before)
    since = previous_incremental_tick(when)
    arrived = indexed_partitions_since(index, since)
    partitions = [(when.date(), e) for e in EMPRESAS] + [(d, e) for e, d in arrived]
    return partition_requests("incremental", when, partitions, "incremental")


# --- re-extraction ---------------------------------------------------------------------------


def open_partitions(
    conn: psycopg.Connection, today: dt.date, days: int = REEXTRACTION_DAYS
) -> list[tuple[dt.date, str]]:
    """(day, empresa) of the last ``days`` days (today included) holding PQRs whose
    ``estado_solicitud`` is not final (``contract.FINAL_STATUSES``)."""
    first = today - dt.timedelta(days=days - 1)
    out: list[tuple[dt.date, str]] = []
    for empresa in EMPRESAS:
        rows = conn.execute(
            f"""SELECT DISTINCT fecha::date FROM {SCHEMA}.{table_name(empresa)}
                WHERE fecha >= %s AND fecha < %s AND NOT (estado_solicitud = ANY(%s))""",
            (first, today + dt.timedelta(days=1), sorted(FINAL_STATUSES)),
        ).fetchall()
        out += [(d, empresa) for (d,) in rows]
    return out


@dg.schedule(
    name="pqr_reextraction_schedule",
    cron_schedule=REEXTRACTION_CRON,
    execution_timezone=TIMEZONE,
    job=pqr_pipeline_job,
    default_status=_default_status(),
    description="Daily 03:00: re-extract and reload the last 60 days' partitions that hold "
    "PQRs not yet final (tag ov/mode=reextraction).",
)
def pqr_reextraction_schedule(
    context: dg.ScheduleEvaluationContext, postgres: PostgresResource
) -> list[dg.RunRequest] | dg.SkipReason:
    when = tick_time(context)
    with postgres.connect() as conn:
        partitions = open_partitions(conn, when.date())
    requests = partition_requests("reextraction", when, partitions, "reextraction")
    return requests or dg.SkipReason("no partition of the last 60 days holds a PQR that is not final")


# --- hourly verification and pending uploads ---------------------------------------------------


def recently_changed_partitions(conn: psycopg.Connection, since: dt.datetime) -> list[tuple[dt.date, str]]:
    """(day, empresa) of registry rows written since ``since``, or still pending/error."""
    rows = conn.execute(
        f"""SELECT DISTINCT (metadata->>'partition_date')::date, empresa FROM {SCHEMA}.s3_files_registry
            WHERE metadata ? 'partition_date'
              AND (updated_at >= %s OR upload_status IN ('pending', 'error'))""",
        (since,),
    ).fetchall()
    return [(d, e) for d, e in rows]


@dg.schedule(
    name="verification_schedule",
    cron_schedule=VERIFICATION_CRON,
    execution_timezone=TIMEZONE,
    job=reconciliation_checks_job,
    default_status=_default_status(),
    description="Hourly: reconciliation checks (registry vs bucket, table vs registry) for "
    "today's and yesterday's partitions and every partition whose registry rows "
    "changed in the last 24 h or are pending/error.",
)
def verification_schedule(
    context: dg.ScheduleEvaluationContext, postgres: PostgresResource
) -> list[dg.RunRequest] | dg.SkipReason:
    when = tick_time(context)
    with postgres.connect() as conn:
        changed = recently_changed_partitions(conn, when - dt.timedelta(hours=24))
    days = (when.date() - dt.timedelta(days=1), when.date())
    partitions = [(d, e) for d in days for e in EMPRESAS] + changed
    return partition_requests("verification", when, partitions, "verification", checks_only=True)


@dg.schedule(
    name="s3_retry_schedule",
    cron_schedule=VERIFICATION_CRON,
    execution_timezone=TIMEZONE,
    job=pqr_s3_retry_job,
    default_status=_default_status(),
    description="Hourly: pqr_s3_objects only for partitions with s3_files_registry rows "
    "pending or in error (uploads what is missing, verifies again).",
)
def s3_retry_schedule(
    context: dg.ScheduleEvaluationContext, postgres: PostgresResource
) -> list[dg.RunRequest] | dg.SkipReason:
    from ov_assets.objects.archive import pending_partitions

    when = tick_time(context)
    with postgres.connect() as conn:
        pending = pending_partitions(conn)
    requests = partition_requests("s3_retry", when, [(d, e) for e, d in pending], "retry")
    return requests or dg.SkipReason("nothing pending or in error in s3_files_registry")


# --- nightly ---------------------------------------------------------------------------------


@dg.schedule(
    name="integrity_checks_schedule",
    cron_schedule=INTEGRITY_CRON,
    execution_timezone=TIMEZONE,
    job=integrity_checks_job,
    default_status=_default_status(),
    description="Daily 23:30: the table-wide integrity checks.",
)
def integrity_checks_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    return [dg.RunRequest(run_key=f"integrity:{_stamp(tick_time(context))}", tags=mode_tags("integrity"))]


@dg.schedule(
    name="reports_archive_schedule",
    cron_schedule=REPORTS_CRON,
    execution_timezone=TIMEZONE,
    job=reports_archive_job,
    default_status=_default_status(),
    description="Daily 23:45: archive of the day's reports to {S3_BASE_PATH}/reports/..., "
    "plus the reports of every load since the last archive (later loads, "
    "partitions the 03:00 re-extraction rewrote).",
)
def reports_archive_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    when = tick_time(context)
    return [
        dg.RunRequest(
            run_key=f"reports:{_stamp(when)}",
            tags=mode_tags("reports"),
            run_config={"ops": {"archive_reports": {"config": {"day": when.date().isoformat()}}}},
        )
    ]


@dg.schedule(
    name="landing_cleanup_schedule",
    cron_schedule=CLEANUP_CRON,
    execution_timezone=TIMEZONE,
    job=landing_cleanup_job,
    default_status=_default_status(),
    description="Sunday 02:00: delete landing files verified in the object store and older "
    "than OV_RETENTION_DAYS (default 30).",
)
def landing_cleanup_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    when = tick_time(context)
    return [
        dg.RunRequest(
            run_key=f"cleanup:{_stamp(when)}",
            tags=mode_tags("cleanup"),
            run_config={"ops": {"cleanup_landing": {"config": {"dry_run": False}}}},
        )
    ]


all_schedules = [
    pqr_bulk_schedule,
    pqr_incremental_schedule,
    pqr_reextraction_schedule,
    verification_schedule,
    s3_retry_schedule,
    integrity_checks_schedule,
    reports_archive_schedule,
    landing_cleanup_schedule,
]
