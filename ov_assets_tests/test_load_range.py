"""``loading.load_partitions``: a run's whole range in one set-based transaction (issue 4).

Per-partition counts and the resulting tables equal single-partition runs in day order, also
when a radicado is a winner in two partitions of the range (its fecha moved); overlapping ranges
started at once neither deadlock nor duplicate; the first-load fast path falls back to the
general path when a concurrent load inserts one of its radicados; a dry run writes nothing."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import (
    days_back,
    landing_frames,
    migrate,
    partition_keys,
    partitions_of,
    run_together,
    snapshot,
    start_loader,
    wait_for_file,
    without_audit,
)


def _singles(conninfo, frame, run_id="single"):
    """One transaction per partition, in day order (what single-partition runs do)."""
    out = {}
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for day, empresa in partitions_of(frame):
            out[(empresa, day)] = loading.load_partition(conn, empresa, day, frame, run_id)
    return out


def _range(conninfo, frame, keys=None, run_id="range", dry_run=False):
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        return loading.load_partitions(conn, keys or partition_keys(frame), frame, run_id, dry_run=dry_run)


def _with_moved_radicado(frame: pl.DataFrame) -> pl.DataFrame:
    """A winner of the first day re-extracted later with its fecha on the last day: the same
    radicado is a winner in two partitions of one range."""
    first, last = frame["partition_date"].min(), frame["partition_date"].max()
    row = frame.filter(
        (pl.col("partition_date") == first) & (pl.col("empresa") == "afinia") & pl.col("is_winner")
    ).head(1)
    moved = row.with_columns(
        pl.lit(last).alias("partition_date"),
        pl.lit("Anulado").alias("estado_solicitud"),
        pl.lit("m" * 64).alias("hash_registro"),
        (pl.col("fecha_extraccion") + pl.duration(days=3)).alias("fecha_extraccion"),
        pl.lit("ZZ_data_moved_0001.json").alias("file_name"),
    )
    return pl.concat([frame, moved])


def test_range_equals_singles_counts_and_rows(pg_conninfo, pg_server, data_dir):
    frame = _with_moved_radicado(landing_frames(data_dir, days_back(3), n=8))
    ref_db = pg_server.create_database()
    try:
        ref = pg_server.conninfo(ref_db)
        migrate(ref)
        migrate(pg_conninfo)
        single = _singles(ref, frame)
        ranged = _range(pg_conninfo, frame)
        assert ranged == single
        assert sum(c.db_updated for c in ranged.values()) == 1  # the moved radicado, with history
        assert without_audit(snapshot(pg_conninfo)) == without_audit(snapshot(ref))
        assert all(n == 1 for *_, n in snapshot(pg_conninfo)["audit"])  # one audit row per partition
        # Reload of the whole range: all unchanged, nothing written.
        before = without_audit(snapshot(pg_conninfo))
        again = _range(pg_conninfo, frame, run_id="again")
        assert again == _singles(ref, frame, run_id="again")
        assert all(c.db_inserted == c.db_updated == 0 for c in again.values())
        assert without_audit(snapshot(pg_conninfo)) == before
    finally:
        pg_server.drop_database(ref_db)


def test_range_mixes_stored_and_new_partitions(pg_conninfo, data_dir):
    frame = landing_frames(data_dir, days_back(3), n=6)
    migrate(pg_conninfo)
    keys = partition_keys(frame)
    _range(pg_conninfo, frame, keys=keys[:2])  # first day of both empresas
    counts = _range(pg_conninfo, frame, run_id="rest")
    winners = {
        (e, d): n
        for e, d, n in frame.filter(pl.col("is_winner")).group_by("empresa", "partition_date").len().iter_rows()
    }
    for key, c in counts.items():
        n = winners.get(key, 0)
        expected = (0, 0, n) if key in keys[:2] else (n, 0, 0)
        assert (c.db_inserted, c.db_updated, c.db_duplicates) == expected, key


def test_dry_run_range_writes_nothing(pg_conninfo, data_dir):
    frame = landing_frames(data_dir, days_back(2), n=6)
    migrate(pg_conninfo)
    before = snapshot(pg_conninfo)
    dry = _range(pg_conninfo, frame, dry_run=True)
    assert snapshot(pg_conninfo) == before
    assert dry == _range(pg_conninfo, frame)


def test_overlapping_ranges_at_once_equal_one_run(pg_conninfo, data_dir):
    days = days_back(4)
    frame = landing_frames(data_dir, days, n=8)
    migrate(pg_conninfo)
    keys = partition_keys(frame)
    plans = [
        [k for k in keys if k[1] in days[:3]],
        [k for k in keys if k[1] in days[1:]],
        [k for k in keys if k[1] in (days[0], days[3])],
        keys,
    ]
    run_together(
        [
            lambda plan=plan, i=i: _range(
                pg_conninfo, frame, keys=list(reversed(plan)) if i % 2 else plan, run_id=f"w{i}"
            )
            for i, plan in enumerate(plans)
        ]
    )
    with psycopg.connect(**pg_conninfo) as conn:
        (inserted,) = conn.execute("SELECT sum(db_inserted) FROM data_general.ov_load_audit").fetchone()
        (hist,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia_history").fetchone()
    assert inserted == frame.filter(pl.col("is_winner")).height
    assert hist == 0


def test_fast_path_falls_back_when_a_radicado_appears_meanwhile(pg_conninfo, data_dir, tmp_path):
    """Between the fast path's emptiness check and its INSERT another transaction commits one
    of the staged radicados (an adopted row): the savepoint is undone and the general path
    updates that row (with history) and inserts the rest."""
    frame = landing_frames(data_dir, days_back(1), empresas=("afinia",), n=10)
    migrate(pg_conninfo)
    (part,) = partitions_of(frame)
    winners = frame.filter(pl.col("is_winner")).sort("numero_radicado")
    target = winners.row(winners.height // 2, named=True)
    frame_path = tmp_path / "frame.parquet"
    frame.write_parquet(frame_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    proc = start_loader(pg_conninfo, frame_path, [part], barrier="insert", barrier_dir=barrier)
    try:
        wait_for_file(barrier / "insert.reached", proc)
        with psycopg.connect(**pg_conninfo) as conn:  # an adopted old-system row: older than anything
            conn.execute(
                "INSERT INTO data_general.ov_afinia (numero_radicado, fecha, estado_solicitud, hash_registro) "
                "VALUES (%s, %s, 'Viejo', %s)",
                (target["numero_radicado"], target["fecha_dt"], "o" * 64),
            )
        (barrier / "insert.release").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f'"inserted": {winners.height - 1}, "updated": 1, "duplicates": 0' in out
    with psycopg.connect(**pg_conninfo) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
        hist = conn.execute("SELECT estado_solicitud FROM data_general.ov_afinia_history").fetchall()
    assert rows == winners.height
    assert hist == [("Viejo",)]


def test_two_loads_inside_one_caller_transaction(pg_conninfo, data_dir):
    """Called inside the caller's transaction (a savepoint each), the second load does not see
    the first one's staged rows."""
    frame = landing_frames(data_dir, days_back(2), empresas=("afinia",), n=6)
    migrate(pg_conninfo)
    (first, second) = partition_keys(frame)
    with psycopg.connect(**pg_conninfo) as conn:  # not autocommit: one outer transaction
        conn.execute("SELECT 1")
        a = loading.load_partitions(conn, [first], frame, "outer")
        b = loading.load_partitions(conn, [second], frame, "outer")
    winners = frame.filter(pl.col("is_winner"))
    assert a[first].db_inserted + b[second].db_inserted == winners.height
    assert (a[first].db_duplicates, b[second].db_duplicates) == (0, 0)


