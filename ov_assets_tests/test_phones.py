"""Phones and e-mails (issue 19, acceptance 4): ``phonenumbers`` decides telefono_invalid /
celular_invalid for Colombia and gives the E.164 columns; ``email-validator`` decides
email_invalid; hash_registro is unchanged (a corpus hashed by the code before this change)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import string
from pathlib import Path
from typing import Any

import email_validator
import phonenumbers
import polars as pl
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from ov_assets.core import contacts, dictionary
from ov_assets.core.contacts import email_valid, phone_e164
from ov_assets.core.contract import ValidRecord, validate_record
from ov_assets.core.file_names import landing_dir
from ov_assets.devkit.generator import write_record_files
from ov_assets.fs import private_dir
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading, migrations
from ov_assets_tests import loadkit
from ov_assets_tests.loadkit import TODAY, migrate, partition_keys

CORPUS = Path(__file__).resolve().parent / "data" / "hash_corpus_before_phones.json"

# (number as typed, valid Colombian number?) -- the verdicts are Colombia's numbering plan as
# phonenumbers 9.0 knows it; the test also asks phonenumbers itself for each.
COLOMBIAN: list[tuple[str, bool]] = [
    # mobiles 3xx
    ("3001234567", True),
    ("3101234567", True),
    ("3201234567", True),
    ("3241234567", True),
    ("3501234567", True),
    ("3701234567", True),
    # fixed lines since 2021: 60 + area (1 Bogotá, 2 Cali, 4 Medellín, 5 costa, 6, 7, 8) + 7 digits
    ("6013456789", True),
    ("6023456789", True),
    ("6043456789", True),
    ("6053456789", True),
    ("6063456789", True),
    ("6073456789", True),
    ("6083456789", True),
    # prefixes, spaces, dashes, dots, brackets
    ("+57 300 123 4567", True),
    ("+573001234567", True),
    ("57 300 123 4567", True),
    ("573001234567", True),
    ("300-123-4567", True),
    ("300.123.4567", True),
    ("(605) 345-6789", True),
    ("+57 (601) 345 6789", True),
    ("+57-605-345-6789", True),
    ("60 1 345 6789", True),
    # unassigned ranges (the old regex accepted every one of them)
    ("3991234567", False),
    ("3361234567", False),
    ("3801234567", False),
    ("3061234567", False),
    ("3251234567", False),
    ("6093456789", False),
    ("6003456789", False),
    ("6051234567", False),
    ("+57 399 123 4567", False),
    ("57 609 345 6789", False),
    # too short, too long, old 7-digit landlines, nonsense
    ("300123456", False),
    ("30012345678", False),
    ("5730012345", False),
    ("1234567", False),
    ("0000000000", False),
    ("03001234567", False),
]


def _library_e164(value: str) -> str | None:
    """phonenumbers alone: the reference our verdict must equal."""
    try:
        number = phonenumbers.parse(value, "CO")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(number, "CO"):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _library_email(value: str) -> bool:
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def _record(**fields: str) -> dict[str, Any]:
    base = dict.fromkeys(dictionary.BUSINESS, "")
    base.update(numero_radicado="202510061000001", fecha="2025/10/06 10:00", estado_solicitud="Recibido")
    base.update(fields)
    return base


def _valid(obj: dict[str, Any]) -> ValidRecord:
    out = validate_record(obj, TODAY)
    assert isinstance(out, ValidRecord)
    return out


@pytest.mark.parametrize(("value", "expected"), COLOMBIAN, ids=[v for v, _ in COLOMBIAN])
def test_phone_rules_agree_with_phonenumbers(value: str, expected: bool) -> None:
    number = phonenumbers.parse(value, "CO")
    assert phonenumbers.is_valid_number(number) is expected  # the table says what the library says
    e164 = phone_e164(value)
    assert (e164 is not None) is expected
    if expected:
        assert e164 == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert e164 is not None and e164.startswith("+57") and e164[1:].isdigit()
    for field in ("telefono", "celular"):
        warnings = _valid(_record(**{field: value})).warnings
        assert (f"{field}_invalid" in warnings) is not expected, (field, value)


@pytest.mark.parametrize("value", ["+1 202 555 0143", "+44 20 7946 0958", "+58 412 1234567"])
def test_valid_foreign_numbers_are_not_colombian(value: str) -> None:
    assert phonenumbers.is_valid_number(phonenumbers.parse(value, "CO"))
    assert phone_e164(value) is None
    assert _valid(_record(celular=value)).warnings == ["celular_invalid"]


def test_text_that_is_no_number_is_invalid_and_empty_is_no_warning() -> None:
    assert phone_e164("abc") is None and phone_e164("") is None
    assert _valid(_record(telefono="sin teléfono")).warnings == ["telefono_invalid"]
    assert _valid(_record(telefono="", celular="")).warnings == []


_NOISE = st.sampled_from([" ", "-", ".", "(", ")", "  "])


@st.composite
def _typed_numbers(draw: st.DrawFn) -> str:
    """Numbers in the fast path's forms, assigned or not, with prefixes and noise anywhere."""
    head = draw(st.sampled_from(["3", "30", "31", "32", "33", "35", "37", "39", "60", "601", "605", "609", "6"]))
    digits = head + draw(st.text("0123456789", min_size=10 - len(head) - 1, max_size=10 - len(head) + 1))
    text = draw(st.sampled_from(["", "57", "+57", "+57 ", "57-", "(+57) ", "+", "5"])) + digits
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_NOISE) + text[at:]
    return text


