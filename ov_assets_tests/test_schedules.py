"""The schedules of CONTRACT §10 evaluated at chosen instants: exact run requests, partitions,
tags and timezone (America/Bogota, UTC-5, no DST)."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import dagster as dg
import psycopg
import pytest
from dagster._utils.schedules import cron_string_iterator

from ov_assets.core.contract import BOGOTA
from ov_assets.defs.automation import schedules as S
from ov_assets.defs.resources import LandingResource, PostgresResource
from ov_assets.devkit.generator import write_day

UTC = dt.UTC
MONDAY = dt.date(2025, 10, 6)
SATURDAY = dt.date(2025, 10, 11)
SUNDAY = dt.date(2025, 10, 12)


def at(day: dt.date, hour: int, minute: int = 0, tz: dt.tzinfo = BOGOTA) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tz)


def evaluate(schedule: dg.ScheduleDefinition, when: dt.datetime, **resources: object) -> list[dg.RunRequest]:
    from ov_assets.definitions import defs

    # As the daemon does: the resources are set up for the evaluation and torn down after it
    # (PostgresResource keeps connections only while set up), hence the context manager.
    with dg.build_schedule_context(
        scheduled_execution_time=when, resources=resources or None, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def keys(requests: list[dg.RunRequest]) -> list[str]:
    return [r.partition_key or r.tags["dagster/partition"] for r in requests]


def ticks(schedule: dg.ScheduleDefinition, start: dt.datetime, n: int) -> list[dt.datetime]:
    it = cron_string_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
    return [next(it) for _ in range(n)]


def postgres_resource(conninfo: dict) -> PostgresResource:
    return PostgresResource(
        host=str(conninfo["host"]),
        port=int(conninfo["port"]),
        dbname=conninfo["dbname"],
        user=conninfo["user"],
        password=conninfo.get("password") or "",
    )


# --- when each schedule fires ----------------------------------------------------------------------


def test_every_schedule_is_in_bogota_time() -> None:
    for schedule in S.all_schedules:
        assert schedule.execution_timezone == "America/Bogota", schedule.name


def test_bulk_fires_mon_sat_at_0400_bogota_never_sunday() -> None:
    got = ticks(S.pqr_bulk_schedule, at(SATURDAY, 4, 1), 2)
    # Saturday 04:01 -> next is Monday 04:00 Bogotá (09:00 UTC): Sunday has no bulk run.
    assert [t.astimezone(BOGOTA).replace(tzinfo=None) for t in got] == [
        dt.datetime(2025, 10, 13, 4, 0),
        dt.datetime(2025, 10, 14, 4, 0),
    ]
    assert got[0].astimezone(UTC).hour == 9


def test_incremental_fires_every_two_hours_0400_to_2200_mon_sat() -> None:
    got = [t.astimezone(BOGOTA) for t in ticks(S.pqr_incremental_schedule, at(SATURDAY, 0, 0), 11)]
    assert [t.hour for t in got[:10]] == [4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
    assert all(t.date() == SATURDAY for t in got[:10])
    assert (got[10].date(), got[10].hour) == (dt.date(2025, 10, 13), 4)  # Sunday skipped


def test_nightly_and_weekly_ticks() -> None:
    def local(schedule: dg.ScheduleDefinition, start: dt.datetime, n: int) -> list[dt.datetime]:
        return [t.astimezone(BOGOTA).replace(tzinfo=None) for t in ticks(schedule, start, n)]

    assert local(S.pqr_reextraction_schedule, at(SATURDAY, 12), 2) == [
        dt.datetime(2025, 10, 12, 3),
        dt.datetime(2025, 10, 13, 3),
    ]  # every day, Sunday too
    assert local(S.verification_schedule, at(SUNDAY, 4, 30), 2) == [
        dt.datetime(2025, 10, 12, 5),
        dt.datetime(2025, 10, 12, 6),
    ]
    assert local(S.s3_retry_schedule, at(SUNDAY, 23, 30), 1) == [dt.datetime(2025, 10, 13, 0)]
    assert local(S.integrity_checks_schedule, at(SUNDAY, 12), 1) == [dt.datetime(2025, 10, 12, 23, 30)]
    assert local(S.reports_archive_schedule, at(SUNDAY, 23, 31), 1) == [dt.datetime(2025, 10, 12, 23, 45)]
    assert local(S.landing_cleanup_schedule, at(MONDAY, 0), 2) == [
        dt.datetime(2025, 10, 12, 2),
        dt.datetime(2025, 10, 19, 2),
    ]


# --- what each schedule asks for ---------------------------------------------------------------------


def test_bulk_monday_0400_yesterday_and_today_both_empresas() -> None:
    requests = evaluate(S.pqr_bulk_schedule, at(MONDAY, 4))
    assert keys(requests) == ["2025-10-05|afinia", "2025-10-05|aire", "2025-10-06|afinia", "2025-10-06|aire"]
    for r in requests:
        assert r.tags["ov/partition"] == r.partition_key
        assert r.tags["ov/empresa"] == r.partition_key.split("|")[1]
        assert r.tags["ov/mode"] == "bulk"
        assert r.tags["ov/portal"] == r.tags["ov/empresa"]  # extracting runs: one per portal
    assert len({r.run_key for r in requests}) == 4


def test_bulk_tick_given_in_utc_uses_the_bogota_day() -> None:
    # 09:00 UTC is 04:00 in Bogotá, same day; 03:00 UTC on Tuesday is still Monday in Bogotá.
    assert keys(evaluate(S.pqr_bulk_schedule, at(MONDAY, 9, tz=UTC))) == keys(
        evaluate(S.pqr_bulk_schedule, at(MONDAY, 4))
    )
    late = evaluate(S.pqr_bulk_schedule, dt.datetime(2025, 10, 7, 3, 0, tzinfo=UTC))
    assert keys(late)[-1] == "2025-10-06|aire"


def test_run_keys_are_unique_per_tick() -> None:
    a = evaluate(S.pqr_bulk_schedule, at(MONDAY, 4))
    b = evaluate(S.pqr_bulk_schedule, at(dt.date(2025, 10, 7), 4))
    again = evaluate(S.pqr_bulk_schedule, at(MONDAY, 4))
    assert {r.run_key for r in a}.isdisjoint({r.run_key for r in b})
    assert [r.run_key for r in a] == [r.run_key for r in again]  # a retried tick does not launch twice


def test_bulk_on_the_first_day_leaves_out_days_before_2020_10_01() -> None:
    assert keys(evaluate(S.pqr_bulk_schedule, at(dt.date(2020, 10, 1), 4))) == ["2020-10-01|afinia", "2020-10-01|aire"]


def _age(paths: list, seconds: float) -> None:
    past = time.time() - seconds
    for p in paths:
        os.utime(p, (past, past))


def test_incremental_saturday_2200_today_plus_partitions_with_new_files(data_dir) -> None:
    landing = LandingResource(data_dir=str(data_dir))
    generated = write_day(data_dir, "afinia", dt.date(2025, 10, 9), n=3, broken=False)
    _age(generated.files, 60)
    requests = evaluate(S.pqr_incremental_schedule, at(SATURDAY, 22), landing=landing)
    assert keys(requests) == ["2025-10-09|afinia", "2025-10-11|afinia", "2025-10-11|aire"]
    assert {r.tags["ov/mode"] for r in requests} == {"incremental"}
    # A tick whose previous tick is after the files were indexed sees only today's partitions.
    future = dt.datetime.now(BOGOTA) + dt.timedelta(days=3)
    future_tick = at(future.date(), 22) if future.weekday() != 6 else at(future.date() + dt.timedelta(days=1), 22)
    assert keys(evaluate(S.pqr_incremental_schedule, future_tick, landing=landing)) == [
        f"{future_tick.date()}|afinia",
        f"{future_tick.date()}|aire",
    ]


def test_incremental_previous_tick() -> None:
    assert S.previous_incremental_tick(at(SATURDAY, 22)) == at(SATURDAY, 20)
    assert S.previous_incremental_tick(at(dt.date(2025, 10, 13), 4)) == at(SATURDAY, 22)  # Monday 04:00
    assert S.previous_incremental_tick(at(dt.date(2025, 10, 14), 4)) == at(dt.date(2025, 10, 13), 22)


def test_incremental_growing_file_waits(data_dir) -> None:
    landing = LandingResource(data_dir=str(data_dir))
    write_day(data_dir, "aire", dt.date(2025, 10, 9), n=2, broken=False)  # mtimes: now
    requests = evaluate(S.pqr_incremental_schedule, at(SATURDAY, 22), landing=landing)
    assert keys(requests) == ["2025-10-11|afinia", "2025-10-11|aire"]


def _insert(conn: psycopg.Connection, empresa: str, rows: list[tuple[str, dt.datetime, str]]) -> None:
    for radicado, fecha, estado in rows:
        conn.execute(
            f"INSERT INTO data_general.ov_{empresa} (numero_radicado, fecha, estado_solicitud, hash_registro) "
            "VALUES (%s, %s, %s, %s)",
            (radicado, fecha, estado, uuid.uuid4().hex),
        )


def test_reextraction_0300_last_60_days_with_non_final_pqrs(pg_conninfo18) -> None:
    postgres = postgres_resource(pg_conninfo18)
    today = dt.date(2025, 10, 12)  # a Sunday: re-extraction runs every day
    with postgres.connect() as conn:
        _insert(
            conn,
            "afinia",
            [
                ("A1", dt.datetime(2025, 10, 12, 1, 0), "Radicado"),  # today: included
                ("A2", dt.datetime(2025, 8, 14, 9, 0), "En trámite"),  # 59 days ago: included
                ("A3", dt.datetime(2025, 8, 13, 9, 0), "En trámite"),  # 60 days ago: outside
                ("A4", dt.datetime(2025, 9, 1, 9, 0), "Finalizado"),  # final: not re-extracted
                ("A5", dt.datetime(2025, 9, 2, 9, 0), "Cerrado"),
                ("A6", dt.datetime(2025, 9, 3, 23, 59), "Pendiente"),
            ],
        )
        _insert(
            conn,
            "aire",
            [
                ("B1", dt.datetime(2025, 9, 3, 0, 0), "Pendiente"),
                ("B2", dt.datetime(2025, 9, 3, 10, 0), "Radicado"),
                ("B3", dt.datetime(2025, 10, 1, 10, 0), "Anulado"),
            ],
        )
    requests = evaluate(S.pqr_reextraction_schedule, at(today, 3), postgres=postgres)
    assert keys(requests) == ["2025-08-14|afinia", "2025-09-03|afinia", "2025-09-03|aire", "2025-10-12|afinia"]
    assert {r.tags["ov/mode"] for r in requests} == {"reextraction"}
    assert S.pqr_reextraction_schedule.job_name == "pqr_pipeline_job"


def test_reextraction_skips_when_everything_is_final(pg_conninfo18) -> None:
    postgres = postgres_resource(pg_conninfo18)
    from ov_assets.definitions import defs

    with dg.build_schedule_context(
        scheduled_execution_time=at(MONDAY, 3),
        resources={"postgres": postgres},
        repository_def=defs.get_repository_def(),
    ) as context:
        data = S.pqr_reextraction_schedule.evaluate_tick(context)
    assert not data.run_requests and data.skip_message


def _register(conn: psycopg.Connection, empresa: str, day: dt.date, status: str, key: str) -> None:
    conn.execute(
        """INSERT INTO data_general.s3_files_registry (empresa, numero_radicado, filename, file_type, file_hash,
               s3_bucket, s3_key, s3_url, upload_status, metadata)
           VALUES (%s, %s, %s, 'json', %s, 'local', %s, %s, %s, %s::jsonb)""",
        (
            empresa,
            "R" + key,
            key,
            "0" * 64,
            key,
            "file:///" + key,
            status,
            f'{{"partition_date": "{day.isoformat()}"}}',
        ),
    )


def test_s3_retry_hourly_only_partitions_pending_or_error(pg_conninfo18) -> None:
    postgres = postgres_resource(pg_conninfo18)
    with postgres.connect() as conn:
        _register(conn, "afinia", dt.date(2025, 9, 1), "pending", "k1")
        _register(conn, "aire", dt.date(2025, 9, 2), "error", "k2")
        _register(conn, "aire", dt.date(2025, 9, 2), "pending", "k3")
        _register(conn, "afinia", dt.date(2025, 9, 5), "uploaded", "k4")
    requests = evaluate(S.s3_retry_schedule, at(SUNDAY, 4), postgres=postgres)
    assert keys(requests) == ["2025-09-01|afinia", "2025-09-02|aire"]
    assert S.s3_retry_schedule.job_name == "pqr_s3_retry_job"
    assert {r.tags["ov/mode"] for r in requests} == {"retry"}
    assert not any("ov/portal" in r.tags for r in requests)  # no extraction, no portal slot


def test_verification_hourly_recent_and_changed_partitions(pg_conninfo18) -> None:
    postgres = postgres_resource(pg_conninfo18)
    # A tick evaluated "now": k2 changed 3 days before it (not re-checked), k1 is pending (checked).
    # Both times are this process's clock (the server's may differ under test_any_date).
    now = dt.datetime.now(BOGOTA).replace(minute=0, second=0, microsecond=0)
    with postgres.connect() as conn:
        _register(conn, "afinia", dt.date(2025, 9, 1), "pending", "k1")
        _register(conn, "aire", dt.date(2025, 9, 2), "uploaded", "k2")
        conn.execute(
            "UPDATE data_general.s3_files_registry SET updated_at = %s WHERE s3_key = 'k2'",
            (now - dt.timedelta(days=3),),
        )
    requests = evaluate(S.verification_schedule, now, postgres=postgres)
    today, yesterday = now.date(), now.date() - dt.timedelta(days=1)
    assert keys(requests) == [
        "2025-09-01|afinia",
        f"{yesterday}|afinia",
        f"{yesterday}|aire",
        f"{today}|afinia",
        f"{today}|aire",
    ]
    assert S.verification_schedule.job_name == "reconciliation_checks_job"


def test_integrity_reports_cleanup_requests() -> None:
    [integrity] = evaluate(S.integrity_checks_schedule, at(SUNDAY, 23, 30))
    assert S.integrity_checks_schedule.job_name == "integrity_checks_job"
    assert integrity.partition_key is None and integrity.tags["ov/mode"] == "integrity"
    [reports] = evaluate(S.reports_archive_schedule, at(SUNDAY, 23, 45))
    assert reports.run_config == {"ops": {"archive_reports": {"config": {"day": "2025-10-12"}}}}
    # 23:45 Bogotá is 04:45 UTC of the next day: the day archived is still Bogotá's.
    [reports_utc] = evaluate(S.reports_archive_schedule, dt.datetime(2025, 10, 13, 4, 45, tzinfo=UTC))
    assert reports_utc.run_config["ops"]["archive_reports"]["config"]["day"] == "2025-10-12"
    [cleanup] = evaluate(S.landing_cleanup_schedule, at(SUNDAY, 2))
    assert S.landing_cleanup_schedule.job_name == "landing_cleanup_job"
    assert cleanup.run_config == {"ops": {"cleanup_landing": {"config": {"dry_run": False}}}}


def test_schedules_are_stopped_by_default_outside_production() -> None:
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in S.all_schedules)


@pytest.mark.parametrize(
    "job",
    [
        "pqr_pipeline_job",
        "pqr_landing_job",
        "pqr_s3_retry_job",
        "integrity_checks_job",
        "reconciliation_checks_job",
        "reports_archive_job",
        "landing_cleanup_job",
    ],
)
def test_targets_resolve_in_the_definitions(job: str) -> None:
    from ov_assets.definitions import defs

    assert defs.resolve_job_def(job).name == job
