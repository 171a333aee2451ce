"""Standalone reconciliation checks (``reconciliation_checks_job``): run alone, without
materializing anything, per partition; broken for real in moto's bucket and in PostgreSQL,
failing for that partition only, passing again once repaired."""

from __future__ import annotations

import boto3
import dagster as dg
import pytest

from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.checks import tablewide as checks
from ov_assets.defs.jobs import reconciliation_checks_job
from ov_assets.devkit import generator
from ov_assets_tests.checks_support import DAY_A, connect, key, make_resources, materialize, materialize_range, meta

T = "data_general"
AFINIA, AIRE = key(DAY_A, "afinia"), key(DAY_A, "aire")


def run_reconciliation(
    resources, partition: str | None = None, start: str | None = None, end: str | None = None
) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=pqr_assets, asset_checks=checks.all_checks, jobs=[reconciliation_checks_job], resources=resources
    )
    job = defs.resolve_job_def("reconciliation_checks_job")
    tags = checks.partition_range_tags(start, end) if start else checks.partition_tags(partition)
    result = job.execute_in_process(raise_on_error=False, tags=tags)
    assert result.success
    assert not result.get_asset_materialization_events(), "a checks-only job materializes nothing"
    return result


def verdicts(resources, partition: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {ev.check_name: ev for ev in run_reconciliation(resources, partition).get_asset_check_evaluations()}


@pytest.fixture
def loaded(pg_conninfo18, data_dir, s3_endpoint, s3_bucket):
    generator.write_day(data_dir, "afinia", DAY_A, n=6, broken=False)
    generator.write_day(data_dir, "aire", DAY_A, n=6, broken=False)
    res = make_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    assert materialize_range(res, AFINIA, AIRE).success
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    return res, pg_conninfo18, s3, s3_bucket


def _registered(ci, empresa: str, file_type: str = "pdf") -> tuple[str, str, int]:
    with connect(ci) as conn:
        return conn.execute(
            f"""SELECT s3_key, file_hash, file_size FROM {T}.s3_files_registry
                WHERE empresa = %s AND file_type = %s ORDER BY s3_key LIMIT 1""",
            (empresa, file_type),
        ).fetchone()


def test_both_checks_pass_for_each_partition_and_in_a_range_run(loaded):
    res, *_ = loaded
    for part in (AFINIA, AIRE):
        evs = verdicts(res, part)
        assert set(evs) == {"registry_matches_bucket", "table_rows_registered"}
        assert all(ev.passed for ev in evs.values()), {n: ev.metadata for n, ev in evs.items()}
        assert meta(evs["registry_matches_bucket"], "verified") > 0
        assert meta(evs["table_rows_registered"], "table_rows") > 0
    result = run_reconciliation(res, start=AFINIA, end=AIRE)
    by_part = {(ev.check_name, ev.partition): ev.passed for ev in result.get_asset_check_evaluations()}
    assert by_part == {
        (n, p): True for n in ("registry_matches_bucket", "table_rows_registered") for p in (AFINIA, AIRE, None)
    }


def test_deleted_object_fails_registry_matches_bucket_for_its_partition_only(loaded):
    res, ci, s3, bucket = loaded
    s3_key, _, _ = _registered(ci, "afinia")
    body = s3.get_object(Bucket=bucket, Key=s3_key)["Body"].read()
    s3.delete_object(Bucket=bucket, Key=s3_key)

    ev = verdicts(res, AFINIA)["registry_matches_bucket"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert meta(ev, "failing") == [s3_key] and meta(ev, "mismatched") == 1
    assert "missing" in meta(ev, "problems_table")
    assert verdicts(res, AIRE)["registry_matches_bucket"].passed
    # In a range run: one evaluation per partition, the summary names the failing one.
    result = run_reconciliation(res, start=AFINIA, end=AIRE)
    by_part = {
        ev.partition: ev for ev in result.get_asset_check_evaluations() if ev.check_name == "registry_matches_bucket"
    }
    assert not by_part[AFINIA].passed and by_part[AIRE].passed
    assert not by_part[None].passed and meta(by_part[None], "failing") == [AFINIA]

    s3.put_object(Bucket=bucket, Key=s3_key, Body=body, ChecksumAlgorithm="SHA256")
    assert verdicts(res, AFINIA)["registry_matches_bucket"].passed


def test_tampered_object_fails_until_restored(loaded):
    res, ci, s3, bucket = loaded
    s3_key, _, _size = _registered(ci, "aire")
    body = s3.get_object(Bucket=bucket, Key=s3_key)["Body"].read()
    # Same size, different bytes: only the SHA-256 can tell.
    tampered = bytes([body[0] ^ 0xFF]) + body[1:]
    s3.put_object(Bucket=bucket, Key=s3_key, Body=tampered)
    ev = verdicts(res, AIRE)["registry_matches_bucket"]
    assert not ev.passed and meta(ev, "failing") == [s3_key]
    assert "sha256_differs" in meta(ev, "problems_table")
    assert verdicts(res, AFINIA)["registry_matches_bucket"].passed
    s3.put_object(Bucket=bucket, Key=s3_key, Body=body, ChecksumAlgorithm="SHA256")
    assert verdicts(res, AIRE)["registry_matches_bucket"].passed


def test_registry_rows_left_pending_warn(loaded):
    res, ci, *_ = loaded
    with connect(ci) as conn:
        # the record JSON of a stored (winning) version
        (s3_key,) = conn.execute(
            f"""SELECT r.s3_key FROM {T}.s3_files_registry r JOIN {T}.ov_afinia t
                  ON t.numero_radicado = r.numero_radicado AND t.archivo_origen = r.filename
                WHERE r.empresa = 'afinia' ORDER BY 1 LIMIT 1"""
        ).fetchone()
        conn.execute(f"UPDATE {T}.s3_files_registry SET upload_status = 'pending' WHERE s3_key = %s", (s3_key,))
    evs = verdicts(res, AFINIA)
    ev = evs["registry_matches_bucket"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
    assert meta(ev, "pending_or_error") == 1 and meta(ev, "mismatched") == 0
    # ... and a row whose JSON is not registered as stored is not reconciled with the registry.
    assert not evs["table_rows_registered"].passed
    assert verdicts(res, AIRE)["registry_matches_bucket"].passed
    # Repair the way the hourly verification does: re-materialize pqr_s3_objects for it.
    assert materialize(res, AFINIA, selection=["pqr_s3_objects"]).success
    evs = verdicts(res, AFINIA)
    assert evs["registry_matches_bucket"].passed and evs["table_rows_registered"].passed


def test_table_row_without_registry_row_fails_table_rows_registered(loaded):
    res, ci, *_ = loaded
    with connect(ci) as conn:
        radicado, archivo = conn.execute(
            f"SELECT numero_radicado, archivo_origen FROM {T}.ov_aire ORDER BY 1 LIMIT 1"
        ).fetchone()
        conn.execute(f"DELETE FROM {T}.s3_files_registry WHERE empresa = 'aire' AND filename = %s", (archivo,))
    ev = verdicts(res, AIRE)["table_rows_registered"]
    assert not ev.passed and meta(ev, "failing") == [radicado]
    assert "json_not_registered" in meta(ev, "problems_table")
    assert verdicts(res, AFINIA)["table_rows_registered"].passed
    assert materialize(res, AIRE, selection=["pqr_s3_objects"]).success
    assert verdicts(res, AIRE)["table_rows_registered"].passed


def test_listed_url_with_wrong_sha256_fails_table_rows_registered(loaded):
    res, ci, *_ = loaded
    with connect(ci) as conn:
        radicado, urls = conn.execute(
            f"SELECT numero_radicado, archivos_s3_urls FROM {T}.ov_afinia WHERE jsonb_array_length(archivos_s3_urls) > 1 "
            "ORDER BY 1 LIMIT 1"
        ).fetchone()
        bad = [dict(u, sha256="0" * 64) if i == 1 else u for i, u in enumerate(urls)]
        conn.execute(
            f"UPDATE {T}.ov_afinia SET archivos_s3_urls = %s::jsonb WHERE numero_radicado = %s",
            (__import__("json").dumps(bad), radicado),
        )
    ev = verdicts(res, AFINIA)["table_rows_registered"]
    assert not ev.passed and meta(ev, "failing") == [radicado]
    assert "1_listed_urls_not_registered" in meta(ev, "problems_table")
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_afinia SET archivos_s3_urls = %s::jsonb WHERE numero_radicado = %s",
            (__import__("json").dumps(urls), radicado),
        )
    assert verdicts(res, AFINIA)["table_rows_registered"].passed


def test_partition_without_data_passes_and_reads_nothing_else(loaded):
    res, *_ = loaded
    evs = verdicts(res, key(DAY_A.replace(day=1), "afinia"))
    assert all(ev.passed for ev in evs.values())
    assert meta(evs["registry_matches_bucket"], "registered") == 0
    assert meta(evs["table_rows_registered"], "table_rows") == 0


def test_multipart_object_is_verified_not_trusted_by_its_metadata(loaded):
    """A multipart object's S3 checksum is a composite, so its ``sha256`` metadata is the only
    full-file hash it carries, and anyone writing the object writes that too: an object of the
    same size, other bytes and the registered hash in its metadata fails both checks."""
    from ov_assets.defs.checks.partition import objects_match_bucket

    res, ci, s3, bucket = loaded
    s3_key, sha, size = _registered(ci, "afinia")
    body = s3.get_object(Bucket=bucket, Key=s3_key)["Body"].read()
    forged = bytes([body[0] ^ 0xFF]) + body[1:]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=s3_key, Metadata={"sha256": sha})
    part = s3.upload_part(Bucket=bucket, Key=s3_key, UploadId=upload["UploadId"], PartNumber=1, Body=forged)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=s3_key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=bucket, Key=s3_key)
    assert "-" in head["ETag"] and head["Metadata"]["sha256"] == sha and head["ContentLength"] == size
    ev = verdicts(res, AFINIA)["registry_matches_bucket"]
    assert not ev.passed and meta(ev, "failing") == [s3_key]
    assert "sha256_differs" in meta(ev, "problems_table")
    with connect(ci) as conn:
        assert not objects_match_bucket(conn, res["object_store"].open(), "afinia", DAY_A).passed