@settings(max_examples=3000, deadline=None)
@given(_typed_numbers())
def test_fast_path_equals_phonenumbers(value: str) -> None:
    assert phone_e164(value) == _library_e164(value)


@settings(max_examples=500, deadline=None)
@given(st.text(string.digits + string.ascii_letters + " +-().#/x", max_size=24))
def test_any_string_equals_phonenumbers(value: str) -> None:
    assert phone_e164(value) == _library_e164(value)


EMAILS: list[tuple[str, bool]] = [
    ("ana.perez+pqr@mail.example.co", True),
    ("julian.gomez506@correo.example.co", True),
    ("A.B@EXAMPLE.COM", True),
    ("a@b.c", True),
    ("ñandú@example.com", True),
    ("ana@", False),
    ("ana perez@example.com", False),
    ("ana@example", False),
    ("a..b@example.com", False),
    (".ana@example.com", False),
    ("ana@-example.com", False),
    ("ana@x.test", False),  # special-use domain
    ("ana@localhost", False),
    ("Ana <ana@example.com>", False),
    ('"ana"@example.com', False),
    ("a" * 65 + "@example.com", True),  # over 64 before the @: only strict mode refuses it
]


@pytest.mark.parametrize(("value", "expected"), EMAILS, ids=[v[:30] for v, _ in EMAILS])
def test_email_rule_is_email_validators(value: str, expected: bool) -> None:
    assert _library_email(value) is expected
    assert email_valid(value) is expected
    assert ("email_invalid" in _valid(_record(correo_electronico=value)).warnings) is not expected


