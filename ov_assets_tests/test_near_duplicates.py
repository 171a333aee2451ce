"""Near-duplicate PQRs (issue 19, acceptance 3): a corpus with planted pairs (the same NIC or
document, the complaint reworded, days apart) and planted non-pairs (same NIC with another
complaint; the same text under another NIC and document; a similar complaint beyond
OV_NEAR_DUP_DAYS; blank texts; the other empresa) gives exactly the planted pairs, whatever the
order the partitions load in; the WARN check reports counts only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest

from ov_assets.core import near_duplicates as nd
from ov_assets.core.file_names import landing_dir
from ov_assets.devkit import generator
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading
from ov_assets.warehouse import near_duplicates as wnd
from ov_assets_tests.checks_support import key, make_resources, materialize_range
from ov_assets_tests.loadkit import TODAY, migrate

D0 = dt.date(2025, 9, 1)
MAX_DAYS = 10
THRESHOLD = 80.0
NIC_A, NIC_B, NIC_C = "7301245", "8802211", "5512340"
DOC_X = "1045678912"

T1 = "Cobro excesivo en la factura de agosto. Solicito revisión del medidor porque el consumo no corresponde."
T1_REWORDED = (
    "Solicito revisar el medidor: la factura de agosto llegó con un cobro excesivo y el consumo no corresponde."
)
T2 = "Suspendieron el servicio sin aviso previo aunque pagué la factura a tiempo en la oficina de Montería."
T2_REWORDED = (
    "Me suspendieron el servicio sin ningún aviso previo, aunque pagué a tiempo la factura en la oficina de Montería."
)
T3 = "El transformador del barrio está en mal estado y hay cortes de energía cada noche desde hace una semana."
T4 = "Variación de voltaje dañó la nevera y el televisor; pido indemnización según la regulación de la CREG."
T4_REWORDED = (
    "Pido indemnización según la regulación de la CREG: una variación de voltaje dañó la nevera y el televisor."
)

# (radicado, day offset, nic, documento, text): what is planted in afinia
PLANTED: list[tuple[str, int, str, str, str]] = [
    ("ND-A1", 0, NIC_A, "11111111", T1),  # pair 1: same NIC, reworded, 3 days apart
    ("ND-A2", 3, NIC_A, "22222222", T1_REWORDED),
    ("ND-A3", 2, NIC_A, "33333333", T3),  # same NIC, a different complaint: no pair
    ("ND-T1", 3, "9990001", "44444444", T1),  # the same text, another NIC and document: no pair
    ("ND-X1", 1, "6600001", DOC_X, T2),  # pair 2: same document, other NICs, reworded, 3 days apart
    ("ND-X2", 4, "6600002", DOC_X, T2_REWORDED),
    ("ND-B1", 0, NIC_B, "55555555", T4),  # same NIC, similar text, but beyond MAX_DAYS
    ("ND-B2", MAX_DAYS + 5, NIC_B, "66666666", T4_REWORDED),
    ("ND-C1", 1, NIC_C, "77777777", ""),  # blank texts never pair
    ("ND-C2", 1, NIC_C, "88888888", ""),
]
PAIRS = {("ND-A1", "ND-A2", 3, "same_nic"), ("ND-X1", "ND-X2", 3, "same_documento")}
DAYS = sorted({D0 + dt.timedelta(days=off) for _, off, *_ in PLANTED})


def _write(data_dir: Path, empresa: str, radicado: str, day: dt.date, nic: str, doc: str, text: str, n: int) -> None:
    record = generator.fake_pqr(empresa, day, 900 + n)
    record.update(numero_radicado=radicado, nic=nic, documento_identidad=doc, cuerpo_reclamacion=text)
    record.update(numero_reclamo_sgc=f"RE{radicado[-2:]}{n:011d}", documento_prueba="")
    filed = dt.datetime.strptime(record["fecha"], "%Y/%m/%d %H:%M")
    generator.write_record_files(landing_dir(data_dir, empresa), record, filed + dt.timedelta(minutes=30 + n), n)


def _plant(data_dir: Path) -> None:
    for day in DAYS:  # background PQRs of other customers (random NICs and documents)
        for empresa in ("afinia", "aire"):
            generator.write_day(data_dir, empresa, day, n=3, broken=False)
    for n, (radicado, off, nic, doc, text) in enumerate(PLANTED, start=1):
        _write(data_dir, "afinia", radicado, D0 + dt.timedelta(days=off), nic, doc, text, n)
    # the other empresa: the same NIC and complaint as ND-A1 a day later pairs with nothing in afinia
    _write(data_dir, "aire", "ND-E1", D0 + dt.timedelta(days=1), NIC_A, "11111111", T1, 99)


def _frames(data_dir: Path) -> pl.DataFrame:
    """What pqr_records makes of the planted landing files, every day of both empresas."""
    index = LandingIndex(data_dir)
    frames = []
    for empresa in ("afinia", "aire"):
        index.refresh(empresa, TODAY)
        frames += [partition_frame(index, empresa, day, TODAY) for day in DAYS]
    return pl.concat(frames)


def _stored(conninfo: dict[str, Any]) -> set[tuple[str, str, int, str]]:
    with psycopg.connect(**conninfo) as conn:
        rows = conn.execute(
            "SELECT empresa, numero_radicado, other_radicado, days_apart, rule, similarity "
            "FROM data_general.ov_near_duplicates"
        ).fetchall()
    assert all(e == "afinia" and THRESHOLD <= s <= 100 for e, *_, s in rows), rows
    return {(a, b, days, rule) for _, a, b, days, rule, _ in rows}


def test_scoring_separates_rewording_from_another_complaint() -> None:
    assert nd.similarity(T1, T1_REWORDED) >= THRESHOLD
    assert nd.similarity(T2, T2_REWORDED) >= THRESHOLD and nd.similarity(T4, T4_REWORDED) >= THRESHOLD
    assert nd.similarity(T1, T3) < 60 and nd.similarity(T1, T2) < 60
    assert nd.similarity("", "") == 0.0 and nd.similarity(T1, "  ") == 0.0
    assert nd.fold("  Revisión DEL medidor!! ") == "revision del medidor"


@pytest.mark.parametrize("order", ["oldest_first", "newest_first"])
def test_planted_pairs_and_only_them(pg_conninfo, data_dir, order) -> None:
    _plant(data_dir)
    frame = _frames(data_dir)
    migrate(pg_conninfo)
    days = DAYS if order == "oldest_first" else list(reversed(DAYS))
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        for day in days:  # each partition loaded, then compared with what the table holds so far
            for empresa in ("afinia", "aire"):
                loading.load_partition(conn, empresa, day, frame, f"nd-{order}")
                wnd.refresh_partition(conn, empresa, day, THRESHOLD, MAX_DAYS)
    assert _stored(pg_conninfo) == PAIRS
    # a refresh changes nothing; a wider window finds the far pair too
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        counts = [wnd.refresh_partition(conn, "afinia", d, THRESHOLD, MAX_DAYS) for d in DAYS]
        assert sum(c.new_pairs + c.removed for c in counts) == 0
        assert _stored(pg_conninfo) == PAIRS
        wnd.refresh_partition(conn, "afinia", D0, THRESHOLD, MAX_DAYS + 5)
    assert _stored(pg_conninfo) == PAIRS | {("ND-B1", "ND-B2", MAX_DAYS + 5, "same_nic")}


def test_a_reworded_newer_version_drops_its_pair(pg_conninfo18, data_dir) -> None:
    _plant(data_dir)
    frame = _frames(data_dir)
    migrate(pg_conninfo18)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        loading.load_partitions(conn, [(e, d) for d in DAYS for e in ("afinia", "aire")], frame, "nd")
        for day in DAYS:
            wnd.refresh_partition(conn, "afinia", day, THRESHOLD, MAX_DAYS)
        assert _stored(pg_conninfo18) == PAIRS
        # ND-A2's newer version speaks of something else: its pair goes when its day is compared again
        conn.execute("UPDATE data_general.ov_afinia SET cuerpo_reclamacion = %s WHERE numero_radicado = 'ND-A2'", (T4,))
        counts = wnd.refresh_partition(conn, "afinia", D0 + dt.timedelta(days=3), THRESHOLD, MAX_DAYS)
    assert counts.removed == 1
    assert _stored(pg_conninfo18) == {p for p in PAIRS if p[0] != "ND-A1"}


def test_the_check_warns_with_counts_only(pg_conninfo18, data_dir, monkeypatch) -> None:
    monkeypatch.setenv("OV_NEAR_DUP_DAYS", str(MAX_DAYS))
    monkeypatch.setenv("OV_NEAR_DUP_SIMILARITY", str(THRESHOLD))
    _plant(data_dir)
    resources = make_resources(pg_conninfo18, data_dir)
    first, last = DAYS[0], DAYS[4]  # D0..D0+4: both planted pairs, not ND-B2
    result = materialize_range(resources, key(first, "afinia"), key(last, "aire"), ["pqr_records", "pqr_table"])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert _stored(pg_conninfo18) == PAIRS
    evals = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "near_duplicates" and e.partition is not None
    }
    assert len(evals) == 10  # 5 days x 2 empresas
    failing = {p for p, e in evals.items() if not e.passed}
    pair_days = {D0, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=3), D0 + dt.timedelta(days=4)}
    assert failing == {key(d, "afinia") for d in pair_days}
    for e in evals.values():
        assert e.severity == dg.AssetCheckSeverity.WARN
        values = {k: v.value for k, v in e.metadata.items()}
        assert all(isinstance(v, int | float) for v in values.values()), values  # counts and settings only
    assert evals[key(D0 + dt.timedelta(days=3), "afinia")].metadata["rule_same_nic"].value == 1
    assert evals[key(D0 + dt.timedelta(days=4), "afinia")].metadata["rule_same_documento"].value == 1
    table = result.asset_materializations_for_node("pqr_table")[0]
    assert table.metadata["near_duplicate_pairs"].value >= 2
