"""The incremental landing index: partition routing (CONTRACT §5), re-evaluation rules, and
cost proportional to the partition (issue 3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import polars as pl
import pytest

from ov_assets.core.file_names import landing_dir
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets_tests.bad_corpus import base_record
from ov_assets_tests.support import FilesOpened

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)


def _put(folder: Path, name: str, data: bytes | dict, mtime: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _days(index: LandingIndex) -> dict[str, str | None]:
    with sqlite3.connect(index.path) as db:
        return dict(db.execute("SELECT name, partition_date FROM files"))


# --- routing ----------------------------------------------------------------------------------


def test_partition_routing(data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    other = dt.date(2025, 10, 1)
    _put(folder, "A_data_20251001_100000.json", base_record(DAY, "1"))  # fecha wins over the name
    _put(folder, "B_data_20251001_100000.json", base_record(DAY, "2", nic="9" * 60))  # reject, fecha readable
    _put(folder, "C_data_20251001_100000.json", b"{broken")  # fecha unreadable: the name's {ts}
    _put(folder, "D_data_20251001_100000.json", base_record(DAY, "4", fecha="2019/01/01 00:00"))  # out of range
    mtime = dt.datetime(2025, 10, 5, 3, 0, tzinfo=dt.UTC).timestamp()  # 2025-10-04 22:00 in Bogotá
    _put(folder, "sin_fecha.json", b"[]", mtime=mtime)  # no {ts}: the mtime's day in Bogotá
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    assert _days(index) == {
        "A_data_20251001_100000.json": DAY.isoformat(),
        "B_data_20251001_100000.json": DAY.isoformat(),
        "C_data_20251001_100000.json": other.isoformat(),
        "D_data_20251001_100000.json": other.isoformat(),
        "sin_fecha.json": "2025-10-04",
    }


# --- incremental behaviour --------------------------------------------------------------------


def test_unchanged_files_never_reopened(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = landing_dir(data_dir, "afinia")
    for i in range(5):
        _put(folder, f"R{i}_data_20251008_10000{i}.json", base_record(DAY, f"R{i}"))
    index = LandingIndex(data_dir)
    opened = FilesOpened(monkeypatch, index)
    first = index.refresh("afinia", TODAY)
    assert len(first.new) == 5 and first.opened == opened.count == 5
    frame = partition_frame(index, "afinia", DAY, TODAY)
    assert frame.height == 5 and opened.count == 5  # evaluated once, at refresh
    again = LandingIndex(data_dir)  # another process: still nothing to open
    opened_again = FilesOpened(monkeypatch, again)
    result = again.refresh("afinia", TODAY)
    assert (result.new, result.changed, result.removed, result.opened) == ([], [], 0, 0)
    assert partition_frame(again, "afinia", DAY, TODAY).equals(frame)
    assert opened_again.count == 0


def test_changed_and_removed_files(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = landing_dir(data_dir, "afinia")
    a = _put(folder, "A_data_20251008_100000.json", base_record(DAY, "A", estado_solicitud="Radicado"))
    b = _put(folder, "B_data_20251008_100000.json", base_record(DAY, "B"))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    _put(folder, a.name, base_record(DAY, "A", estado_solicitud="Finalizado, con respuesta"))
    b.unlink()
    opened = FilesOpened(monkeypatch, index)
    result = index.refresh("afinia", TODAY)
    assert [f.name for f in result.changed] == [a.name] and result.removed == 1 and opened.count == 1
    frame = partition_frame(index, "afinia", DAY, TODAY)
    assert frame["file_name"].to_list() == [a.name]
    assert frame["estado_solicitud"].to_list() == ["Finalizado, con respuesta"]


def test_future_fecha_is_evaluated_again_when_its_day_comes(data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    _put(folder, "F_data_20251009_100000.json", base_record(DAY, "F", fecha="2025/10/10 08:00"))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    assert partition_frame(index, "afinia", TODAY, TODAY)["reject_code"].to_list() == ["fecha_out_of_range"]
    assert index.refresh("afinia", TODAY).changed == []  # evaluated again, same outcome: not a change
    tomorrow = TODAY + dt.timedelta(days=1)
    moved = index.refresh("afinia", tomorrow)
    assert moved.touched_partitions == {("afinia", tomorrow)}
    assert partition_frame(index, "afinia", TODAY, tomorrow).is_empty()
    assert partition_frame(index, "afinia", tomorrow, tomorrow)["status"].to_list() == ["valid"]


def test_index_from_before_outcomes_were_kept(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index written by the first version (no outcome column) is upgraded in place and its
    record files are evaluated once more."""
    folder = landing_dir(data_dir, "afinia")
    _put(folder, "A_data_20251008_100000.json", base_record(DAY, "A"))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    with sqlite3.connect(index.path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
            db.execute(f"DROP INDEX {name}")
        db.execute("ALTER TABLE files DROP COLUMN outcome")
        db.execute("ALTER TABLE files DROP COLUMN rules_version")
    upgraded = LandingIndex(data_dir)
    opened = FilesOpened(monkeypatch, upgraded)
    upgraded.refresh("afinia", TODAY)
    assert opened.count == 1
    assert partition_frame(upgraded, "afinia", DAY, TODAY)["status"].to_list() == ["valid"]
    assert opened.count == 1


def test_files_still_being_written_wait(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = landing_dir(data_dir, "afinia")
    _put(folder, "A_data_20251008_100000.json", base_record(DAY, "A"))
    _put(folder, ".B_data_20251008_100000.json.tmp", b"{")
    index = LandingIndex(data_dir)
    opened = FilesOpened(monkeypatch, index)
    result = index.refresh("afinia", TODAY, stable_before_ns=time.time_ns() - 60 * 10**9)
    assert result.new == [] and opened.count == 0
    assert [f.name for f in index.refresh("afinia", TODAY).new] == ["A_data_20251008_100000.json"]


# --- cost proportional to the partition ------------------------------------------------------

_TEMPLATE = json.dumps(base_record(DAY, "@R@", fecha="@F@", extraction_timestamp="@T@")).encode()


def _record_bytes(radicado: str, day: dt.date, ts: str) -> bytes:
    return (
        _TEMPLATE.replace(b"@R@", radicado.encode())
        .replace(b"@F@", f"{day:%Y/%m/%d} 09:30".encode())
        .replace(b"@T@", ts.encode())
    )


def _write(folder: str, name: str, data: bytes) -> None:
    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _fill(folder: Path, total: int, days: list[dt.date], per_record_extra: int = 4) -> int:
    """``total`` files: one record JSON for every ``per_record_extra`` PDFs/attachments."""
    folder.mkdir(parents=True, exist_ok=True)
    f = os.fspath(folder)
    n = 0
    i = 0
    while n < total:
        day = days[i % len(days)]
        ts = f"{day:%Y%m%d}_{i % 86400 // 3600:02d}{i % 3600 // 60:02d}{i % 60:02d}"
        sgc = f"RE{i:09d}"
        _write(f, f"{sgc}_data_{ts}.json", _record_bytes(f"{day:%Y%m%d}{i:09d}", day, ts))
        n += 1
        for k in range(per_record_extra):
            if n >= total:
                break
            _write(
                f,
                f"{sgc}_{ts}.pdf" if k == 0 else f"{sgc}_adjunto_{k}_{ts}.jpg",
                b"%PDF-1.4 x" if k == 0 else b"\xff\xd8",
            )
            n += 1
        i += 1
    return n


def _new_partition_files(folder: Path, day: dt.date, count: int) -> list[str]:
    names = []
    for j in range(count):
        ts = f"{day:%Y%m%d}_23{j // 60 % 60:02d}{j % 60:02d}"
        sgc = f"NEW{j:06d}"
        _write(os.fspath(folder), f"{sgc}_data_{ts}.json", _record_bytes(f"{day:%Y%m%d}8{j:06d}", day, ts))
        _write(os.fspath(folder), f"{sgc}_{ts}.pdf", b"%PDF-1.4 new")
        names += [f"{sgc}_data_{ts}.json", f"{sgc}_{ts}.pdf"]
    return names


def _cost_of_new_partition_files(
    data_dir: Path, folder_size: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int, float, pl.DataFrame]:
    """Fill the landing folder with ``folder_size`` files (indexed), then add 250 record files
    (+250 PDFs) to one partition and change one of its old files: return (files opened by
    refresh, files opened by partition_frame, seconds, frame)."""
    folder = landing_dir(data_dir, "afinia")
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=d) for d in range(600)]
    target = days[7]
    _fill(folder, folder_size, days)
    index = LandingIndex(data_dir)
    assert index.refresh("afinia", TODAY).opened == folder_size  # the first refresh indexes everything, once
    old = sorted(n for n in os.listdir(folder) if n.endswith(".json") and f"_data_{target:%Y%m%d}_" in n)
    assert old
    new = _new_partition_files(folder, target, 250)
    _write(os.fspath(folder), old[0], _record_bytes(f"{target:%Y%m%d}{0:09d}", target, old[0][-20:-5]) + b" ")
    _fill(landing_dir(data_dir, "aire"), 50, days)  # another empresa's new files: not this refresh's business
    index = LandingIndex(data_dir)  # a fresh process, as in a Dagster run
    opened = FilesOpened(monkeypatch, index)
    t = time.perf_counter()
    result = index.refresh("afinia", TODAY)
    by_refresh = opened.count
    frame = partition_frame(index, "afinia", target, TODAY)
    elapsed = time.perf_counter() - t
    assert sorted(f.name for f in result.new) == sorted(new)
    assert [f.name for f in result.changed] == [old[0]]
    assert result.touched_partitions == {("afinia", target)}
    assert frame.height == len(old) + 250
    assert frame.filter(pl.col("status") == "valid").height == frame.height
    return by_refresh, opened.count - by_refresh, elapsed, frame


