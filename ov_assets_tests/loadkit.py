"""Helpers for the PostgreSQL load tests: frames from generated landing files, resources for a
test database, a comparable snapshot of every table the load writes, and a loader subprocess
that can be held at a checkpoint (``checkpoint_barrier``) and killed."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.devkit.generator import write_day
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets_tests.checkpoint_barrier import hold_spec, subprocess_environment

EMPRESAS = ("afinia", "aire")


# The fixed "today" of the load tests: their data is a function of the days they name, never of
# the date the suite runs on.
TODAY = dt.date(2025, 10, 20)


def days_back(n: int, start: int = 2) -> list[dt.date]:
    """``n`` consecutive past days (oldest first), ending ``start`` days before ``TODAY``."""
    return [TODAY - dt.timedelta(days=start + n - 1 - i) for i in range(n)]


def landing_frames(data_dir: Path, days: list[dt.date], empresas=EMPRESAS, n: int = 12, seed: int = 0) -> pl.DataFrame:
    """Write generated landing files for days x empresas and return what pqr_records builds."""
    for day in days:
        for empresa in empresas:
            write_day(data_dir, empresa, day, n=n, seed=seed)
    index = LandingIndex(data_dir)
    frames = []
    for empresa in empresas:
        index.refresh(empresa, TODAY)
        frames += [partition_frame(index, empresa, day, TODAY) for day in days]
    return pl.concat(frames)


def resource(conninfo: Mapping[str, Any], **kw: Any) -> PostgresResource:
    return PostgresResource(
        host=str(conninfo["host"]),
        port=int(conninfo["port"]),
        dbname=str(conninfo["dbname"]),
        user=str(conninfo["user"]),
        password=str(conninfo.get("password") or ""),
        **kw,
    )


@contextmanager
def login_roles(conninfo: Mapping[str, Any], *groups: str) -> Iterator[dict[str, dict[str, Any]]]:
    """One login user per group role (e.g. ``ov_loader``), with a random password (the test
    servers trust local connections; TCP needs it): group -> its conninfo. Dropped afterwards."""
    suffix, pw = uuid.uuid4().hex[:8], uuid.uuid4().hex
    names = {group: f"{group}_test_{suffix}" for group in groups}
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for group, name in names.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(name), sql.Literal(pw), sql.Identifier(group)
                )
            )
    try:
        yield {group: {**conninfo, "user": name, "password": pw} for group, name in names.items()}
    finally:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
                (list(names.values()),),
            )
            for name in names.values():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def migrate(conninfo: Mapping[str, Any]) -> None:
    from ov_assets.warehouse import migrations

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        migrations.apply_all(conn)


def partitions_of(frame: pl.DataFrame) -> list[tuple[dt.date, str]]:
    return sorted(set(frame.select("partition_date", "empresa").iter_rows()))


def partition_keys(frame: pl.DataFrame) -> list[tuple[str, dt.date]]:
    """(empresa, day) of every partition of ``frame``: what ``loading.load_partitions`` takes."""
    return [(empresa, day) for day, empresa in partitions_of(frame)]


_ROW_COLS = (
    *BUSINESS_FIELDS,
    "hash_registro",
    "fecha_extraccion",
    "archivo_origen",
    "warnings",
    "archivos_s3_urls",
    "procesado_flag",
)


def snapshot(conninfo: Mapping[str, Any]) -> dict[str, list[tuple]]:
    """Every row the load writes, without generated ids and timestamps, sorted."""
    cols = ", ".join(_ROW_COLS)
    out: dict[str, list[tuple]] = {}
    with psycopg.connect(**conninfo) as conn:
        for empresa in EMPRESAS:
            out[f"ov_{empresa}"] = conn.execute(
                f"SELECT {cols} FROM data_general.ov_{empresa} ORDER BY numero_radicado"
            ).fetchall()
            out[f"ov_{empresa}_history"] = conn.execute(
                f"SELECT {cols} FROM data_general.ov_{empresa}_history ORDER BY numero_radicado, hash_registro"
            ).fetchall()
        out["ov_rejects"] = conn.execute(
            "SELECT empresa, partition_date, file_name, file_sha256, numero_radicado, reason_code, detail "
            "FROM data_general.ov_rejects ORDER BY 1, 2, 3, 6"
        ).fetchall()
        out["audit"] = conn.execute(
            "SELECT empresa, partition_date, count(*) FROM data_general.ov_load_audit GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    return out


def without_audit(snap: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    return {k: v for k, v in snap.items() if k != "audit"}


# --- a loader in its own process ------------------------------------------------------------

_LOADER = r"""
import datetime as dt, json, sys
import polars as pl, psycopg
from ov_assets.warehouse import loading
from ov_assets_tests.checkpoint_barrier import hold_from_environment
hold_from_environment()
args = json.loads(sys.argv[1])
frame = pl.read_parquet(args["frame"])
with psycopg.connect(**args["conninfo"], autocommit=True) as conn:
    for day, empresa in args["partitions"]:
        c = loading.load_partition(conn, empresa, dt.date.fromisoformat(day), frame, args["run_id"])
        print(json.dumps({"day": day, "empresa": empresa, "inserted": c.db_inserted, "updated": c.db_updated,
                          "duplicates": c.db_duplicates}), flush=True)
"""


def start_loader(
    conninfo: Mapping[str, Any],
    frame_path: Path,
    partitions: list[tuple[dt.date, str]],
    barrier: str | None = None,
    barrier_dir: Path | None = None,
    run_id: str = "subprocess",
) -> subprocess.Popen:
    env = subprocess_environment()
    if barrier:
        assert barrier_dir is not None
        env.update(hold_spec(barrier, barrier_dir))
    args = {
        "conninfo": dict(conninfo),
        "frame": str(frame_path),
        "run_id": run_id,
        "partitions": [(d.isoformat(), e) for d, e in partitions],
    }
    return subprocess.Popen(
        [sys.executable, "-c", _LOADER, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists (the loader reached its barrier); fail if the loader died."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"loader exited ({proc.returncode}) before {path.name}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} not created within {timeout}s")
        time.sleep(0.01)


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.02)


def run_together(loads: list[Callable[[], object]], timeout: float = 120.0) -> None:
    """Start every load at the same instant, each in its own thread; fail if one hangs (a
    deadlock) or raises."""
    start = threading.Barrier(len(loads))
    errors: list[BaseException] = []

    def worker(load: Callable[[], object]) -> None:
        try:
            start.wait(timeout=30)
            load()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(load,)) for load in loads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a load hung (deadlock?)"
    assert not errors, errors