_LOCAL = st.text(string.ascii_letters + string.digits + "._-+!#ñ \"'@", min_size=0, max_size=70)
_DOMAIN = st.sampled_from(
    [
        "example.com",
        "x.co",
        "a-b.c",
        "localhost",
        "x.test",
        "123.45",
        "-a.com",
        "a-.com",
        "a..b",
        "b.c1",
        "x" * 64 + ".co",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(_LOCAL, st.one_of(_DOMAIN, st.text(string.ascii_lowercase + string.digits + ".-", max_size=20)))
def test_email_fast_path_equals_email_validator(local: str, domain: str) -> None:
    value = f"{local}@{domain}"
    assert email_valid(value) is _library_email(value)


def _corpus() -> list[dict[str, Any]]:
    return json.loads(CORPUS.read_text(encoding="utf-8"))


def test_hashes_unchanged_and_warnings_follow_the_libraries() -> None:
    corpus = _corpus()
    assert len(corpus) >= 60
    changed = 0
    for item in corpus:
        rec = item["record"]
        out = _valid(rec)
        assert out.hash_registro == item["hash_registro"], rec["numero_radicado"]
        for field in ("telefono", "celular"):
            assert (f"{field}_invalid" in out.warnings) == bool(rec[field] and _library_e164(rec[field]) is None)
        assert ("email_invalid" in out.warnings) == bool(
            rec["correo_electronico"] and not _library_email(rec["correo_electronico"])
        )
        changed += out.warnings != item["warnings_before"]
    assert changed > 0  # the corpus holds numbers the old regex judged otherwise


def _write_corpus(data_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The corpus as landing files (afinia's first 10+ radicados, aire's by their digit)."""
    out = {}
    stamp = dt.datetime(2025, 10, 8, 9, 0)
    for k, item in enumerate(_corpus()):
        rec = item["record"]
        empresa = "aire" if rec["numero_radicado"][8] == "2" else "afinia"
        folder = landing_dir(data_dir, empresa)
        private_dir(folder)
        write_record_files(folder, rec, stamp + dt.timedelta(minutes=k), k + 1)
        out[(empresa, rec["numero_radicado"])] = item
    return out


def _frames(data_dir: Path) -> pl.DataFrame:
    index = LandingIndex(data_dir)
    frames = []
    for empresa in ("afinia", "aire"):
        index.refresh(empresa, TODAY)
        frames += [partition_frame(index, empresa, day, TODAY) for day in (dt.date(2025, 10, 6), dt.date(2025, 10, 7))]
    return pl.concat(frames)


def test_loaded_table_has_the_e164_columns_and_the_same_hashes(pg_conninfo18: dict[str, Any], data_dir: Path) -> None:
    expected = _write_corpus(data_dir)
    frame = _frames(data_dir)
    migrate(pg_conninfo18)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        loading.load_partitions(conn, partition_keys(frame), frame, "phones-run")
        rows = conn.execute(
            "SELECT empresa, numero_radicado, telefono, celular, hash_registro, telefono_e164, celular_e164 "
            "FROM data_general.ov_pqr"
        ).fetchall()
    assert {(e, r) for e, r, *_ in rows} == set(expected)
    filled = 0
    for empresa, radicado, telefono, celular, hreg, tel_e164, cel_e164 in rows:
        assert hreg == expected[(empresa, radicado)]["hash_registro"], radicado
        assert tel_e164 == _library_e164(telefono) if telefono else tel_e164 is None
        assert cel_e164 == _library_e164(celular) if celular else cel_e164 is None
        filled += (tel_e164 is not None) + (cel_e164 is not None)
    assert filled > 40


def _insert_rows(conn: psycopg.Connection, rows: list[tuple[str, str, str]]) -> None:
    for radicado, telefono, celular in rows:
        conn.execute(
            "INSERT INTO data_general.ov_aire (numero_radicado, fecha, telefono, celular, estado_solicitud, "
            "hash_registro) VALUES (%s, '2025-10-06 10:00', %s, %s, 'Recibido', %s)",
            (radicado, telefono, celular, radicado.rjust(64, "0")),
        )


def test_migration_011_fills_the_rows_stored_before_it(pg_conninfo18: dict[str, Any], tmp_path: Path) -> None:
    before = tmp_path / "sql"
    before.mkdir()
    for m in migrations.available():
        if m.version < "011_":
            shutil.copy(m.path, before / m.path.name)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        migrations.apply_all(conn, before)
        _insert_rows(
            conn, [("r1", "605 345 6789", "3001234567"), ("r2", "6093456789", ""), ("r3", "", "+57 310 1234567")]
        )
        assert migrations.apply_all(conn)[-2:] == ["011_phone_e164", migrations.DICTIONARY]
        comments = dict(
            conn.execute(
                "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
                "WHERE attrelid = 'data_general.ov_aire'::regclass AND attname IN ('telefono_e164', 'celular_e164')"
            ).fetchall()
        )
        got = conn.execute(
            "SELECT numero_radicado, telefono_e164, celular_e164, hash_registro FROM data_general.ov_aire ORDER BY 1"
        ).fetchall()
    assert [r[:3] for r in got] == [
        ("r1", "+576053456789", "+573001234567"),
        ("r2", None, None),
        ("r3", None, "+573101234567"),
    ]
    assert [r[3] for r in got] == [r.rjust(64, "0") for r in ("r1", "r2", "r3")]  # nothing else touched
    # the new columns have the dictionary's comments: the file re-arms the dictionary step
    described = {c.name: c.description for c in dictionary.relation("ov_aire").columns}
    assert comments == {c: described[c] for c in ("telefono_e164", "celular_e164")}


def test_e164_columns_are_personal(pg_conninfo18: dict[str, Any]) -> None:
    migrate(pg_conninfo18)
    masked = {c.name for c in dictionary.OV_PQR_MASKED.columns}
    assert {"telefono_e164", "celular_e164"} <= set(dictionary.personal_columns("ov_pqr")) - masked
    analyst, personal = dictionary.ANALYST_ROLE, dictionary.PERSONAL_ROLE
    with loadkit.login_roles(pg_conninfo18, analyst, personal) as users:
        with psycopg.connect(**users[analyst], autocommit=True) as conn:
            for table in ("ov_afinia", "ov_aire", "ov_aire_history", "ov_pqr"):
                for column in ("telefono_e164", "celular_e164"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(
                            sql.SQL("SELECT {} FROM {}").format(
                                sql.Identifier(column), sql.Identifier(dictionary.SCHEMA, table)
                            )
                        )
            with pytest.raises(psycopg.errors.UndefinedColumn):
                conn.execute("SELECT telefono_e164 FROM data_general.ov_pqr_masked")
        with psycopg.connect(**users[personal], autocommit=True) as conn:
            conn.execute("SELECT telefono_e164, celular_e164 FROM data_general.ov_pqr")


def test_cache_is_per_distinct_string() -> None:
    contacts._phone_e164_parsed.cache_clear()
    for _ in range(3):
        phone_e164("tel 300 123 4567")
    info = contacts._phone_e164_parsed.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_generated_days_carry_assigned_phones_only() -> None:
    """The demo generator writes numbers Colombia's plan assigns, so a generated day's phone
    warnings come from the bad corpora only (it used to draw unassigned 306-309 mobiles)."""
    from ov_assets.devkit.generator import fake_pqr

    records = [
        fake_pqr(empresa, TODAY, i, seed=seed) for empresa in ("afinia", "aire") for i in range(300) for seed in (0, 1)
    ]
    phones = [r[field] for r in records for field in ("telefono", "celular") if r[field]]
    assert len(phones) > 1000
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p, "CO")) for p in phones)
    warned = {w for r in records for w in _valid(r).warnings if w in {"telefono_invalid", "celular_invalid"}}
    assert not warned
