"""The PostgreSQL load (issue 4) against real servers (embedded 18 and Debian 15): counts,
idempotency, history, older versions, dry run, kill -9 at barriers, range runs."""

from __future__ import annotations

import os
import signal

import polars as pl
import psycopg
import pytest

from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import (
    days_back,
    landing_frames,
    migrate,
    partitions_of,
    snapshot,
    start_loader,
    wait_for_file,
    without_audit,
)


def _load_all(conninfo, frame, run_id="run", dry_run=False):
    total = loading.LoadCounts()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for day, empresa in partitions_of(frame):
            total = total.add(loading.load_partition(conn, empresa, day, frame, run_id, dry_run=dry_run))
    return total


@pytest.fixture
def frame(data_dir):
    return landing_frames(data_dir, days_back(2), n=12)


def test_first_load_then_reload_is_idempotent(pg_conninfo, frame):
    migrate(pg_conninfo)
    winners = frame.filter(pl.col("is_winner")).height
    first = _load_all(pg_conninfo, frame)
    assert (first.db_inserted, first.db_updated, first.db_duplicates) == (winners, 0, 0)
    assert first.rejected == frame.filter(pl.col("status") == "rejected").height > 0
    before = snapshot(pg_conninfo)
    assert sum(len(before[f"ov_{e}"]) for e in ("afinia", "aire")) == winners
    assert before["ov_afinia_history"] == before["ov_aire_history"] == []

    again = _load_all(pg_conninfo, frame, run_id="run2")
    assert (again.db_inserted, again.db_updated, again.db_duplicates) == (0, 0, winners)
    after = snapshot(pg_conninfo)
    assert without_audit(after) == without_audit(before)
    assert all(n == 2 for *_, n in after["audit"])  # one audit row per partition and run
    with psycopg.connect(**pg_conninfo) as conn:
        (moved,) = conn.execute(
            "SELECT count(*) FROM data_general.ov_rejects WHERE last_seen_at > first_seen_at"
        ).fetchone()
        assert moved == len(after["ov_rejects"])
        audit = conn.execute(
            "SELECT sum(db_inserted), sum(db_duplicates) FROM data_general.ov_load_audit WHERE run_id = 'run2'"
        ).fetchone()
        assert audit == (0, winners)


def test_newer_version_updates_with_history_older_never_wins(pg_conninfo, frame):
    migrate(pg_conninfo)
    _load_all(pg_conninfo, frame)
    day, empresa = partitions_of(frame)[0]
    part = frame.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa) & pl.col("is_winner"))
    target = part.row(0, named=True)

    def version(estado: str, minutes: int, name: str) -> pl.DataFrame:
        return part.head(1).with_columns(
            pl.lit(estado).alias("estado_solicitud"),
            pl.lit("h" * 60 + name[-9:-5]).alias("hash_registro"),
            (pl.col("fecha_extraccion") + pl.duration(minutes=minutes)).alias("fecha_extraccion"),
            pl.lit(name).alias("file_name"),
        )

    newer = version("Anulado", 60, "ZZ_data_newer_0001.json")
    c = _load_all(pg_conninfo, newer, run_id="newer")
    assert (c.db_inserted, c.db_updated, c.db_duplicates) == (0, 1, 0)
    older = version("Reabierto", -600, "AA_data_older_0002.json")
    c = _load_all(pg_conninfo, older, run_id="older")
    assert (c.db_updated, c.db_skipped_older) == (0, 1)
    with psycopg.connect(**pg_conninfo) as conn:
        cur = conn.execute(
            f"SELECT estado_solicitud, archivo_origen FROM data_general.ov_{empresa} WHERE numero_radicado = %s",
            (target["numero_radicado"],),
        ).fetchone()
        assert cur == ("Anulado", "ZZ_data_newer_0001.json")
        hist = conn.execute(
            f"SELECT estado_solicitud, archivo_origen, replaced_by_run FROM data_general.ov_{empresa}_history "
            "WHERE numero_radicado = %s",
            (target["numero_radicado"],),
        ).fetchall()
        assert hist == [(target["estado_solicitud"], target["file_name"], "newer")]


def test_dry_run_writes_nothing_and_reports_counts(pg_conninfo, frame):
    migrate(pg_conninfo)
    first_day = frame.filter(pl.col("partition_date") == frame["partition_date"].min())
    _load_all(pg_conninfo, first_day)
    before = snapshot(pg_conninfo)
    dry = _load_all(pg_conninfo, frame, dry_run=True)
    assert snapshot(pg_conninfo) == before  # not even an audit row
    real = _load_all(pg_conninfo, frame)
    assert (dry.db_inserted, dry.db_updated, dry.db_duplicates) == (
        real.db_inserted,
        real.db_updated,
        real.db_duplicates,
    )
    assert dry.db_inserted > 0 and dry.db_duplicates > 0


