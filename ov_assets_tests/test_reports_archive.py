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

from ov_assets import generator
from ov_assets.assets import pqr_assets
from ov_assets.jobs import reports_archive_job
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
    assert {"afinia_consolidated_20251008.csv", "afinia_consolidated_20251008.parquet",
            "afinia_rejects_20251008.csv"} <= names
    assert any("audit" in n for n in names)
    local = data_dir / "processed" / "afinia_consolidated_20251008.csv"
    body = s3.get_object(Bucket=s3_bucket, Key=prefix + local.name)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(local.read_bytes()).hexdigest()
    modified = {o["Key"]: o["LastModified"] for o in listed}

    assert reports_archive_job.execute_in_process(resources=resources, run_config=run_config).success
    again = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])
    assert {o["Key"]: o["LastModified"] for o in again} == modified
