"""A run killed (SIGKILL) between pqr_table and pqr_s3_objects, then rerun, ends in the same
state as an uninterrupted run: rows, history, registry and stored objects."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from ov_assets.devkit import generator
from ov_assets.devkit.servers import postgres_env
from ov_assets_tests.checkpoint_barrier import hold_spec, subprocess_environment
from ov_assets_tests.loadkit import wait_for_file

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
KEY = "2025-10-08|afinia"


def _materialize(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "ov_assets_tests.held_definitions",
            "--select",
            "pqr_records*",
            "--partition",
            KEY,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _state(conninfo: dict[str, Any], data_dir: Path) -> dict[str, object]:
    with psycopg.connect(**conninfo) as conn:
        table = conn.execute(
            "SELECT numero_radicado, hash_registro, procesado_flag, "
            "(SELECT array_agg(e->>'filename' ORDER BY e->>'filename') FROM jsonb_array_elements(archivos_s3_urls) e) "
            "FROM data_general.ov_afinia ORDER BY 1"
        ).fetchall()
        history = conn.execute("SELECT count(*) FROM data_general.ov_afinia_history").fetchall()
        registry = conn.execute(
            "SELECT s3_key, file_hash, upload_status FROM data_general.s3_files_registry ORDER BY 1"
        ).fetchall()
    store = data_dir / "object_store"
    objects = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    return {"table": table, "history": history, "registry": registry, "objects": objects}


def _setup(tmp: Path, conninfo: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    generator.write_day(data_dir, "afinia", dt.date(2025, 10, 8), n=6)
    env = {**subprocess_environment(), **postgres_env(conninfo), "OV_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(tmp)}
    return data_dir, env


def test_killed_between_table_and_objects_then_rerun_equals_uninterrupted(pg_server: Any, tmp_path: Path) -> None:
    ref_db, cut_db = pg_server.create_database(), pg_server.create_database()
    try:
        ref_info, cut_info = pg_server.conninfo(ref_db), pg_server.conninfo(cut_db)
        (tmp_path / "ref").mkdir()
        (tmp_path / "cut").mkdir()
        ref_dir, ref_env = _setup(tmp_path / "ref", ref_info)
        assert _materialize(ref_env).wait(timeout=600) == 0

        cut_dir, cut_env = _setup(tmp_path / "cut", cut_info)
        barriers = tmp_path / "barriers"
        barriers.mkdir()
        proc = _materialize({**cut_env, **hold_spec("archive", barriers)})
        wait_for_file(barriers / "archive.reached", proc, timeout=600)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        killed = _state(cut_info, cut_dir)
        assert killed["table"] and not killed["registry"] and not killed["objects"]  # table done, nothing stored

        assert _materialize(cut_env).wait(timeout=600) == 0
        assert _state(cut_info, cut_dir) == _state(ref_info, ref_dir)
    finally:
        pg_server.drop_database(ref_db)
        pg_server.drop_database(cut_db)
