"""The whole graph on real components: PostgreSQL (embedded 18 and Debian 15) and moto's S3
server over HTTP. What issue 2 promises an operator."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
import unicodedata
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg
import pytest

from ov_assets.core.file_names import landing_dir
from ov_assets.defs.assets import pqr_assets
from ov_assets.devkit import generator
from ov_assets_tests.support import event_log_text, leaked, personal_search_terms, pipeline_resources

DAY = dt.date(2025, 10, 8)
KEY = "2025-10-08|afinia"
FIELDS = (
    "nic",
    "fecha",
    "documento_identidad",
    "nombres_apellidos",
    "lectura",
    "correo_electronico",
    "telefono",
    "celular",
    "tipo_pqr",
    "canal_respuesta",
    "documento_prueba",
    "cuerpo_reclamacion",
    "numero_radicado",
    "estado_solicitud",
    "finalizar",
    "adjuntar_archivo",
    "numero_reclamo_sgc",
    "comentarios",
)


def run(resources: dict[str, Any], key: str = KEY, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInJobResult:
    result = dg.materialize(pqr_assets, resources=resources, partition_key=key, instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def query(conninfo: dict[str, Any], sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(**conninfo) as conn:
        return conn.execute(sql, params).fetchall()


def bucket_objects(endpoint: str, bucket: str) -> dict[str, dict[str, Any]]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            head = s3.head_object(Bucket=bucket, Key=obj["Key"])
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"]] = {
                "etag": head["ETag"],
                "modified": head["LastModified"],
                "sha256": hashlib.sha256(body).hexdigest(),
                "size": len(body),
                "sse": head.get("ServerSideEncryption"),
                "meta": head.get("Metadata", {}),
            }
    return out


def snapshot(conninfo: dict[str, Any]) -> dict[str, list[tuple]]:
    return {
        "table": query(
            conninfo,
            "SELECT numero_radicado, hash_registro, updated_at, archivos_s3_urls::text, "
            "procesado_flag FROM data_general.ov_afinia ORDER BY 1",
        ),
        "history": query(conninfo, "SELECT * FROM data_general.ov_afinia_history ORDER BY 1"),
        "registry": query(
            conninfo,
            "SELECT s3_key, file_hash, upload_status, updated_at, attempts "
            "FROM data_general.s3_files_registry ORDER BY 1",
        ),
    }


def reference_hash(record: dict[str, Any]) -> str:
    """CONTRACT §4, written here from the contract alone (imports nothing of ov_assets)."""
    values = []
    for name in FIELDS:
        value = "" if record.get(name) is None else str(record[name])
        value = " ".join(unicodedata.normalize("NFC", value).split())
        if name == "fecha":
            value = dt.datetime.strptime(value, "%Y/%m/%d %H:%M").strftime("%Y-%m-%dT%H:%M:%S")
        values.append(value)
    return hashlib.sha256("\x1f".join(values).encode("utf-8")).hexdigest()


def test_full_partition_run_is_correct_and_idempotent(
    pg_conninfo: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    gen = generator.write_day(data_dir, "afinia", DAY, n=12)
    generator.write_day(data_dir, "afinia", DAY + dt.timedelta(days=1), n=3, broken=False)  # another partition
    resources = pipeline_resources(pg_conninfo, data_dir, s3_bucket, s3_endpoint)
    result = run(resources)

    # One row per radicado, holding the latest version's hash (the reference, not our code).
    latest: dict[str, dict[str, Any]] = {}
    for record in gen.records:  # versions are written oldest first
        latest[record["numero_radicado"]] = record
    rows = dict(query(pg_conninfo, "SELECT numero_radicado, hash_registro FROM data_general.ov_afinia"))
    assert rows == {r: reference_hash(rec) for r, rec in latest.items()}
    assert query(pg_conninfo, "SELECT count(*) FROM data_general.ov_afinia_history") == [(0,)]

    # Broken files are kept as rejects with their reason; the rest loaded.
    rejects = dict(query(pg_conninfo, "SELECT file_name, reason_code FROM data_general.ov_rejects"))
    assert rejects == gen.broken

    # Every valid version's files are in the bucket byte for byte, encrypted, and registered.
    objects = bucket_objects(s3_endpoint, s3_bucket)
    registry = query(
        pg_conninfo,
        "SELECT s3_key, file_hash, file_size, upload_status, s3_url, empresa, "
        "numero_radicado FROM data_general.s3_files_registry",
    )
    assert {r[0] for r in registry} == set(objects)
    for key, sha, size, status, url, _empresa, radicado in registry:
        assert status == "uploaded"
        assert objects[key]["sha256"] == sha and objects[key]["size"] == size
        assert objects[key]["sse"] == "AES256"
        assert objects[key]["meta"]["sha256"] == sha and objects[key]["meta"]["numero_radicado"] == radicado
        assert url == f"s3://{s3_bucket}/{key}" and key.startswith("oficina-virtual/afinia/2025/10/08/")
    landing_files = {p.name for p in landing_dir(data_dir, "afinia").iterdir()} - set(gen.broken)
    day_files = {p.name for p in gen.files} - set(gen.broken)
    assert {k.rsplit("/", 1)[1] for k in objects} == day_files
    assert day_files < landing_files  # the other day's files were not archived with this partition
    assert query(pg_conninfo, "SELECT bool_and(procesado_flag) FROM data_general.ov_afinia") == [(True,)]

    mat = result.asset_materializations_for_node("pqr_table")[0]
    assert mat.metadata["db_inserted"].value == len(latest)
    # Its row count is the table's rows of the partition (one per radicado), not the versions.
    assert mat.metadata["dagster/row_count"].value == len(latest) < mat.metadata["records_valid"].value

    # The consolidated dataset of the partition (CSV and Parquet) holds exactly the table's rows.
    import polars as pl

    processed = data_dir / "processed"
    assert {p.name for p in processed.iterdir()} >= {
        "afinia_consolidated_20251008.csv",
        "afinia_consolidated_20251008.parquet",
        "afinia_rejects_20251008.csv",
    }
    assert not [p for p in processed.iterdir() if p.name.endswith(".part")]  # no temporary file left
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in processed.iterdir()), "reports are owner-only"
    csv = pl.read_csv(processed / "afinia_consolidated_20251008.csv", infer_schema=False)
    parquet = pl.read_parquet(processed / "afinia_consolidated_20251008.parquet")
    for frame in (csv, parquet):
        assert dict(frame.select("numero_radicado", "hash_registro").iter_rows()) == rows
    table_names = dict(query(pg_conninfo, "SELECT numero_radicado, nombres_apellidos FROM data_general.ov_afinia"))
    assert dict(csv.select("numero_radicado", "nombres_apellidos").iter_rows()) == table_names

    before = snapshot(pg_conninfo)
    rerun = run(resources)
    assert snapshot(pg_conninfo) == before
    assert bucket_objects(s3_endpoint, s3_bucket) == objects
    mat = rerun.asset_materializations_for_node("pqr_table")[0]
    assert (
        mat.metadata["db_inserted"].value,
        mat.metadata["db_updated"].value,
        mat.metadata["db_duplicates"].value,
    ) == (0, 0, len(latest))
    assert mat.metadata["dagster/row_count"].value == len(latest)
    assert query(pg_conninfo, "SELECT count(*) FROM data_general.ov_load_audit") == [(2,)]
    seen = query(pg_conninfo, "SELECT bool_and(last_seen_at > first_seen_at) FROM data_general.ov_rejects")
    assert seen == [(True,)]


def _record_with(day: dt.date, **changes: str) -> dict[str, Any]:
    return dict(generator.fake_pqr("afinia", day, 1), **changes)


def test_later_version_updates_row_and_writes_one_history_row(pg_conninfo: dict[str, Any], data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True)
    first = _record_with(DAY, estado_solicitud="En trámite")
    generator.write_record_files(folder, first, dt.datetime(2025, 10, 8, 12, 0), 1)
    resources = pipeline_resources(pg_conninfo, data_dir)
    run(resources)
    second = dict(first, estado_solicitud="Finalizado")
    generator.write_record_files(folder, second, dt.datetime(2025, 10, 9, 8, 0), 1)
    result = run(resources)

    mat = result.asset_materializations_for_node("pqr_table")[0]
    assert mat.metadata["db_updated"].value == 1
    (row,) = query(pg_conninfo, "SELECT hash_registro, estado_solicitud, fecha_extraccion FROM data_general.ov_afinia")
    assert row == (reference_hash(second), "Finalizado", dt.datetime(2025, 10, 9, 8, 0))
    history = query(
        pg_conninfo, "SELECT hash_registro, estado_solicitud, replaced_by_run FROM data_general.ov_afinia_history"
    )
    assert history == [(reference_hash(first), "En trámite", result.run_id)]
    # The local object store holds both versions' files, the row lists the winner's.
    (urls,) = query(pg_conninfo, "SELECT archivos_s3_urls FROM data_general.ov_afinia")[0]
    assert all(u["s3_url"].startswith("file://") for u in urls)
    assert any(u["filename"].endswith("20251009_080000.json") for u in urls)


def test_older_extraction_never_replaces_a_newer_row(pg_conninfo: dict[str, Any], data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True)
    newer = _record_with(DAY, estado_solicitud="Finalizado")
    newer_files = generator.write_record_files(folder, newer, dt.datetime(2025, 10, 9, 8, 0), 1)
    resources = pipeline_resources(pg_conninfo, data_dir)
    run(resources)
    for path in newer_files:  # the newer version leaves the landing folder (e.g. cleaned up)
        path.unlink()
    older = dict(newer, estado_solicitud="Radicado")
    generator.write_record_files(folder, older, dt.datetime(2025, 10, 8, 12, 0), 1)
    result = run(resources)

    mat = result.asset_materializations_for_node("pqr_table")[0]
    assert (mat.metadata["db_updated"].value, mat.metadata["db_skipped_older"].value) == (0, 1)
    assert query(pg_conninfo, "SELECT hash_registro, estado_solicitud FROM data_general.ov_afinia") == [
        (reference_hash(newer), "Finalizado")
    ]
    assert query(pg_conninfo, "SELECT count(*) FROM data_general.ov_afinia_history") == [(0,)]


def test_production_refuses_every_fallback(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    from ov_assets.defs.resources import resources_from_env
    from ov_assets.errors import ConfigurationError

    monkeypatch.setenv("OV_ENV", "production")
    resources = resources_from_env()
    with pytest.raises(ConfigurationError, match="POSTGRES_HOST"):
        resources["postgres"].conninfo()
    with pytest.raises(ConfigurationError, match="AWS_S3_BUCKET_NAME"):
        resources["object_store"].open()
    with pytest.raises(ConfigurationError, match="OV_AFINIA_PORTAL_URL, OV_AFINIA_USER, OV_AFINIA_PASSWORD"):
        resources["portal"].uses_replica("afinia")
    assert not (data_dir / "postgres").exists() and not (data_dir / "object_store").exists()

    # Through Dagster: extraction refuses the replica portal; the load refuses the embedded
    # database even when the landing folder already holds files.
    generator.write_day(data_dir, "afinia", DAY, n=2, broken=False)
    for selection, variable in (("raw_pqr_files", "OV_AFINIA_PORTAL_URL"), ("pqr_records*", "POSTGRES_HOST")):
        result = dg.materialize(
            pqr_assets, resources=resources, partition_key=KEY, selection=selection, raise_on_error=False
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert variable in str(failure.step_failure_data.error)
    assert not (data_dir / "postgres").exists() and not (data_dir / "object_store").exists()


def test_no_personal_data_in_logs_or_metadata(
    pg_conninfo: dict[str, Any], data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    gen = generator.write_day(data_dir, "afinia", DAY, n=10)
    gen2 = generator.write_day(data_dir, "afinia", DAY, n=10, seed=7)  # more, different people
    terms = personal_search_terms(gen.records + gen2.records)
    assert len(terms) > 50 and any(not v.isascii() for v in terms)
    resources = pipeline_resources(pg_conninfo, data_dir)
    with dg.instance_for_test() as instance:
        run(resources, instance=instance)
        run(resources, instance=instance)
        assert len(instance.get_runs()) == 2
        text = event_log_text(instance)
    out, err = capfd.readouterr()
    text += out + err
    assert "pqr_table" in text and "db_inserted" in text  # the search looks at real output
    assert leaked(text, terms) == []
