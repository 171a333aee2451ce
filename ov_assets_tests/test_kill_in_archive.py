"""A run killed (SIGKILL) in the middle of ``pqr_s3_objects`` (objects stored, their registry
rows still ``pending``), then rerun, ends as an uninterrupted run does: the bot's own uploads
stay the bot's ``uploaded`` (never ``pre_existing``), every object is there with its bytes,
nothing is lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ov_assets_tests.checkpoint_barrier import hold_spec
from ov_assets_tests.loadkit import wait_for_file
from ov_assets_tests.test_kill_between_assets import _materialize, _setup


def _state(conninfo: dict[str, Any], data_dir: Path, bucket: str | None, endpoint: str) -> dict[str, object]:
    from ov_assets_tests.archive_support import client

    with psycopg.connect(**conninfo) as conn:
        registry = conn.execute(
            "SELECT s3_key, file_hash, upload_status, upload_source, attempts, last_error "
            "FROM data_general.s3_files_registry ORDER BY 1"
        ).fetchall()
        table = conn.execute(
            "SELECT numero_radicado, procesado_flag, archivos_s3_urls IS NOT NULL "
            "FROM data_general.ov_afinia ORDER BY 1"
        ).fetchall()
    if bucket:
        c = client(endpoint)
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])]
        objects = {k: c.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    else:
        store = data_dir / "object_store"
        objects = {
            str(p.relative_to(store)): p.read_bytes()
            for p in store.rglob("*")
            if p.is_file() and not p.name.endswith(".part")
        }  # (a killed writer's temporary file)
    return {"registry": registry, "table": table, "objects": objects}


@pytest.mark.parametrize("where", ["s3", "local"])
def test_killed_in_the_middle_of_the_uploads_then_rerun_equals_uninterrupted(
    where: str, pg_server: Any, tmp_path: Path, s3_endpoint: str
) -> None:
    from ov_assets_tests.archive_support import client

    ref_db, cut_db = pg_server.create_database(), pg_server.create_database()
    buckets = {"ref": "", "cut": ""}
    try:
        envs = {}
        for name, db in (("ref", ref_db), ("cut", cut_db)):
            (tmp_path / name).mkdir()
            data_dir, env = _setup(tmp_path / name, pg_server.conninfo(db))
            if where == "s3":
                buckets[name] = f"ov-kill-{name}-{os.getpid()}"
                client(s3_endpoint).create_bucket(Bucket=buckets[name])
                env.update(AWS_S3_BUCKET_NAME=buckets[name], AWS_ENDPOINT_URL=s3_endpoint, AWS_REGION="us-east-1")
            envs[name] = (data_dir, env, pg_server.conninfo(db))
        ref_dir, ref_env, ref_info = envs["ref"]
        assert _materialize(ref_env).wait(timeout=600) == 0

        cut_dir, cut_env, cut_info = envs["cut"]
        barriers = tmp_path / "barriers"
        barriers.mkdir()
        proc = _materialize({**cut_env, **hold_spec("s3_put", barriers)})
        wait_for_file(barriers / "s3_put.reached", proc, timeout=600)  # an object is stored
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        killed = _state(cut_info, cut_dir, buckets["cut"], s3_endpoint)
        assert killed["objects"], "killed after a put: something is stored"
        assert {r[2] for r in killed["registry"]} == {"pending"}  # and nothing recorded yet

        assert _materialize(cut_env).wait(timeout=600) == 0
        after = _state(cut_info, cut_dir, buckets["cut"], s3_endpoint)
        assert {(r[2], r[3]) for r in after["registry"]} == {("uploaded", "bot")}
        assert after == _state(ref_info, ref_dir, buckets["ref"], s3_endpoint)
    finally:
        pg_server.drop_database(ref_db)
        pg_server.drop_database(cut_db)
