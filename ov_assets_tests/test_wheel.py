"""ov-assets installs as a wheel: the SQL migrations and the AWS files are package data, so a
non-editable install migrates a database and runs the demo.

The wheel is built (``pip wheel --no-deps``) from a copy of the sources (nothing is written
into the checkout) and installed into a fresh venv that sees the project venv's
site-packages only for the dependencies, through a ``.pth`` line: that line adds a path but
does not run the ``.pth`` files found there, so the project's editable install of ov_assets is
not loaded and cannot shadow the wheel (asserted below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import psycopg

from ov_assets.devkit.servers import postgres_env

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _build_wheel(work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "ov_assets", src / "ov_assets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(src)], cwd=work)
    (wheel,) = (work / "dist").glob("ov_assets-*.whl")
    return wheel


def _venv_with(wheel: Path, work: Path) -> Path:
    """A fresh venv holding the wheel; the dependencies come from this venv's site-packages."""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).strip()
    )
    (purelib / "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=work,
    )
    return venv


def test_wheel_installs_migrates_and_runs_the_demo(tmp_path: Path, pg_conninfo18: dict[str, Any]) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    sql_files = sorted(p.name for p in (REPO / "ov_assets" / "warehouse" / "sql").glob("*.sql"))
    assert sorted(Path(n).name for n in names if n.startswith("ov_assets/warehouse/sql/")) == sql_files
    assert "ov_assets/objects/aws/iam-policy-runtime.json" in names
    assert not any(n.startswith("ov_assets_tests/") for n in names)

    venv = _venv_with(wheel, tmp_path)
    run_dir = tmp_path / "elsewhere"  # not the checkout: its ov_assets/ must not be on sys.path
    run_dir.mkdir()
    data_dir = tmp_path / "ov-data"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME", "OV_DATA_DIR")}
    env |= postgres_env(pg_conninfo18) | {"OV_DATA_DIR": str(data_dir)}
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import ov_assets, ov_assets.warehouse.migrations as m; print(ov_assets.__file__); print(m.SQL_DIR)",
        ],
        cwd=run_dir,
        env=env,
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where

    ov_assets = str(venv / "bin" / "ov-assets")
    migrated = _run([ov_assets, "migrate"], cwd=run_dir, env=env)
    assert "applied 001_schema" in migrated
    with psycopg.connect(**pg_conninfo18) as conn:
        applied = [v for (v,) in conn.execute("SELECT version FROM public.schema_migrations ORDER BY 1")]
    # every file the wheel ships, then the data dictionary's comments (a repeatable step)
    assert applied == [*(Path(f).stem for f in sql_files), "R_data_dictionary"]
    assert "up to date" in _run([ov_assets, "migrate"], cwd=run_dir, env=env)

    demo = _run([ov_assets, "demo", "--days", "1", "--per-day", "2"], cwd=run_dir, env=env, timeout=900)
    assert "data_general.ov_afinia: 2 rows (2 with all files archived)" in demo
    assert "data_general.ov_aire: 2 rows (2 with all files archived)" in demo
    with psycopg.connect(**pg_conninfo18) as conn:
        (rows,) = conn.execute(
            "SELECT (SELECT count(*) FROM data_general.ov_afinia) + (SELECT count(*) FROM data_general.ov_aire)"
        ).fetchone()
        (uploaded,) = conn.execute(
            "SELECT count(*) FROM data_general.s3_files_registry WHERE upload_status IN ('uploaded', 'pre_existing')"
        ).fetchone()
    assert rows == 4 and uploaded >= 8  # a JSON and a PDF at least per PQR
    assert any((data_dir / "object_store").rglob("*.json"))
    assert (data_dir / "dagster_home").is_dir()  # the demo's runs, for dagster dev on the same data