def test_range_equals_single_partitions(pg_server, data_dir):
    """3 days x 2 empresas in one call sequence vs one partition at a time in another order."""
    frame = landing_frames(data_dir, days_back(3), n=8)
    a, b = pg_server.create_database(), pg_server.create_database()
    try:
        ca, cb = pg_server.conninfo(a), pg_server.conninfo(b)
        migrate(ca)
        migrate(cb)
        _load_all(ca, frame)
        for day, empresa in reversed(partitions_of(frame)):
            part = frame.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa))
            _load_all(cb, part)
        assert snapshot(ca) == snapshot(cb)
    finally:
        pg_server.drop_database(a)
        pg_server.drop_database(b)


@pytest.mark.parametrize("point", ["copy", "commit"])
def test_kill_9_during_load_then_rerun(pg_conninfo, frame, tmp_path, point):
    """SIGKILL a loader that stopped at a barrier (half-way through COPY / everything written
    but not committed); nothing is left behind, and a rerun ends as an uninterrupted run."""
    migrate(pg_conninfo)
    parts = partitions_of(frame)
    frame_path = tmp_path / "frame.parquet"
    frame.write_parquet(frame_path)
    # The first partition commits, the second is killed at the barrier.
    proc = start_loader(pg_conninfo, frame_path, parts[:1])
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    committed = snapshot(pg_conninfo)
    barrier_dir = tmp_path / "barrier"
    barrier_dir.mkdir()
    proc = start_loader(pg_conninfo, frame_path, parts[1:2], barrier=point, barrier_dir=barrier_dir)
    try:
        wait_for_file(barrier_dir / f"{point}.reached", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(pg_conninfo) == committed  # the killed partition left nothing

    _load_all(pg_conninfo, frame, run_id="rerun")
    rerun = snapshot(pg_conninfo)
    # Reference: an uninterrupted run of the same partitions on a fresh database.
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        for t in ("ov_afinia", "ov_aire", "ov_afinia_history", "ov_aire_history", "ov_rejects", "ov_load_audit"):
            conn.execute(f"TRUNCATE data_general.{t}")
    _load_all(pg_conninfo, frame, run_id="reference")
    reference = snapshot(pg_conninfo)
    assert without_audit(rerun) == without_audit(reference)


def test_text_array_literal_round_trips_any_value(pg_conninfo18):
    """The existence check sends the radicados as one array literal built by polars: whatever a
    value holds (quotes, backslashes, commas, braces, spaces, NULL-looking text), PostgreSQL
    must read back exactly the same values, or a stored radicado would be missed."""
    values = ["20240101100001", 'a"b', "c\\d", "e,f", "{g}", " h ", "NULL", "", "ñ€😀", '\\"']
    with psycopg.connect(**pg_conninfo18) as conn:
        (back,) = conn.execute("SELECT %s::text[]", (loading.text_array(pl.Series(values)),)).fetchone()
        (empty,) = conn.execute("SELECT %s::text[]", (loading.text_array(pl.Series([], dtype=pl.String)),)).fetchone()
    assert back == values
    assert empty == []


def test_reject_resolved_when_the_same_file_later_loads(pg_conninfo, data_dir):
    """Issue 21: a rejected file fixed in place (same name, now valid bytes) resolves its reject
    row (kept as history with resolved_at); a reload changes nothing; broken again, it reopens."""
    import json

    from ov_assets.core.file_names import landing_dir
    from ov_assets.devkit.generator import fake_pqr

    days = days_back(1)
    landing_frames(data_dir, days, empresas=("aire",), n=3)
    migrate(pg_conninfo)
    (broken,) = landing_dir(data_dir, "aire").glob("ROTO4_data_*.json")  # bad_fecha

    def load(run_id):
        frame = landing_frames(data_dir, days, empresas=("aire",), n=3)
        _load_all(pg_conninfo, frame, run_id=run_id)
        with psycopg.connect(**pg_conninfo) as conn:
            return conn.execute(
                "SELECT reason_code, resolved_at IS NOT NULL FROM data_general.ov_rejects WHERE file_name = %s",
                (broken.name,),
            ).fetchall()

    assert load("first") == [("bad_fecha", False)]
    bad = broken.read_bytes()
    broken.write_text(json.dumps(fake_pqr("aire", days[0], 900)), encoding="utf-8")  # fixed in place
    assert load("fixed") == [("bad_fecha", True)]
    before = snapshot(pg_conninfo)
    with psycopg.connect(**pg_conninfo) as conn:
        resolved_at = conn.execute(
            "SELECT resolved_at FROM data_general.ov_rejects WHERE file_name = %s", (broken.name,)
        ).fetchone()
    assert load("again") == [("bad_fecha", True)]
    assert without_audit(snapshot(pg_conninfo)) == without_audit(before)
    with psycopg.connect(**pg_conninfo) as conn:  # idempotent: resolved once
        assert (
            conn.execute(
                "SELECT resolved_at FROM data_general.ov_rejects WHERE file_name = %s", (broken.name,)
            ).fetchone()
            == resolved_at
        )
    broken.write_bytes(b"")  # broken otherwise: a new reason opens, the old one stays resolved
    assert sorted(load("empty")) == [("bad_fecha", True), ("empty_file", False)]
    broken.write_bytes(bad)  # broken as before: that reason opens again
    assert sorted(load("bad_again")) == [("bad_fecha", False), ("empty_file", True)]