def test_scale_200k_files_opens_only_the_partitions_new_files(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROVES cost proportional to the partition (issue 3): with 200,000 files already indexed,
    materializing one partition after 500 new files (250 records + 250 PDFs) and one changed file
    landed in it opens exactly those 501 files, in the refresh, and nothing more in
    partition_frame; the same as in a folder of 5,000 files. (Listing the folder is the only
    cost that grows with it.)"""
    opened_big, reopened_big, secs_big, _frame_big = _cost_of_new_partition_files(data_dir, 200_000, monkeypatch)
    assert opened_big == 501
    assert reopened_big == 0
    small = tmp_path / "small"
    small.mkdir()
    opened_small, reopened_small, secs_small, _frame_small = _cost_of_new_partition_files(small, 5_000, monkeypatch)
    assert (opened_small, reopened_small) == (opened_big, reopened_big)
    print(f"partition after new files: {secs_big:.2f}s with 200,000 files, {secs_small:.2f}s with 5,000")


# --- a full first refresh finishes its partitions from what it evaluated ------------------------


def _eight_records(folder: Path) -> None:
    for i in range(8):
        _put(folder, f"S{i}_data_20251008_10000{i}.json", base_record(DAY, f"R{i % 3}"))


def test_first_refresh_frames_equal_the_index_path(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh of an empty index keeps every record file's columns, and (nobody else having
    written) finishes partitions without reading the index back: the frame must be the one the
    index path gives to a later process."""
    _eight_records(landing_dir(data_dir, "afinia"))
    first = LandingIndex(data_dir)
    first.refresh("afinia", TODAY)
    assert first.frames.is_complete("afinia")  # the shortcut is taken (else this test proves nothing)
    fresh = partition_frame(first, "afinia", DAY, TODAY)
    later = LandingIndex(data_dir)
    opened = FilesOpened(monkeypatch, later)
    from_index = partition_frame(later, "afinia", DAY, TODAY)  # no refresh: the index path
    assert opened.count == 0 and fresh.height == 8
    assert fresh.equals(from_index)


def test_another_writer_after_a_first_refresh_is_seen(data_dir: Path) -> None:
    """If another process writes to the index between this refresh and the partition frame
    (here: a file changed and re-indexed by it), the frame comes out as the index now says,
    not from this refresh's memory."""
    folder = landing_dir(data_dir, "afinia")
    _eight_records(folder)
    first = LandingIndex(data_dir)
    first.refresh("afinia", TODAY)
    moved = folder / "S0_data_20251008_100000.json"
    _put(folder, moved.name, base_record(DAY - dt.timedelta(days=1), "R0"))  # now another day
    LandingIndex(data_dir).refresh("afinia", TODAY)  # another process indexes the change
    frame = partition_frame(first, "afinia", DAY, TODAY)
    assert moved.name not in frame["file_name"].to_list() and frame.height == 7


def test_partitions_finished_in_chunks_each_once(data_dir: Path, monkeypatch) -> None:
    """With more fresh rows than one chunk, each chunk finishes only its own partitions: every
    frame equals the index path's, and nothing is left over once all were handed out."""
    from ov_assets.landing import partition_frames

    folder = landing_dir(data_dir, "afinia")
    days = [DAY - dt.timedelta(days=d) for d in range(5)]
    for d, day in enumerate(days):
        for i in range(3):
            _put(folder, f"C{d}{i}_data_{day:%Y%m%d}_10000{i}.json", base_record(day, f"R{d}{i % 2}"))
    monkeypatch.setattr(partition_frames, "PREPARE_ROWS", 4)  # 15 rows > 2 x 4: chunks of ~1 partition
    first = LandingIndex(data_dir)
    first.refresh("afinia", TODAY)
    frames = {day: partition_frame(first, "afinia", day, TODAY) for day in days}
    assert not first.frames.holds("afinia")
    later = LandingIndex(data_dir)
    for day in days:
        assert frames[day].height == 3 and frames[day].equals(partition_frame(later, "afinia", day, TODAY))