def test_reload_inside_caller_transaction_restores_planner_settings(pg_conninfo, data_dir):
    """A reload joins staged rows through the unique index (hash and merge joins off for its own
    statements); the caller's transaction gets its own settings back afterwards, and the reload
    still finds every stored radicado."""
    frame = landing_frames(data_dir, days_back(2), empresas=("afinia",), n=6)
    migrate(pg_conninfo)
    keys = partition_keys(frame)
    with psycopg.connect(**pg_conninfo) as conn:  # not autocommit: one outer transaction
        conn.execute("SET LOCAL enable_mergejoin = off")  # the caller's own choice must survive
        loading.load_partitions(conn, keys, frame, "first")
        again = loading.load_partitions(conn, keys, frame, "again")  # the staged, general path
        settings = conn.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
        ).fetchone()
    assert settings == ("on", "off")
    assert sum(c.db_duplicates for c in again.values()) == frame.filter(pl.col("is_winner")).height
    assert sum(c.db_inserted + c.db_updated for c in again.values()) == 0


@pytest.mark.parametrize("held", ["newer", "older"])
def test_new_radicado_raced_by_another_partition_keeps_the_newer_version(pg_conninfo, data_dir, tmp_path, held):
    """Issue 21: a radicado new to the table whose fecha moved between versions is loaded by two
    runs on different partitions (different locks). The run holding the ``held`` version
    compares (the radicado is not stored), then the other run commits it, then the first one's
    INSERT ... ON CONFLICT DO NOTHING skips it: it compares again in the same transaction, and
    the winner rule decides: the newer version replaces the older (with history), the older
    one is skipped as older. Never a silent duplicate keeping the older version."""
    frame = landing_frames(data_dir, days_back(2), empresas=("afinia",), n=6)
    migrate(pg_conninfo)
    first, last = sorted(frame["partition_date"].unique())
    older = (
        frame.filter((pl.col("partition_date") == first) & pl.col("is_winner"))
        .sort("numero_radicado")
        .row(0, named=True)
    )
    newer = pl.DataFrame([older], schema=frame.schema).with_columns(
        pl.lit(last).alias("partition_date"),
        pl.lit("Anulado").alias("estado_solicitud"),
        pl.lit("m" * 64).alias("hash_registro"),
        (pl.col("fecha_extraccion") + pl.duration(days=3)).alias("fecha_extraccion"),
        pl.lit("ZZ_data_moved_0001.json").alias("file_name"),
    )
    frame = pl.concat([frame, newer])
    held_day, other_day = (last, first) if held == "newer" else (first, last)
    held_file = "ZZ_data_moved_0001.json" if held == "newer" else older["file_name"]
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:  # the held partition's other rows: stored
        loading.load_partition(conn, "afinia", held_day, frame.filter(pl.col("file_name") != held_file), "before")
    frame_path = tmp_path / "frame.parquet"
    frame.write_parquet(frame_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    proc = start_loader(pg_conninfo, frame_path, [(held_day, "afinia")], barrier="insert_new", barrier_dir=barrier)
    try:
        wait_for_file(barrier / "insert_new.reached", proc)  # compared: the radicado is not stored
        with psycopg.connect(**pg_conninfo, autocommit=True) as conn:  # the other partition commits it
            assert loading.load_partition(conn, "afinia", other_day, frame, "other").db_inserted > 0
        (barrier / "insert_new.release").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stored_before = frame.filter((pl.col("partition_date") == held_day) & pl.col("is_winner")).height - 1
    # The loser counts neither as inserted nor as a duplicate: skipped as older (audit: duplicates).
    expected = (0, 1, stored_before) if held == "newer" else (0, 0, stored_before)
    assert f'"inserted": {expected[0]}, "updated": {expected[1]}, "duplicates": {expected[2]}' in out
    with psycopg.connect(**pg_conninfo) as conn:
        row = conn.execute(
            "SELECT hash_registro, archivo_origen FROM data_general.ov_afinia WHERE numero_radicado = %s",
            (older["numero_radicado"],),
        ).fetchone()
        hist = conn.execute("SELECT hash_registro FROM data_general.ov_afinia_history").fetchall()
        (skipped,) = conn.execute(
            "SELECT db_duplicates FROM data_general.ov_load_audit WHERE partition_date = %s AND run_id = 'subprocess'",
            (held_day,),
        ).fetchone()
    assert row == ("m" * 64, "ZZ_data_moved_0001.json")
    assert hist == ([(older["hash_registro"],)] if held == "newer" else [])
    assert skipped == stored_before + (held == "older")
