"""How operators reach the graph: `dagster dev` from the repo root, `dagster asset materialize`,
`dagster definitions validate`, and the README's demo command."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import psycopg

from ov_assets.devkit import generator
from ov_assets.devkit.servers import graphql, postgres_env, run_dagster_dev

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
ASSETS = {"raw_pqr_files", "pqr_records", "pqr_table", "pqr_s3_objects"}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_definitions_validate() -> None:
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "ov_assets.definitions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.lower()


def test_dagster_dev_serves_the_four_partitioned_assets(tmp_path: Path, data_dir: Path) -> None:
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "OV_DATA_DIR": str(data_dir)}
    Path(env["DAGSTER_HOME"]).mkdir()
    with run_dagster_dev(REPO, env=env) as url:
        data = graphql(
            url,
            """{ assetNodes { assetKey { path } isPartitioned
                                  partitionKeysByDimension { name partitionKeys } } }""",
        )
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert set(nodes) >= ASSETS
        for name in ASSETS:
            dims = {d["name"]: d["partitionKeys"] for d in nodes[name]["partitionKeysByDimension"]}
            assert nodes[name]["isPartitioned"]
            assert dims["empresa"] == ["afinia", "aire"]
            assert dims["date"][0] == "2020-10-01"
            # today's partition exists during the day (Bogotá)
            from ov_assets.core.contract import today_bogota

            assert dims["date"][-1] == today_bogota().isoformat()


def test_cli_materialize_loads_into_external_postgres_and_s3(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    day = dt.date(2025, 10, 8)
    gen = generator.write_day(data_dir, "afinia", day, n=5)
    env = _env(
        **postgres_env(pg_conninfo18),
        AWS_S3_BUCKET_NAME=s3_bucket,
        AWS_ENDPOINT_URL=s3_endpoint,
        AWS_REGION="us-east-1",
        OV_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(tmp_path),
    )
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
            "2025-10-08|afinia",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with psycopg.connect(**pg_conninfo18) as conn:
        radicados = {r for (r,) in conn.execute("SELECT numero_radicado FROM data_general.ov_afinia")}
        registry = dict(conn.execute("SELECT s3_key, file_hash FROM data_general.s3_files_registry"))
    assert radicados == gen.radicados
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for key, sha in registry.items():
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha
    assert len(registry) >= 2 * len(gen.radicados)  # at least a JSON and a PDF each
    assert not (data_dir / "postgres").exists() and not (data_dir / "object_store").exists()


def test_demo_command_runs_and_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(OV_DATA_DIR=str(data))
    env.pop("DAGSTER_HOME", None)
    cmd = [str(Path(sys.executable).with_name("ov-assets")), "demo", "--days", "2", "--per-day", "4"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # The PQRs were extracted from the replica portal by the scraper (4 a day, 2 days), the
    # broken files dropped beside them were rejected, and everything else loaded.
    assert "data_general.ov_afinia: 8 rows (8 with all files archived)" in first.stdout
    assert "data_general.ov_aire: 8 rows (8 with all files archived)" in first.stdout
    assert "ov_rejects: 16" in first.stdout
    landed = [
        json.loads(p.read_text())
        for p in (data / "downloads" / "afinia").rglob("*_data_*.json")
        if not p.name.startswith("ROTO")
    ]
    assert len(landed) == 8 and all(r["page_url"].startswith("http://127.0.0.1:") for r in landed)
    assert (data / "dagster_home").is_dir()
    stored = sorted(p.relative_to(data) for p in (data / "object_store").rglob("*") if p.is_file())
    assert stored

    from ov_assets.defs.resources.postgres import PostgresResource

    pg = PostgresResource(data_dir=str(data))

    def state() -> list[tuple]:
        with pg.connect() as conn:
            return (
                conn.execute(
                    "SELECT numero_radicado, hash_registro, updated_at FROM data_general.ov_afinia "
                    "UNION ALL SELECT numero_radicado, hash_registro, updated_at FROM data_general.ov_aire ORDER BY 1"
                ).fetchall()
                + conn.execute(
                    "SELECT s3_key, file_hash, updated_at FROM data_general.s3_files_registry ORDER BY 1"
                ).fetchall()
            )

    before = state()
    assert len(before) > 8
    # Registry rows match the objects in the local store.
    keys = {r[0] for r in before if "/" in r[0]}
    assert keys == {str(p).removeprefix("object_store/") for p in stored}
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert state() == before
    assert sorted(p.relative_to(data) for p in (data / "object_store").rglob("*") if p.is_file()) == stored


def test_loading_the_definitions_prints_no_framework_warning() -> None:
    """Every command, run and code server loads the definitions: Dagster's preview/beta warnings
    about our own (deliberate) choices must not reach the operator's terminal."""
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import ov_assets.definitions"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert out.stderr.strip() == "", out.stderr
