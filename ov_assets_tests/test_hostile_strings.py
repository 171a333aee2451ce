"""Hostile strings through the real COPY paths into PostgreSQL (issue 21): control characters,
the unit/record separators, bidirectional marks, emoji sequences, quotes, backslashes, COPY's
own markers (``\\.``, ``\\N``), CSV metacharacters and very long values are stored exactly as
their canonical values, read back equal, and re-hash to the stored ``hash_registro``, on the
first load (COPY straight into the table) and on an update (COPY into the staging table).
NUL cannot be stored in PostgreSQL text: such a record is rejected before the load (reason
``undecodable``) and the rest of the partition loads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from ov_assets.core.contract import BUSINESS_FIELDS, canonical, hash_registro
from ov_assets.core.file_names import landing_dir
from ov_assets.devkit.generator import fake_pqr, write_record_files
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import migrate

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)
HOSTILE = [
    "".join(chr(c) for c in range(1, 32)) + "\x7f",  # every C0 control (whitespace ones collapse) and DEL
    "a\x1cb\x1dc\x1ed\x1fe",  # str.isspace() separators: canonical() splits on them
    "\u200fמספר\u200e 123 \u202eabc\u202c \u2066x\u2069",  # RTL/LTR marks, overrides, isolates
    "👩🏽‍💻 🇨🇴 ❤️ e\u0301 Å",  # ZWJ sequence, flag, variation selector, combining accent (NFC)
    "O'Brien \"quoted\" `tick` ''",
    "back\\slash \\\\ \\N \\t \\x00 C:\\dir\\",
    "\\.",  # COPY's end-of-data marker in text format
    "\\N",  # COPY's NULL in text format
    '"",",;\r\n|\ttab',  # CSV metacharacters (the newline and tab collapse)
    "NULL",
    "=cmd|' /C calc'!A0",  # a spreadsheet formula: stored as text, never interpreted
    "x" * 200_000,  # very long (TEXT is unbounded)
]
TEXT_FIELDS = ("nombres_apellidos", "cuerpo_reclamacion", "comentarios", "tipo_pqr", "finalizar")


def _records() -> list[dict[str, Any]]:
    out = []
    for i, value in enumerate(HOSTILE, start=1):
        record = fake_pqr("afinia", DAY, i, seed=21)
        for f in TEXT_FIELDS:
            record[f] = value
        record["nic"] = value[:50]  # a bounded field too (50 characters)
        out.append(record)
    return out


def _write(data_dir: Path, records: list[dict[str, Any]], minutes: int) -> None:
    folder = landing_dir(data_dir, "afinia")
    folder.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records, start=1):
        filed = dt.datetime.strptime(record["fecha"], "%Y/%m/%d %H:%M")
        write_record_files(folder, record, filed + dt.timedelta(minutes=minutes), i)


def _frame(data_dir: Path) -> pl.DataFrame:
    index = LandingIndex(data_dir)
    index.refresh("afinia", TODAY)
    return partition_frame(index, "afinia", DAY, TODAY)


def _stored(conninfo: dict[str, Any]) -> dict[str, tuple[dict[str, str], str]]:
    """radicado -> (the 18 values as the hash sees them, stored hash_registro)."""
    cols = ", ".join("to_char(fecha, 'YYYY-MM-DD\"T\"HH24:MI:SS')" if f == "fecha" else f for f in BUSINESS_FIELDS)
    with psycopg.connect(**conninfo) as conn:
        rows = conn.execute(f"SELECT {cols}, hash_registro FROM data_general.ov_afinia").fetchall()
    return {
        r[BUSINESS_FIELDS.index("numero_radicado")]: (dict(zip(BUSINESS_FIELDS, r[:-1], strict=True)), r[-1])
        for r in rows
    }


def _assert_round_trip(conninfo: dict[str, Any], records: list[dict[str, Any]], frame: pl.DataFrame) -> None:
    stored = _stored(conninfo)
    winners = {r["numero_radicado"]: r for r in frame.filter(pl.col("is_winner")).iter_rows(named=True)}
    assert set(stored) == {r["numero_radicado"] for r in records} == set(winners)
    for record in records:
        values, stored_hash = stored[record["numero_radicado"]]
        for f in (*TEXT_FIELDS, "nic"):
            assert values[f] == canonical(record[f]), (record["numero_radicado"], f)
            assert values[f] == winners[record["numero_radicado"]][f]
        assert hash_registro(values) == stored_hash == winners[record["numero_radicado"]]["hash_registro"]


def test_hostile_strings_round_trip_through_copy(pg_conninfo, data_dir):
    records = _records()
    assert any("\x1c" in canonical(v) or "\u202e" in canonical(v) for v in HOSTILE)  # not all collapse away
    _write(data_dir, records, minutes=10)
    migrate(pg_conninfo)
    frame = _frame(data_dir)
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        first = loading.load_partition(conn, "afinia", DAY, frame, "hostile-1")
    assert first.db_inserted == len(records)
    _assert_round_trip(pg_conninfo, records, frame)

    # A newer version of each (status changed): the staged COPY and the update path.
    newer = [dict(r, estado_solicitud="Finalizado", comentarios=r["comentarios"] + " \\.") for r in records]
    _write(data_dir, newer, minutes=90)
    frame = _frame(data_dir)
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        second = loading.load_partition(conn, "afinia", DAY, frame, "hostile-2")
    assert second.db_updated == len(records)
    _assert_round_trip(pg_conninfo, newer, frame)


def test_nul_is_rejected_before_the_load_and_the_rest_loads(pg_conninfo, data_dir):
    records = _records()[:3]
    _write(data_dir, records, minutes=10)
    nul = fake_pqr("afinia", DAY, 99, seed=21)
    folder = landing_dir(data_dir, "afinia")
    (folder / "NUL1_data_20251008_230000.json").write_text(
        json.dumps(dict(nul, comentarios="before\u0000after")), encoding="utf-8"
    )
    migrate(pg_conninfo)
    frame = _frame(data_dir)
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        counts = loading.load_partition(conn, "afinia", DAY, frame, "nul")
        reasons = conn.execute(
            "SELECT reason_code, detail FROM data_general.ov_rejects WHERE file_name = %s",
            ("NUL1_data_20251008_230000.json",),
        ).fetchall()
    assert counts.db_inserted == len(records)
    assert reasons == [("undecodable", "field comentarios holds U+0000 (NUL), which PostgreSQL text cannot store")]
