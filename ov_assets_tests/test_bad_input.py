"""Broken and odd record files (issue 3, "Bad input"): each gets the right reject code or
warning through the real pqr_records path (landing folder -> index -> partition_frame), and the
rest of the partition is unaffected. Plus property tests: no input makes the decoder or the
validator raise."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ov_assets.core.contract import LANDING_CODES, REJECT_CODES, WARNING_CODES, Reject, ValidRecord, validate_record
from ov_assets.core.file_names import landing_dir
from ov_assets.core.records import FileOutcome, decode_bytes, evaluate_file, evaluate_parts
from ov_assets.devkit.generator import write_day
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets_tests.bad_corpus import base_record, corpus

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)


def _frame(data_dir: Path) -> pl.DataFrame:
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    return partition_frame(index, "afinia", DAY, TODAY)


def test_corpus_has_at_least_20_kinds() -> None:
    cases = corpus(DAY)
    assert len({c.kind for c in cases}) >= 20
    assert len({c.name for c in cases}) == len(cases)
    # every reject code of a file's content is exercised (LANDING_CODES: test_landing_hostile.py)
    assert {c.reject for c in cases if c.reject} == set(REJECT_CODES) - set(LANDING_CODES)


@pytest.fixture
def landed(data_dir: Path, tmp_path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same good day written twice: alone, and with the whole corpus beside it."""
    clean = tmp_path / "clean"
    write_day(clean, "afinia", DAY, n=15, broken=False)
    write_day(data_dir, "afinia", DAY, n=15, broken=False)
    folder = landing_dir(data_dir, "afinia")
    for case in corpus(DAY):
        (folder / case.name).write_bytes(case.data)
    return _frame(clean), _frame(data_dir)


def test_each_broken_file_gets_its_code(landed: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    _, frame = landed
    rows = {r["file_name"]: r for r in frame.iter_rows(named=True)}
    problems = []
    for case in corpus(DAY):
        row = rows.get(case.name)
        if row is None:
            problems.append(f"{case.kind}: not in the partition")
            continue
        if case.reject:
            if row["status"] != "rejected" or row["reject_code"] != case.reject:
                problems.append(f"{case.kind}: {row['status']} {row['reject_code']} != {case.reject}")
            elif case.detail_names and case.detail_names not in row["reject_detail"]:
                problems.append(f"{case.kind}: detail {row['reject_detail']!r} does not name {case.detail_names}")
            if row["is_winner"] or row["hash_registro"] is not None:
                problems.append(f"{case.kind}: a rejected file must never win or carry a hash")
        else:
            if row["status"] != "valid":
                problems.append(f"{case.kind}: rejected {row['reject_code']} ({row['reject_detail']})")
                continue
            if set(row["warnings"]) != set(case.warnings):
                problems.append(f"{case.kind}: warnings {row['warnings']} != {sorted(case.warnings)}")
            for f, v in case.expect_values.items():
                if row[f] != v:
                    problems.append(f"{case.kind}: {f} = {row[f][:80]!r} != {v[:80]!r}")
            if not row["is_winner"]:
                problems.append(f"{case.kind}: its only version must win")
        assert set(row["warnings"]) <= set(WARNING_CODES)
    assert not problems, "\n".join(problems)


def test_rest_of_partition_unaffected(landed: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    clean, frame = landed
    bad = {c.name for c in corpus(DAY)}
    rest = frame.filter(~pl.col("file_name").is_in(list(bad)))
    assert clean.height > 15
    # the same files, the same outcome, value for value (the day's own fixed seed)
    assert rest.drop("partition_date").equals(clean.drop("partition_date"))


def test_broken_files_stay_in_place(data_dir: Path) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True)
    for case in corpus(DAY):
        (folder / case.name).write_bytes(case.data)
    before = sorted(os.listdir(folder))
    _frame(data_dir)
    assert sorted(os.listdir(folder)) == before


# --- property tests ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(list(base_record(DAY, "1"))) | st.text(max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    decoded = decode_bytes(data)
    assert isinstance(decoded, Reject) or isinstance(decoded[0], dict)
    outcome = evaluate_file("X_data_20251008_100000.json", data, "0" * 64, TODAY)
    assert (outcome.record is None) != (outcome.reject is None)
    again = FileOutcome.from_json(outcome.file_name, outcome.file_sha256, outcome.file_size, outcome.to_json())
    assert again == outcome
    assert evaluate_parts(outcome.file_name, data, "0" * 64, TODAY) == outcome.as_list()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, json_values, max_size=25))
def test_random_json_objects_never_raise(obj: dict) -> None:
    checked = validate_record(obj, TODAY)
    assert isinstance(checked, (Reject, ValidRecord))
    if isinstance(checked, Reject):
        assert checked.code in REJECT_CODES
    else:
        assert set(checked.warnings) <= set(WARNING_CODES)
        assert len(checked.hash_registro) == 64
    for data in (json.dumps(obj).encode(), json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")):
        outcome = evaluate_file("X_data_20251008_100000.json", data, "0" * 64, TODAY)
        assert (outcome.record is None) != (outcome.reject is None)
        assert evaluate_parts("X_data_20251008_100000.json", data, "0" * 64, TODAY) == outcome.as_list()


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries({k: st.just(v) for k, v in base_record(DAY, "5").items()}),
    st.sampled_from(["nic", "fecha", "numero_radicado", "estado_solicitud", "cuerpo_reclamacion", "celular"]),
    json_values,
)
def test_random_values_in_a_real_record_never_raise(rec: dict, key: str, value: object) -> None:
    rec = dict(rec, **{key: value})
    for data in (
        json.dumps(rec).encode(),
        json.dumps(rec, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass"),
    ):
        outcome = evaluate_file("X_data_20251008_100000.json", data, "0" * 64, TODAY)
        assert (outcome.record is None) != (outcome.reject is None)
        assert evaluate_parts("X_data_20251008_100000.json", data, "0" * 64, TODAY) == outcome.as_list()


def test_fast_path_equals_evaluate_file_on_every_corpus_and_generated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The landing index evaluates files with ``evaluate_parts`` (a fast path for the usual
    record): for every broken, odd and generated file it must give what ``evaluate_file`` gives,
    and the usual record must really take the fast path."""
    import ov_assets.core.records as records

    write_day(tmp_path, "afinia", DAY, n=60)  # (broken files too)
    folder = landing_dir(tmp_path, "afinia")
    files = [(c.name, c.data) for c in corpus(DAY)] + [
        (p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix == ".json"
    ]
    assert len(files) > 100
    for name, data in files:
        assert evaluate_parts(name, data, "0" * 64, TODAY) == evaluate_file(name, data, "0" * 64, TODAY).as_list(), name
    clean = tmp_path / "clean"
    write_day(clean, "afinia", DAY, n=40, broken=False)
    good = [(p.name, p.read_bytes()) for p in sorted(landing_dir(clean, "afinia").glob("*.json"))]
    slow: list[str] = []
    real = records.evaluate_file
    monkeypatch.setattr(records, "evaluate_file", lambda *a: slow.append(a[0]) or real(*a))  # a spy: still evaluates
    for name, data in good:
        assert evaluate_parts(name, data, "0" * 64, TODAY)[1] is not None
    assert len(good) >= 40 and slow == []  # (40 PQRs, some extracted twice)
