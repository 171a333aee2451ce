"""The landing sensor: one request per affected partition, cursor replay gives none, growing
files wait, thousands of files stay cheap."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import dagster as dg

from ov_assets.core.contract import today_bogota
from ov_assets.core.file_names import landing_dir
from ov_assets.defs.automation.landing_runs import RELIST, SINCE_SQL, WINDOW, plan_landing_runs
from ov_assets.defs.automation.sensors import landing_sensor
from ov_assets.defs.resources import LandingResource
from ov_assets.devkit.generator import write_day
from ov_assets.landing.index import LandingIndex
from ov_assets_tests.support import FilesOpened


def _age(paths: list[Path], seconds: float = 60) -> None:
    past = time.time() - seconds
    for p in paths:
        os.utime(p, (past, past))


@functools.cache
def repository() -> dg.RepositoryDefinition:
    """The definitions, loaded once: a test that times a file's rest calls this before writing
    (loading takes longer than the 1 s rest)."""
    from ov_assets.definitions import defs

    return defs.get_repository_def()


def tick(data_dir: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"landing": LandingResource(data_dir=str(data_dir))},
        repository_def=repository(),
    )
    return landing_sensor(context)


def requests(result: dg.SensorResult) -> dict[str, dg.RunRequest]:
    return {r.partition_key: r for r in result.run_requests or []}


def days_ago(n: int) -> dt.date:
    """A fixed past day (data never depends on the date the suite runs on)."""
    return dt.date(2025, 10, 20) - dt.timedelta(days=n)


def test_new_files_across_partitions_one_request_each_and_replay_gives_none(data_dir: Path) -> None:
    d1, d2 = days_ago(3), days_ago(1)
    files = []
    for empresa, day in (("afinia", d1), ("afinia", d2), ("aire", d2)):
        files += write_day(data_dir, empresa, day, n=4).files
    _age(files)
    first = tick(data_dir, None)
    got = requests(first)
    assert sorted(got) == sorted([f"{d1}|afinia", f"{d2}|afinia", f"{d2}|aire"])
    for key, r in got.items():
        assert r.run_key.startswith(f"{key}:") and len(r.run_key) == len(key) + 17
        assert r.tags == {"ov/partition": key, "ov/empresa": key.split("|")[1], "ov/mode": "sensor"}
    assert landing_sensor.job_name == "pqr_landing_job"

    replay = tick(data_dir, first.cursor)
    assert not replay.run_requests

    # A new batch in one partition: one request, a new run key for that partition.
    more = write_day(data_dir, "afinia", d1, n=6, seed=7, broken=False).files
    _age(more)
    second = tick(data_dir, replay.cursor)
    assert list(requests(second)) == [f"{d1}|afinia"]
    assert requests(second)[f"{d1}|afinia"].run_key != got[f"{d1}|afinia"].run_key
    assert not tick(data_dir, second.cursor).run_requests


def test_run_key_is_partition_plus_digest_of_its_new_files(tmp_path: Path, monkeypatch) -> None:
    keys = []
    for i in range(2):
        d = tmp_path / f"d{i}"
        d.mkdir()
        files = write_day(d, "aire", days_ago(2), n=3, broken=False).files
        for p in files:
            os.utime(p, (1_700_000_000, 1_700_000_000))
        keys.append(requests(tick(d, None))[f"{days_ago(2)}|aire"].run_key)
    assert keys[0] == keys[1]  # same names, sizes and mtimes -> same key


def test_growing_file_waits_until_stable(data_dir: Path) -> None:
    day = days_ago(2)
    folder = landing_dir(data_dir, "aire")
    folder.mkdir(parents=True)
    path = folder / f"RE123_data_{day:%Y%m%d}_101010.json"
    record = {"numero_radicado": "R1", "fecha": f"{day:%Y/%m/%d} 09:00", "estado_solicitud": "Radicado"}
    repository()
    path.write_text(json.dumps(record)[:20])  # half written, modified just now
    first = tick(data_dir, None)
    assert not first.run_requests
    path.write_text(json.dumps(record))  # still being written
    second = tick(data_dir, first.cursor)
    assert not second.run_requests
    _age([path], 10)  # done: not modified for longer than the stability cutoff
    third = tick(data_dir, second.cursor)
    assert list(requests(third)) == [f"{day}|aire"]
    assert not tick(data_dir, third.cursor).run_requests


def test_files_indexed_by_a_run_before_the_tick_are_still_dispatched(data_dir: Path) -> None:
    first = tick(data_dir, None)  # empty folder
    day = days_ago(4)
    files = write_day(data_dir, "afinia", day, n=3).files
    _age(files)
    LandingIndex(data_dir).refresh("afinia", today_bogota())  # e.g. raw_pqr_files of another run
    second = tick(data_dir, first.cursor)
    assert list(requests(second)) == [f"{day}|afinia"]


def test_pdf_arriving_after_its_record_goes_to_the_records_partition(data_dir: Path) -> None:
    day = days_ago(5)
    files = write_day(data_dir, "aire", day, n=2, broken=False).files
    pdfs = [p for p in files if p.suffix == ".pdf" and "_data_" not in p.name]
    held = {p: p.read_bytes() for p in pdfs}
    for p in pdfs:
        p.unlink()
    _age([p for p in files if p.exists()])
    first = tick(data_dir, None)
    assert list(requests(first)) == [f"{day}|aire"]
    for p, data in held.items():
        p.write_bytes(data)
    _age(list(held))
    second = tick(data_dir, first.cursor)
    assert list(requests(second)) == [f"{day}|aire"]
    assert requests(second)[f"{day}|aire"].run_key != requests(first)[f"{day}|aire"].run_key


def test_cursor_forgets_what_left_the_window(data_dir: Path) -> None:
    files = write_day(data_dir, "afinia", days_ago(1), n=2).files
    _age(files)
    first = plan_landing_runs(LandingIndex(data_dir), None)
    later = dt.datetime.now(dt.UTC) + WINDOW * 3
    second = plan_landing_runs(LandingIndex(data_dir), first.cursor, now=later)
    assert not second.runs
    assert json.loads(second.cursor)["sent"] == {}


def test_thousands_of_files_are_cheap_and_replay_opens_nothing(data_dir: Path, monkeypatch) -> None:
    files = []
    for i in range(8):
        files += write_day(data_dir, ("afinia", "aire")[i % 2], days_ago(1 + i // 2), n=120, broken=False).files
    _age(files)
    assert len(files) >= 2000
    index = LandingIndex(data_dir)
    opened = FilesOpened(monkeypatch, index)
    plan = plan_landing_runs(index, None)
    assert len(plan.runs) == 8
    assert opened.count == len(files)  # each new file opened once
    assert len(plan.cursor) < 200_000
    index2 = LandingIndex(data_dir)
    opened2 = FilesOpened(monkeypatch, index2)
    replay = plan_landing_runs(index2, plan.cursor)
    assert not replay.runs and opened2.count == 0
    # The tick's "indexed since" reads a range of an index, not the whole table (~1 KB a file).
    with closing(sqlite3.connect(index.path)) as db:
        steps = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + SINCE_SQL, ("x",))]
    assert steps and all("SCAN" not in step for step in steps), steps


def test_sensor_ticks_on_every_loop_of_the_daemon() -> None:
    """Dagster's daemon evaluates sensors every MIN_INTERVAL_LOOP_TIME (5 s); a minimum interval
    at or above it skips loops (10 s ticked every 10-15 s: most of the old 19 s latency)."""
    from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME

    assert landing_sensor.minimum_interval_seconds is not None
    assert 0 < landing_sensor.minimum_interval_seconds < MIN_INTERVAL_LOOP_TIME


def test_file_written_two_seconds_ago_is_dispatched_on_the_next_tick(data_dir: Path) -> None:
    """A complete file (our writers link it in whole) goes out on the first tick that sees it
    once it has rested 1 s; one written just now waits for the next tick."""
    day = days_ago(2)
    rested = write_day(data_dir, "afinia", day, n=2).files
    _age(rested, 2)
    repository()
    fresh = write_day(data_dir, "aire", day, n=2).files
    first = tick(data_dir, None)
    assert list(requests(first)) == [f"{day}|afinia"]
    _age(fresh, 2)
    assert list(requests(tick(data_dir, first.cursor))) == [f"{day}|aire"]


def test_idle_tick_lists_no_folder_until_one_changes(data_dir: Path) -> None:
    """A tick every few seconds stays cheap: an unchanged folder is not listed again (a stat,
    not a stat per file), a changed one is, and every folder is listed again after RELIST."""
    files = write_day(data_dir, "afinia", days_ago(3), n=3).files + write_day(data_dir, "aire", days_ago(3), n=3).files
    folders = [landing_dir(data_dir, e) for e in ("afinia", "aire")]
    _age(files + folders)
    index = LandingIndex(data_dir)
    first = plan_landing_runs(index, None)
    assert first.listed == ["afinia", "aire"] and len(first.runs) == 2
    idle = plan_landing_runs(index, first.cursor)
    assert idle.listed == [] and not idle.runs
    new = write_day(data_dir, "afinia", days_ago(1), n=2).files
    _age(new)
    changed = plan_landing_runs(index, idle.cursor)
    assert changed.listed == ["afinia"] and list(changed.runs) == [f"{days_ago(1)}|afinia"]
    _age(folders[:1])
    settled = plan_landing_runs(index, changed.cursor)  # the last listing could not vouch for it
    assert settled.listed == ["afinia"] and not settled.runs
    assert plan_landing_runs(index, settled.cursor).listed == []
    later = dt.datetime.now(dt.UTC) + RELIST + dt.timedelta(seconds=1)
    assert plan_landing_runs(index, settled.cursor, now=later).listed == ["afinia", "aire"]


def test_growing_file_keeps_its_folder_listed_although_the_folder_is_unchanged(data_dir: Path) -> None:
    """Appending to a file leaves its folder's time alone: a listing that left a file for later
    does not let the next tick skip the folder."""
    day = days_ago(2)
    folder = landing_dir(data_dir, "aire")
    folder.mkdir(parents=True)
    path = folder / f"RE123_data_{day:%Y%m%d}_101010.json"
    record = {"numero_radicado": "R1", "fecha": f"{day:%Y/%m/%d} 09:00", "estado_solicitud": "Radicado"}
    path.write_text(json.dumps(record)[:20])
    _age([folder])
    index = LandingIndex(data_dir)
    first = plan_landing_runs(index, None)
    assert "aire" in first.listed and not first.runs
    with path.open("a") as f:
        f.write(json.dumps(record)[20:])
    _age([path, folder])
    second = plan_landing_runs(index, first.cursor)
    assert "aire" in second.listed and list(second.runs) == [f"{day}|aire"]
