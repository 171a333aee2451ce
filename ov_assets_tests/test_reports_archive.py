"""The 23:45 archive of the day's reports (CONTRACT §10): consolidated CSV/Parquet, rejects and
the audit export of each empresa under {S3_BASE_PATH}/reports/{empresa}/{yyyy}/{mm}/{dd}/, in
moto's bucket; a second run stores nothing new."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import boto3
import dagster as dg

from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.jobs import reports_archive_job
from ov_assets.devkit import generator
from ov_assets_tests.support import pipeline_resources

DAY = dt.date(2025, 10, 8)


def test_reports_of_the_day_reach_the_bucket_once(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    generator.write_day(data_dir, "afinia", DAY, n=4)
    resources = pipeline_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    assert dg.materialize(pqr_assets, resources=resources, partition_key=f"{DAY}|afinia").success

    run_config = {"ops": {"archive_reports": {"config": {"day": DAY.isoformat()}}}}
    result = reports_archive_job.execute_in_process(resources=resources, run_config=run_config)
    assert result.success

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    prefix = "oficina-virtual/reports/afinia/2025/10/08/"
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])
    names = {o["Key"].removeprefix(prefix) for o in listed}
    assert {
        "afinia_consolidated_20251008.csv",
        "afinia_consolidated_20251008.parquet",
        "afinia_rejects_20251008.csv",
    } <= names
    assert any("audit" in n for n in names)
    local = data_dir / "processed" / "afinia_consolidated_20251008.csv"
    body = s3.get_object(Bucket=s3_bucket, Key=prefix + local.name)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(local.read_bytes()).hexdigest()
    modified = {o["Key"]: o["LastModified"] for o in listed}

    assert reports_archive_job.execute_in_process(resources=resources, run_config=run_config).success
    again = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])
    assert {o["Key"]: o["LastModified"] for o in again} == modified


def test_loads_since_the_last_archive_are_exported_too(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    """A load after the 23:45 archive, and a partition of an earlier day rewritten by the 03:00
    re-extraction, reach the bucket with the next archive (their own day's folder), and the
    audit export of the day those loads finished is stored again with them; then nothing is
    left to export."""
    import psycopg

    from ov_assets.core.contract import BOGOTA
    from ov_assets.reports.consolidated import consolidated_paths
    from ov_assets.reports.nightly_upload import archive_reports, report_key
    from ov_assets_tests.checks_support import write_newer_version

    earlier = DAY - dt.timedelta(days=5)
    gen = generator.write_day(data_dir, "afinia", earlier, n=4)
    generator.write_day(data_dir, "afinia", DAY, n=4)
    resources = pipeline_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    for day in (earlier, DAY):
        assert dg.materialize(pqr_assets, resources=resources, partition_key=f"{day}|afinia").success
    store = resources["object_store"].open()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def stored(day: dt.date, path: Path) -> bytes:
        return s3.get_object(Bucket=s3_bucket, Key=report_key("oficina-virtual", "afinia", day, path.name))[
            "Body"
        ].read()

    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        first = archive_reports(conn, store, data_dir, "oficina-virtual", DAY, ("afinia",))
    assert first.loads_exported == 2
    report = consolidated_paths(data_dir, "afinia", earlier)["csv"]
    assert stored(earlier, report) == report.read_bytes()

    # After the archive: the re-extraction rewrites the earlier partition (a status changed).
    write_newer_version(data_dir, gen, index=0)
    assert dg.materialize(pqr_assets, resources=resources, partition_key=f"{earlier}|afinia").success
    assert stored(earlier, report) != report.read_bytes()
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        (finished,) = conn.execute("SELECT max(finished_at) FROM data_general.ov_load_audit").fetchone()
        nxt = archive_reports(conn, store, data_dir, "oficina-virtual", DAY + dt.timedelta(days=1), ("afinia",))
        assert nxt.loads_exported == 1
        assert stored(earlier, report) == report.read_bytes()
        audit_day = finished.astimezone(BOGOTA).date()
        audit = stored(audit_day, Path(f"afinia_audit_{audit_day:%Y%m%d}.csv")).decode()
        start = dt.datetime.combine(audit_day, dt.time(), BOGOTA)
        (loads,) = conn.execute(
            "SELECT count(*) FROM data_general.ov_load_audit WHERE partition_date = %s "
            "AND finished_at >= %s AND finished_at < %s",
            (earlier, start, start + dt.timedelta(days=1)),
        ).fetchone()
        assert loads >= 1 and audit.count(f",afinia,{earlier.isoformat()},") == loads  # the new load included

        again = archive_reports(conn, store, data_dir, "oficina-virtual", DAY + dt.timedelta(days=1), ("afinia",))
    assert again.loads_exported == 0 and again.stored == []
