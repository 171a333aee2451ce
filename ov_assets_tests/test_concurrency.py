"""Concurrent loads of the same partition / overlapping ranges, started directly (no Dagster
pools): the database's advisory lock per partition makes them equal to one run, no deadlock."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import (
    days_back,
    landing_frames,
    migrate,
    partitions_of,
    run_together,
    snapshot,
    start_loader,
    wait_for_file,
    wait_until,
    without_audit,
)


def _load(conninfo, frame, parts, run_id):
    out = []
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for day, empresa in parts:
            out.append(loading.load_partition(conn, empresa, day, frame, run_id))
    return out


def _reference(pg_server, frame):
    name = pg_server.create_database()
    try:
        ci = pg_server.conninfo(name)
        migrate(ci)
        _load(ci, frame, partitions_of(frame), "reference")
        return snapshot(ci)
    finally:
        pg_server.drop_database(name)


def test_second_load_waits_for_the_first_then_finds_everything_loaded(pg_conninfo, data_dir, tmp_path):
    frame = landing_frames(data_dir, days_back(1), empresas=("afinia",), n=15)
    migrate(pg_conninfo)
    (part,) = partitions_of(frame)
    winners = frame.filter(pl.col("is_winner")).height
    frame_path = tmp_path / "frame.parquet"
    frame.write_parquet(frame_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    first = start_loader(pg_conninfo, frame_path, [part], barrier="commit", barrier_dir=barrier, run_id="A")
    second = None
    try:
        wait_for_file(barrier / "commit.reached", first)  # A holds the partition lock, uncommitted
        second = start_loader(pg_conninfo, frame_path, [part], run_id="B")

        def b_waits_on_lock() -> bool:
            assert second.poll() is None, second.stderr.read()
            with psycopg.connect(**pg_conninfo) as conn:
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
                ).fetchone()
            return n == 1

        wait_until(b_waits_on_lock, what="second load blocked on the partition's advisory lock")
        (barrier / "commit.release").touch()
        out_a, err_a = first.communicate(timeout=60)
        out_b, err_b = second.communicate(timeout=60)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert first.returncode == 0, err_a
    assert second.returncode == 0, err_b
    assert f'"inserted": {winners}, "updated": 0, "duplicates": 0' in out_a
    assert f'"inserted": 0, "updated": 0, "duplicates": {winners}' in out_b
    with psycopg.connect(**pg_conninfo) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
        (hist,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia_history").fetchone()
    assert (rows, hist) == (winners, 0)


@pytest.mark.parametrize("layout", ["same_partitions", "overlapping_ranges"])
def test_concurrent_loads_equal_one_run(pg_conninfo, pg_server, data_dir, layout):
    days = days_back(3)
    frame = landing_frames(data_dir, days, n=10)
    migrate(pg_conninfo)
    parts = partitions_of(frame)
    if layout == "same_partitions":
        plans = [parts, list(reversed(parts)), parts]
    else:
        plans = [
            [p for p in parts if p[0] in days[:2]],
            [p for p in reversed(parts) if p[0] in days[1:]],
            [p for p in parts if p[0] in (days[0], days[2])],
        ]
    run_together([lambda plan=plan, i=i: _load(pg_conninfo, frame, plan, f"worker{i}") for i, plan in enumerate(plans)])
    # Server-independent reference: one plain run on the embedded server.
    assert without_audit(snapshot(pg_conninfo)) == without_audit(_reference(pg_server, frame))
    with psycopg.connect(**pg_conninfo) as conn:
        (inserted,) = conn.execute("SELECT sum(db_inserted) FROM data_general.ov_load_audit").fetchone()
    assert inserted == frame.filter(pl.col("is_winner")).height  # each row inserted exactly once
