"""The records frame of a partition (the real path: landing folder -> index -> partition_frame):
the version winner (CONTRACT §4), the linked files (§2), and the consolidated CSV/Parquet."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.core.file_names import landing_dir
from ov_assets.core.records import FRAME_SCHEMA
from ov_assets.devkit.generator import write_day, write_record_files
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.reports.consolidated import CONSOLIDATED_COLUMNS, consolidated_paths, write_consolidated
from ov_assets_tests.bad_corpus import base_record

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)


def _put(data_dir: Path, name: str, obj: dict | bytes, mtime: float | None = None) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode())
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _frame(data_dir: Path) -> pl.DataFrame:
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    return partition_frame(index, "afinia", DAY, TODAY)


def _winner(frame: pl.DataFrame, radicado: str = "R1") -> list[str]:
    return frame.filter(pl.col("is_winner") & (pl.col("numero_radicado") == radicado))["file_name"].to_list()


def _rec(estado: str, ts: str | None, **over: object) -> dict:
    r = base_record(DAY, "R1", estado_solicitud=estado, **over)
    if ts is None:
        r.pop("extraction_timestamp")
    else:
        r["extraction_timestamp"] = ts
    return r


# --- the version winner ---------------------------------------------------------------------


def _winners_by_sorting(frame: pl.DataFrame) -> set[tuple[str, str]]:
    """The rule of CONTRACT §4 written the plain way: per (empresa, partition, radicado), among
    the valid versions the latest extraction (a missing one loses), then the greater file name;
    (empresa, file name) of each winner."""
    best: dict[tuple, tuple] = {}
    for r in frame.filter(pl.col("status") == "valid").iter_rows(named=True):
        k = (r["empresa"], r["partition_date"], r["numero_radicado"])
        rank = (r["fecha_extraccion"] is not None, r["fecha_extraccion"] or dt.datetime.min, r["file_name"])
        if k not in best or rank > best[k][0]:
            best[k] = (rank, (r["empresa"], r["file_name"]))
    return {winner for _, winner in best.values()}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["afinia", "aire"]),
            st.sampled_from([DAY, TODAY]),
            st.sampled_from(["R1", "R2", "R3"]),
            st.sampled_from(["valid", "valid", "rejected"]),
            st.none() | st.datetimes(min_value=dt.datetime(2025, 10, 8), max_value=dt.datetime(2025, 10, 8, 0, 0, 3)),
            st.text(alphabet="aAbñ_Z9é\u00ff\U0001f600", min_size=1, max_size=4),
        ),
        max_size=40,
    )
)
def test_winners_match_the_plain_rule(rows: list[tuple]) -> None:
    """``mark_winners`` (two windows over a frame sorted by file name) picks exactly what the
    plain sort-based rule picks, on random versions: equal extraction times, missing ones,
    rejected versions, several empresas and partitions, names ordered by code point."""
    from ov_assets.core.records import mark_winners

    unique = list({(r[0], r[5]): r for r in rows}.values())  # one version per (empresa, file name)
    frame = pl.DataFrame(
        [(*r, False) for r in unique],
        schema={
            "empresa": pl.String(),
            "partition_date": pl.Date(),
            "numero_radicado": pl.String(),
            "status": pl.String(),
            "fecha_extraccion": pl.Datetime("us"),
            "file_name": pl.String(),
            "is_winner": pl.Boolean(),
        },
        orient="row",
    )
    marked = mark_winners(frame)
    assert marked.height == frame.height
    assert set(marked.filter(pl.col("is_winner")).select("empresa", "file_name").rows()) == _winners_by_sorting(frame)
    assert marked.select("empresa", "partition_date", "file_name").rows() == sorted(
        frame.select("empresa", "partition_date", "file_name").rows()
    )


def test_latest_extraction_timestamp_wins_over_file_name(data_dir: Path) -> None:
    _put(data_dir, "B_data_20251008_100000.json", _rec("Finalizado", "20251008_120000"))
    _put(data_dir, "Z_data_20251008_110000.json", _rec("Radicado", "20251008_110000"))
    frame = _frame(data_dir)
    assert frame.schema == pl.Schema(FRAME_SCHEMA)
    assert _winner(frame) == ["B_data_20251008_100000.json"]


def test_file_name_ts_when_no_extraction_timestamp(data_dir: Path) -> None:
    _put(data_dir, "Z_data_20251008_090000.json", _rec("Radicado", None))
    _put(data_dir, "A_data_20251008_100000.json", _rec("Finalizado", None))
    # content timestamp of one beats the name timestamp of the other
    _put(data_dir, "M_data_20251008_080000.json", _rec("En trámite", "20251008_095959"))
    assert _winner(_frame(data_dir)) == ["A_data_20251008_100000.json"]


def test_tie_broken_by_greater_file_name_by_code_point(data_dir: Path) -> None:
    for name in ("Zeta_data_20251008_100000.json", "alfa_data_20251008_100000.json", "Ñu_data_20251008_100000.json"):
        _put(data_dir, name, _rec(name[:4], "20251008_100000"))
    # code points: 'Z' (90) < 'a' (97) < 'Ñ' (209); a locale collation would order them otherwise
    assert _winner(_frame(data_dir)) == ["Ñu_data_20251008_100000.json"]


def test_mtime_when_nothing_else(data_dir: Path) -> None:
    _put(data_dir, "sin_nombre_1.json", _rec("Radicado", None), mtime=1_759_900_000)
    _put(data_dir, "sin_nombre_2.json", _rec("Finalizado", None), mtime=1_759_800_000)
    assert _winner(_frame(data_dir)) == ["sin_nombre_1.json"]


def test_rejected_version_never_wins(data_dir: Path) -> None:
    _put(data_dir, "A_data_20251008_100000.json", _rec("Radicado", "20251008_100000"))
    _put(data_dir, "A_data_20251008_120000.json", _rec("Finalizado", "20251008_120000", nic="9" * 51))
    _put(data_dir, "A_data_20251008_130000.json", b'{"numero_radicado": "R1", "fecha": "2025/10/08 09:32",')
    frame = _frame(data_dir)
    assert _winner(frame) == ["A_data_20251008_100000.json"]
    assert frame.filter(pl.col("status") == "rejected").height == 2
    assert frame["is_winner"].sum() == 1


def test_only_rejected_versions_no_winner(data_dir: Path) -> None:
    _put(data_dir, "A_data_20251008_120000.json", _rec("Finalizado", "20251008_120000", nic="9" * 51))
    frame = _frame(data_dir)
    assert frame.height == 1 and not frame["is_winner"].any()
    assert frame["numero_radicado"].to_list() == ["R1"]  # kept for ov_rejects


def test_one_winner_per_radicado(data_dir: Path) -> None:
    write_day(data_dir, "afinia", DAY, n=30)
    frame = _frame(data_dir)
    valid = frame.filter(pl.col("status") == "valid")
    assert frame["is_winner"].sum() == valid["numero_radicado"].n_unique()
    # winners are the latest version of each radicado
    latest = valid.group_by("numero_radicado").agg(pl.col("fecha_extraccion").max())
    won = frame.filter("is_winner").select("numero_radicado", "fecha_extraccion")
    assert won.sort("numero_radicado").equals(latest.sort("numero_radicado"))


# --- linked files ------------------------------------------------------------------------------


def test_record_linked_with_pdf_and_attachments(data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True)
    record = {
        k: v
        for k, v in base_record(
            DAY, "R9", numero_reclamo_sgc="RE0810202510009", documento_prueba="3f2b9c1e-8a47-4c8e-9d55-0b7e6a1c2d3f.pdf"
        ).items()
        if k in BUSINESS_FIELDS
    }
    written = write_record_files(folder, record, dt.datetime(2025, 10, 8, 10, 0), 9, attachment=b"\xff\xd8jpeg")
    # a second version shares the portal-named proof file but not the PDF of the first
    write_record_files(folder, dict(record, estado_solicitud="Cerrado"), dt.datetime(2025, 10, 8, 11, 0), 9)
    # an unrelated file of another record is not linked
    write_record_files(
        folder,
        dict(record, numero_radicado="R10", numero_reclamo_sgc="RE0810202510010", documento_prueba=""),
        dt.datetime(2025, 10, 8, 10, 0),
        10,
    )
    frame = _frame(data_dir)
    row = frame.filter(pl.col("file_name") == written[0].name).row(0, named=True)
    got = {f["filename"]: f for f in row["files"]}
    assert set(got) == {p.name for p in written}
    for p in written:
        data = p.read_bytes()
        assert got[p.name]["size"] == len(data)
        assert got[p.name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert {f["file_type"] for f in row["files"]} == {"json", "pdf", "attachment"}
    later = frame.filter(pl.col("numero_radicado") == "R9").filter(pl.col("is_winner")).row(0, named=True)
    assert "3f2b9c1e-8a47-4c8e-9d55-0b7e6a1c2d3f.pdf" in {f["filename"] for f in later["files"]}
    assert not {f["filename"] for f in later["files"]} & {p.name for p in written[1:3]}


# --- consolidated CSV / Parquet ----------------------------------------------------------------


@pytest.fixture
def consolidated(data_dir: Path) -> tuple[pl.DataFrame, dict[str, Path]]:
    write_day(data_dir, "afinia", DAY, n=25)
    _put(
        data_dir,
        "Q_data_20251008_200000.json",
        base_record(
            DAY,
            "Q1",
            comentarios='Dijo: "no pagaré", luego; ok\\n',
            cuerpo_reclamacion="Línea 1\nLínea 2 😀",
            nic="1",
            extraction_timestamp="20251008_200000",
        ),
    )
    frame = _frame(data_dir)
    return frame, write_consolidated(data_dir, "afinia", DAY, frame)


def test_consolidated_paths(data_dir: Path, consolidated: tuple[pl.DataFrame, dict[str, Path]]) -> None:
    _, paths = consolidated
    assert paths["csv"] == data_dir / "processed" / "afinia_consolidated_20251008.csv"
    assert paths["parquet"] == data_dir / "processed" / "afinia_consolidated_20251008.parquet"
    assert paths == consolidated_paths(data_dir, "afinia", DAY)
    for p in paths.values():
        assert p.stat().st_mode & 0o077 == 0
    assert not [n for n in os.listdir(data_dir / "processed") if n.startswith(".")]  # no temp files left


def test_consolidated_csv_is_the_winners(consolidated: tuple[pl.DataFrame, dict[str, Path]]) -> None:
    frame, paths = consolidated
    winners = frame.filter("is_winner").sort("numero_radicado")
    raw = paths["csv"].read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    with paths["csv"].open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CONSOLIDATED_COLUMNS)
    assert len(rows) == winners.height == winners["numero_radicado"].n_unique()
    for row, want in zip(rows, winners.iter_rows(named=True), strict=True):
        for col in (*BUSINESS_FIELDS, "hash_registro", "file_name"):
            assert row[col] == want[col], col
        assert row["warnings"] == ",".join(want["warnings"])
        assert dt.datetime.fromisoformat(row["fecha_extraccion"]) == want["fecha_extraccion"]
    q1 = next(r for r in rows if r["numero_radicado"] == "Q1")
    assert q1["comentarios"] == 'Dijo: "no pagaré", luego; ok\\n'
    assert q1["cuerpo_reclamacion"] == "Línea 1 Línea 2 😀"
    assert q1["warnings"] == "nic_invalid"


def test_consolidated_parquet_equals_csv(consolidated: tuple[pl.DataFrame, dict[str, Path]]) -> None:
    frame, paths = consolidated
    parquet = pl.read_parquet(paths["parquet"])
    assert parquet.columns == list(CONSOLIDATED_COLUMNS)
    winners = frame.filter("is_winner").sort("numero_radicado")
    assert parquet["numero_radicado"].to_list() == winners["numero_radicado"].to_list()
    assert parquet["hash_registro"].to_list() == winners["hash_registro"].to_list()
    csv_frame = pl.read_csv(paths["csv"], infer_schema=False)
    for col in (*BUSINESS_FIELDS, "hash_registro", "file_name", "warnings"):
        assert csv_frame[col].fill_null("").to_list() == parquet[col].fill_null("").to_list(), col


def test_rejects_listed_with_reasons(consolidated: tuple[pl.DataFrame, dict[str, Path]]) -> None:
    frame, paths = consolidated
    with paths["rejects"].open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = frame.filter(pl.col("status") == "rejected")
    assert {(r["file_name"], r["reject_code"]) for r in rows} == set(
        zip(expected["file_name"].to_list(), expected["reject_code"].to_list(), strict=True)
    )
    assert {r["reject_code"] for r in rows} == {"empty_file", "invalid_json", "not_an_object", "bad_fecha"}
    assert all(r["reject_detail"] for r in rows)


def test_rewrite_is_idempotent(data_dir: Path, consolidated: tuple[pl.DataFrame, dict[str, Path]]) -> None:
    _, paths = consolidated
    before = {k: p.read_bytes() for k, p in paths.items() if k != "parquet"}
    write_consolidated(data_dir, "afinia", DAY, _frame(data_dir))
    assert {k: p.read_bytes() for k, p in paths.items() if k != "parquet"} == before
