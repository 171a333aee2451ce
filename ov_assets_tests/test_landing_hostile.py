"""Hostile landing folders (issue 21): whatever one file holds or is (a lone surrogate behind a
64-bit overflow, a non-UTF-8 name, a symbolic link, a folder, a name that is not ours, a record
of many MiB, a PDF over 2 GiB), it becomes a reject with its reason or a correct row, and never
stops the other files, the other empresa or the next refresh."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ov_assets import settings as ov_settings
from ov_assets.core.contract import BUSINESS_FIELDS, Reject, validate_record
from ov_assets.core.file_names import landing_dir
from ov_assets.core.records import decode_bytes, evaluate_file, evaluate_parts
from ov_assets.defs.automation.landing_runs import plan_landing_runs
from ov_assets.defs.partitions import pqr_partitions
from ov_assets.defs.resources import PartitionedFrameIOManager
from ov_assets.devkit.generator import write_day
from ov_assets.landing import examine, index_workers
from ov_assets.landing.index import LandingFolderUnavailable, LandingIndex, partition_frame
from ov_assets.reports.consolidated import consolidated_paths, write_consolidated
from ov_assets_tests.bad_corpus import base_record
from ov_assets_tests.support import FilesOpened

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)
NOW = dt.datetime(2025, 10, 9, 12, 0, tzinfo=dt.UTC)
BAD_NAME = b"recl\xe1maci\xf3n_20251008_100000.pdf"  # cp1252, as Windows zips write it


def surrogate_record(radicado: str) -> bytes:
    """The review's file: an integer beyond 64 bits (orjson refuses the file), then a lone
    surrogate (Python's json accepts it; encoding it fails later)."""
    raw = json.dumps({"big": 2**70, **base_record(DAY, radicado, nombres_apellidos="@")}).encode()
    return raw.replace(b'"@"', b'"\\ud800"')


def _put(folder: Path, name: str | bytes, data: bytes | dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else json.dumps(data).encode())


def _age(*folders: Path) -> None:
    """Stable at ``NOW`` (the sensor waits for files modified in its last seconds)."""
    for path in (p for folder in folders for p in folder.iterdir()):
        os.utime(path, (NOW.timestamp() - 3600,) * 2, follow_symlinks=False)


def _rows(index: LandingIndex, empresa: str = "afinia", day: dt.date = DAY) -> dict[str, dict]:
    return {r["file_name"]: r for r in partition_frame(index, empresa, day, TODAY).iter_rows(named=True)}


def test_one_hostile_file_never_stops_the_index(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = landing_dir(data_dir, "afinia")
    _put(folder, "S_data_20251008_100000.json", surrogate_record("900"))
    _put(folder, BAD_NAME, b"%PDF-1.4 not ours")
    for i in range(3):
        _put(folder, f"G{i}_data_20251008_10000{i}.json", base_record(DAY, f"70{i}"))
    for _attempt in range(2):  # every refresh, not only the first
        index = LandingIndex(data_dir)
        opened = FilesOpened(monkeypatch, index)
        index.refresh("afinia", TODAY)
        rows = _rows(index)
        assert rows["S_data_20251008_100000.json"]["reject_code"] == "unencodable_value"
        assert "nombres_apellidos" in rows["S_data_20251008_100000.json"]["reject_detail"]
        bad = rows["recl\\xe1maci\\xf3n_20251008_100000.pdf"]  # named, readable, not a str with surrogates
        assert (bad["status"], bad["reject_code"], bad["file_sha256"]) == ("rejected", "bad_file_name", None)
        assert sorted(r["numero_radicado"] for r in rows.values() if r["status"] == "valid") == ["700", "701", "702"]
    assert opened.count == 0  # the second refresh read nothing again


def test_any_failure_of_one_file_is_its_reject(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails while one file is evaluated (here an error injected for one name: the next
    unforeseen content) is that file's ``unreadable`` reject, by the error's class only."""
    folder = landing_dir(data_dir, "afinia")
    for i in range(3):
        _put(folder, f"G{i}_data_20251008_10000{i}.json", base_record(DAY, f"70{i}"))
    real = examine.evaluate_parts

    def failing(name: str, *args: object) -> list:
        if name == "G1_data_20251008_100001.json":
            raise RuntimeError("Mar\u00eda")  # a message quoting content never reaches the reject
        return real(name, *args)

    monkeypatch.setattr(examine, "evaluate_parts", failing)
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    rows = _rows(index)
    assert [(n, r["reject_code"], r["reject_detail"]) for n, r in rows.items() if r["status"] == "rejected"] == [
        ("G1_data_20251008_100001.json", "unreadable", "the file could not be read or evaluated (RuntimeError)")
    ]
    assert sorted(r["numero_radicado"] for r in rows.values() if r["status"] == "valid") == ["700", "702"]


def test_other_names_kinds_and_links_are_reported(data_dir: Path, tmp_path: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps(base_record(DAY, "666")))
    _put(folder, "G_data_20251008_100000.json", base_record(DAY, "1"))
    _put(folder, "U_data_20251008_100000.JSON", base_record(DAY, "2"))
    _put(folder, "notas_20251008_100000.docx", b"x")
    _put(folder, ".G_data_20251008_100001.json.part", b"{")  # being written: silent
    os.symlink(outside / "secret.json", folder / "L_data_20251008_100000.json")
    os.symlink(outside / "secret.json", folder / "L_20251008_100000.pdf")
    (folder / "D_data_20251008_100000.json").mkdir()
    os.mkfifo(folder / "F_data_20251008_100000.json")
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    rows = _rows(index)
    codes = {n: (r["status"], r["reject_code"]) for n, r in rows.items()}
    assert codes == {
        "G_data_20251008_100000.json": ("valid", None),
        "U_data_20251008_100000.JSON": ("rejected", "unknown_name"),
        "notas_20251008_100000.docx": ("rejected", "unknown_name"),
        "L_data_20251008_100000.json": ("rejected", "not_a_regular_file"),
        "L_20251008_100000.pdf": ("rejected", "not_a_regular_file"),
        "D_data_20251008_100000.json": ("rejected", "not_a_regular_file"),
        "F_data_20251008_100000.json": ("rejected", "not_a_regular_file"),
    }
    assert "symbolic link" in rows["L_data_20251008_100000.json"]["reject_detail"]
    assert "folder" in rows["D_data_20251008_100000.json"]["reject_detail"]
    assert all(r["numero_radicado"] != "666" for r in rows.values())  # the link's target never read


def test_a_file_swapped_for_a_link_after_the_listing_is_not_read(data_dir: Path, tmp_path: Path) -> None:
    """The listing and the open are two moments: a file that became a link in between is
    refused by the kernel (O_NOFOLLOW), never read from outside the folder."""
    folder = landing_dir(data_dir, "afinia")
    (tmp_path / "secret.json").write_text(json.dumps(base_record(DAY, "666")))
    _put(folder, "G_data_20251008_100000.json", base_record(DAY, "1"))
    os.symlink(tmp_path / "secret.json", folder / "W_data_20251008_100000.json")
    index = LandingIndex(data_dir)
    # the batch a refresh hands its workers, listed when W was still a regular file
    opened, _, frame = index_workers.index_batch(
        os.fspath(index.path),
        os.fspath(folder),
        "afinia",
        ["G_data_20251008_100000.json", "W_data_20251008_100000.json"],
        {},
        TODAY,
        "t",
    )
    assert opened == 2 and frame is not None
    by_name = dict(zip(frame["file_name"], frame["reject_code"], strict=False))
    assert by_name == {"G_data_20251008_100000.json": None, "W_data_20251008_100000.json": "not_a_regular_file"}
    assert "666" not in frame["numero_radicado"].to_list()


def test_an_outcome_evaluated_again_is_read_as_the_refresh_reads(data_dir: Path, tmp_path: Path) -> None:
    """A stored outcome that is missing (or of other rules) is evaluated again when the partition
    is read: through the same guarded, link-refusing path as the refresh."""
    folder = landing_dir(data_dir, "afinia")
    (tmp_path / "secret.json").write_text(json.dumps(base_record(DAY, "666")))
    _put(folder, "G_data_20251008_100000.json", base_record(DAY, "1"))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    (folder / "G_data_20251008_100000.json").unlink()
    os.symlink(tmp_path / "secret.json", folder / "G_data_20251008_100000.json")
    with sqlite3.connect(index.path) as db:
        db.execute("UPDATE files SET outcome = NULL")
    rows = _rows(LandingIndex(data_dir))  # no refresh in between
    assert [(r["reject_code"], r["numero_radicado"]) for r in rows.values()] == [("not_a_regular_file", None)]


def test_record_size_cap_and_large_files_hashed_whole(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = landing_dir(data_dir, "afinia")
    monkeypatch.setenv("OV_MAX_RECORD_BYTES", "4096")
    big = json.dumps(base_record(DAY, "5", cuerpo_reclamacion="x" * 10_000)).encode()
    _put(folder, "B_data_20251008_100000.json", big)
    _put(folder, "G_data_20251008_100000.json", base_record(DAY, "6"))
    # a PDF over 2 GiB (sparse: no disk used): one os.read returns at most ~2 GiB
    huge = folder / "G_20251008_100000.pdf"
    with open(huge, "wb") as fh:
        fh.truncate(2**31 + 4096)
        fh.seek(2**31 + 4000)
        fh.write(b"end")
    expected = hashlib.sha256()
    with open(huge, "rb") as fh:
        while chunk := fh.read(1 << 24):
            expected.update(chunk)
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    rows = _rows(index)
    too_large = rows["B_data_20251008_100000.json"]
    assert too_large["reject_code"] == "record_too_large"
    assert too_large["file_sha256"] == hashlib.sha256(big).hexdigest() and too_large["file_size"] == len(big)
    (pdf,) = [f for f in rows["G_data_20251008_100000.json"]["files"] if f["file_type"] == "pdf"]
    assert (pdf["size"], pdf["sha256"]) == (2**31 + 4096, expected.hexdigest())
    monkeypatch.setenv("OV_MAX_RECORD_BYTES", "12")
    with pytest.raises(Exception, match="OV_MAX_RECORD_BYTES"):
        ov_settings.max_record_bytes()


def test_latest_hashes_are_the_winners_only(data_dir: Path) -> None:
    """A -> B -> A on the portal: the scraper must write A again (only B is current)."""
    folder = landing_dir(data_dir, "afinia")
    a = base_record(DAY, "77", estado_solicitud="En trámite", extraction_timestamp="20251008_100000")
    b = dict(a, estado_solicitud="Finalizado", extraction_timestamp="20251008_110000")
    _put(folder, "RE1_data_20251008_100000.json", a)
    _put(folder, "RE1_data_20251008_110000.json", b)
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    rows = _rows(index)
    assert index.latest_hashes("afinia", [DAY], TODAY) == {rows["RE1_data_20251008_110000.json"]["hash_registro"]}


def test_named_files_link_only_to_their_own_pqr(data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    uuid_pdf = "3f2b9c1e-8a47-4c8e-9d55-0b7e6a1c2d3f.pdf"
    _put(folder, "RE2_data_20251008_100000.json", base_record(DAY, "2", numero_reclamo_sgc="RE2"))
    _put(folder, "RE2_20251008_100000.pdf", b"%PDF other PQR")
    _put(folder, "RE1_20251001_090000.pdf", b"%PDF same PQR, older version")
    _put(folder, uuid_pdf, b"%PDF portal name")
    _put(
        folder,
        "RE1_data_20251008_100000.json",
        base_record(
            DAY,
            "1",
            numero_reclamo_sgc="RE1",
            documento_prueba="RE2_20251008_100000.pdf",
            adjuntar_archivo="RE1_20251001_090000.pdf",
        ),
    )
    _put(folder, "RE3_data_20251008_100000.json", base_record(DAY, "3", documento_prueba=uuid_pdf))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    rows = _rows(index)
    files = {n: sorted(f["filename"] for f in r["files"]) for n, r in rows.items()}
    assert files == {
        "RE1_data_20251008_100000.json": ["RE1_20251001_090000.pdf", "RE1_data_20251008_100000.json"],
        "RE2_data_20251008_100000.json": ["RE2_20251008_100000.pdf", "RE2_data_20251008_100000.json"],
        "RE3_data_20251008_100000.json": [uuid_pdf, "RE3_data_20251008_100000.json"],
    }
    assert rows["RE1_data_20251008_100000.json"]["warnings"] == ["reference_not_linked"]
    records = index.record_files("afinia", DAY)
    linked = index.linked_files("afinia", records)  # the cleanup's view: the same links
    assert {k: sorted(f.name for f in v) for k, v in linked.items()} == {
        k: [f for f in v if f != k] for k, v in files.items()
    }


def test_unmounted_folder_is_an_error_not_every_file_removed(data_dir: Path) -> None:
    write_day(data_dir, "afinia", DAY, n=3)
    write_day(data_dir, "aire", DAY, n=3)
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    folder = landing_dir(data_dir, "afinia")
    hidden = folder.with_name("elsewhere")
    folder.rename(hidden)  # unmounted: the mount point left empty
    folder.mkdir()
    with pytest.raises(LandingFolderUnavailable, match="is the folder mounted"):
        index.refresh("afinia", TODAY)
    _age(landing_dir(data_dir, "aire"))
    plan = plan_landing_runs(index, None, now=NOW)  # the other empresa still gets its runs
    assert "afinia" in plan.failed and any(k.endswith("|aire") for k in plan.runs)
    folder.rmdir()
    hidden.rename(folder)
    assert index.refresh("afinia", TODAY).removed == 0  # nothing was forgotten meanwhile


def test_landing_sensor_keeps_the_other_empresa_running(data_dir: Path) -> None:
    """Through the sensor itself: a hostile file in one empresa's folder, and then that folder
    unmounted (an error the refresh raises), never keep the other empresa's new files from
    their runs in the same tick."""
    from ov_assets.definitions import defs
    from ov_assets.defs.automation.sensors import landing_sensor
    from ov_assets.defs.resources import LandingResource

    def tick(cursor: str | None) -> dg.SensorResult:
        past = dt.datetime.now().timestamp() - 60  # stable for the sensor, which reads the clock
        for path in (
            p
            for e in ("afinia", "aire")
            if landing_dir(data_dir, e).is_dir()
            for p in landing_dir(data_dir, e).iterdir()
            if p.stat().st_mtime > past
        ):
            os.utime(path, (past, past))  # (only new files: a touched file is a new version)
        context = dg.build_sensor_context(
            cursor=cursor,
            resources={"landing": LandingResource(data_dir=str(data_dir))},
            repository_def=defs.get_repository_def(),
        )
        return landing_sensor(context)

    write_day(data_dir, "afinia", DAY, n=3)
    _put(landing_dir(data_dir, "afinia"), "S_data_20251008_100000.json", surrogate_record("900"))
    write_day(data_dir, "aire", DAY, n=3)
    first = tick(None)
    assert sorted(r.partition_key for r in first.run_requests or []) == [f"{DAY}|afinia", f"{DAY}|aire"]
    landing_dir(data_dir, "afinia").rename(data_dir / "unmounted")
    write_day(data_dir, "aire", DAY + dt.timedelta(days=1), n=3)
    second = tick(first.cursor)
    assert [r.partition_key for r in second.run_requests or []] == [f"{DAY + dt.timedelta(days=1)}|aire"]


def test_sensor_plans_both_empresas_despite_a_hostile_file(data_dir: Path) -> None:
    write_day(data_dir, "aire", DAY, n=3)
    _put(landing_dir(data_dir, "afinia"), "S_data_20251008_100000.json", surrogate_record("900"))
    _put(landing_dir(data_dir, "afinia"), BAD_NAME, b"x")
    _age(landing_dir(data_dir, "afinia"), landing_dir(data_dir, "aire"))
    plan = plan_landing_runs(LandingIndex(data_dir), None, now=NOW)
    assert plan.failed == {}
    assert f"{DAY}|afinia" in plan.runs and f"{DAY}|aire" in plan.runs


def test_frames_are_written_through_their_own_temporary_file(data_dir: Path) -> None:
    """Concurrent writers of one partition never share a temporary name: a temporary file left
    at the old fixed name (another writer's) is not written into, and the frame is owner-only."""
    manager = PartitionedFrameIOManager(data_dir=str(data_dir))
    index = LandingIndex(data_dir)
    write_day(data_dir, "afinia", DAY, n=3)
    index.refresh("afinia", TODAY)
    frame = partition_frame(index, "afinia", DAY, TODAY)
    path = manager._path("pqr_records", DAY, "afinia")
    path.parent.mkdir(parents=True)
    (path.parent / f".{path.name}.part").mkdir()  # another writer's temporary file, as a folder
    context = dg.build_output_context(
        asset_key=dg.AssetKey("pqr_records"), partition_key=f"{DAY}|afinia", asset_partitions_def=pqr_partitions
    )
    manager.handle_output(context, frame)
    assert pl.read_parquet(path).equals(frame)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = manager._path("pqr_records", DAY + dt.timedelta(days=1), "afinia")  # folders made by the manager
    manager.handle_output(
        dg.build_output_context(
            asset_key=dg.AssetKey("pqr_records"),
            partition_key=f"{DAY + dt.timedelta(days=1)}|afinia",
            asset_partitions_def=pqr_partitions,
        ),
        frame.clear(),
    )
    assert [stat.S_IMODE(p.stat().st_mode) for p in (other, other.parent)] == [0o600, 0o700]


def test_files_under_the_data_dir_are_owner_only(data_dir: Path) -> None:
    write_day(data_dir, "afinia", DAY, n=3)
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    write_consolidated(data_dir, "afinia", DAY, partition_frame(index, "afinia", DAY, TODAY))
    written = [index.path, *consolidated_paths(data_dir, "afinia", DAY).values()]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written), written
    for top in ("state", "processed"):
        assert stat.S_IMODE((data_dir / top).stat().st_mode) == 0o700


# --- property tests: surrogates and names that are not UTF-8 --------------------------------

# Text with lone surrogates among ordinary and Spanish characters (hypothesis' text() never
# produces surrogates by default).
surrogate_text = st.text(st.characters(codec=None, categories=("Cs", "Ll", "Lu", "Nd", "Zs", "Po")), max_size=12)
# File names as bytes: any byte but "/" and NUL, often invalid UTF-8 (cp1252 accents).
raw_names = (
    st.lists(
        st.sampled_from(
            [
                b"recl",
                b"\xe1",
                b"\xf3",
                b"\xff",
                b"_",
                b"20251008_100000",
                b"_data_",
                b".json",
                b".pdf",
                b".JSON",
                b"n",
                b"\xc3\xb1",
                b"\xed\xa0\x80",
            ]
        ),
        min_size=1,
        max_size=8,
    )
    .map(b"".join)
    .filter(lambda n: n not in (b".", b".."))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["nombres_apellidos", "cuerpo_reclamacion", "numero_radicado", "fecha", "clave_nueva"]),
    surrogate_text,
)
def test_surrogates_anywhere_never_raise(field: str, value: str) -> None:
    rec = dict(base_record(DAY, "5"), **{field: value})
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    # JSON's "\\ud800\\udc00" is one astral character once decoded: only unpaired ones stay lone.
    paired = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    lone_escaped = any(0xD800 <= ord(c) <= 0xDFFF for c in paired)
    checked = validate_record(rec, TODAY)  # a decoded object from anywhere (the scraper's too)
    if lone and field in BUSINESS_FIELDS and value.strip():
        assert isinstance(checked, Reject) and checked.code in ("unencodable_value", "bad_fecha")
    # escaped ("\\ud800"), escaped behind a 2**70 integer, and raw (CESU bytes: not UTF-8, read as cp1252)
    for data, escaped in (
        (json.dumps(rec).encode(), True),
        (json.dumps({"big": 2**70, **rec}).encode(), True),
        (json.dumps(rec, ensure_ascii=False).encode("utf-8", "surrogatepass"), False),
    ):
        decoded = decode_bytes(data)
        outcome = evaluate_file("X_data_20251008_100000.json", data, "0" * 64, TODAY)
        assert (outcome.record is None) != (outcome.reject is None)
        assert evaluate_parts("X_data_20251008_100000.json", data, "0" * 64, TODAY) == outcome.as_list()
        if outcome.record is not None:  # what loads is text: it encodes
            "\x1f".join(outcome.record.values.values()).encode("utf-8")
        if lone_escaped and escaped:
            assert isinstance(decoded, Reject) and decoded.code == "unencodable_value"
            assert outcome.reject == decoded


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(raw_names, min_size=1, max_size=6, unique=True), st.lists(surrogate_text, max_size=3))
def test_any_names_and_contents_are_indexed(
    tmp_path_factory: pytest.TempPathFactory, names: list[bytes], texts: list[str]
) -> None:
    data_dir = tmp_path_factory.mktemp("hyp")
    folder = landing_dir(data_dir, "afinia")
    for i, name in enumerate(names):
        rec = base_record(DAY, f"8{i}", comentarios=texts[i % len(texts)] if texts else "")
        _put(folder, name, json.dumps(rec).encode())
    _put(folder, "G_data_20251008_100000.json", base_record(DAY, "1"))
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)  # never raises
    index.refresh("afinia", TODAY)
    with sqlite3.connect(index.path) as db:
        stored = {n for (n,) in db.execute("SELECT name FROM files")}
    listed = {examine.stored_name(os.fsdecode(n)) for n in os.listdir(os.fsencode(folder))}
    hidden = {n for n in listed if n.startswith(".") or n.endswith((".part", ".tmp", "~"))}
    assert stored == listed - hidden  # every file has a row (a reject or a record), named in UTF-8
    frames = [partition_frame(index, "afinia", d, TODAY) for d in {DAY, *_days(index)}]
    good = pl.concat(frames).filter(pl.col("file_name") == "G_data_20251008_100000.json")
    assert good["status"].to_list() == ["valid"]


def _days(index: LandingIndex) -> set[dt.date]:
    with sqlite3.connect(index.path) as db:
        return {
            dt.date.fromisoformat(d)
            for (d,) in db.execute("SELECT DISTINCT partition_date FROM files WHERE partition_date IS NOT NULL")
        }
