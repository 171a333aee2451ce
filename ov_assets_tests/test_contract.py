"""CONTRACT §3-§4, one test (or parametrized case) per rule: each fails if its rule is broken."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov_assets.core.contract import (
    BUSINESS_FIELDS,
    FIELD_LIMITS,
    REQUIRED_FIELDS,
    Reject,
    ValidRecord,
    canonical,
    canonical_with_flag,
    hash_registro,
    parse_fecha,
    repair,
    validate_record,
)
from ov_assets.core.records import decode_bytes, evaluate_file
from ov_assets_tests.bad_corpus import base_record

DAY = dt.date(2025, 10, 8)
TODAY = dt.date(2025, 10, 9)


def rec(**over: object) -> dict:
    return base_record(DAY, "202510080012345", **over)


def valid(obj: dict) -> ValidRecord:
    out = validate_record(obj, TODAY)
    assert isinstance(out, ValidRecord), out
    return out


def rejected(obj: dict) -> Reject:
    out = validate_record(obj, TODAY)
    assert isinstance(out, Reject), out
    return out


# --- decoding -----------------------------------------------------------------------------------


def test_utf8_with_and_without_bom_decode_alike() -> None:
    data = json.dumps(rec(), ensure_ascii=False).encode()
    plain, bom = decode_bytes(data), decode_bytes(b"\xef\xbb\xbf" + data)
    assert plain == bom == (rec(), [])


def test_cp1252_fallback_is_flagged() -> None:
    data = json.dumps(rec(nombres_apellidos="Peñaloza Ñáñez “Jr”"), ensure_ascii=False).encode("cp1252")
    obj, warnings = decode_bytes(data)
    assert obj["nombres_apellidos"] == "Peñaloza Ñáñez “Jr”"
    assert warnings == ["decoded_cp1252"]
    out = evaluate_file("X_data_20251008_100000.json", data, "0" * 64, TODAY)
    assert out.record is not None and out.record.warnings == ["decoded_cp1252"]


def test_undecodable_bytes() -> None:
    assert decode_bytes(b'{"a": "\x81"}').code == "undecodable"  # 0x81 is undefined in cp1252


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", "empty_file"),
        (b" \n", "empty_file"),
        (b"{", "invalid_json"),
        (b"[]", "not_an_object"),
        (b'"x"', "not_an_object"),
        (b'{"a": 1, "a": 2}', "invalid_json"),
    ],
)
def test_file_level_rejects(data: bytes, code: str) -> None:
    assert decode_bytes(data).code == code


@pytest.mark.parametrize(
    "broken,fixed",
    [
        ("ReclamaciÃ³n", "Reclamación"),
        ("Ã‘Ã¡Ã±ez PeÃ±aloza", "Ñáñez Peñaloza"),
        ("FacturaciÃ³n de energÃ­a", "Facturación de energía"),
    ],
)
def test_mojibake_is_repaired_and_flagged(broken: str, fixed: str) -> None:
    assert canonical_with_flag(broken) == (fixed, True)
    out = valid(rec(cuerpo_reclamacion=broken))
    assert out.values["cuerpo_reclamacion"] == fixed
    assert "text_repaired" in out.warnings


@pytest.mark.parametrize(
    "text",
    [
        "“comillas” ‘curvas’ — guion",
        "&amp; &lt;b&gt; &#233;",
        "ﬁ ﬂ ｆｕｌｌ ① ²",
        "Ñáñez Peñaloza",
        "½ kWh ¿qué?",
    ],
)
def test_repair_changes_nothing_else(text: str) -> None:
    """No quote straightening, no entity unescaping, no NFKC; correct Spanish is not 'repaired'."""
    assert repair(text) == text
    assert canonical_with_flag(text) == (text, False)
    mixed = "ReclamaciÃ³n " + text
    assert canonical(mixed) == "Reclamación " + text


def test_nfc_is_not_a_repair() -> None:
    value, flagged = canonical_with_flag("Jose\u0301 Mun\u0303oz")
    assert value == "José Muñoz" and not flagged
    assert "text_repaired" not in valid(rec(nombres_apellidos="Jose\u0301")).warnings


# --- canonical values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        (None, ""),
        ("", ""),
        ("  a  b  ", "a b"),
        ("a\tb\nc\r\nd", "a b c d"),
        ("a\x1cb\x1dc\x1ed\x1fe", "a b c d e"),
        ("a\u00a0b\u2003c\u3000d\u2028e", "a b c d e"),
        ("e\x85f", "e…f"),  # a C1 control is cp1252 misread as Latin-1: ftfy.fix_encoding restores it
        ("a\x0bb\x0cc", "a b c"),
        (123, "123"),
        (True, "True"),
        (1.5, "1.5"),
    ],
)
def test_canonical(raw: object, expected: str) -> None:
    assert canonical(raw) == expected


def _reference_canonical(v: object) -> str:
    import ftfy

    s = "" if v is None else str(v)
    return " ".join(unicodedata.normalize("NFC", ftfy.fix_encoding(s)).split())


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*"abcñÑáéíóúü ¿?\t\n\x1c\x1f\u00a0\u0301", "Ã³", "Ã±", "Ã¡", "Â"])).map("".join))
def test_canonical_matches_the_contract_formula(text: str) -> None:
    assert canonical(text) == _reference_canonical(text)


# --- fecha ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2025/10/08 09:32",
        "2025/10/08 09:32:00",
        "2025-10-08 09:32",
        "2025-10-08 09:32:00",
        "2025-10-08T09:32",
        "2025-10-08T09:32:00",
        "08/10/2025 09:32",
        "08/10/2025 09:32:00",
        "  2025/10/08   09:32 ",
    ],
)
def test_accepted_fecha_formats(raw: str) -> None:
    out = valid(rec(fecha=raw))
    assert out.values["fecha"] == "2025-10-08T09:32:00"
    assert out.fecha == dt.datetime(2025, 10, 8, 9, 32)


def test_fecha_seconds_kept() -> None:
    assert valid(rec(fecha="08/10/2025 09:32:17")).values["fecha"] == "2025-10-08T09:32:17"


@pytest.mark.parametrize(
    "raw",
    [
        "ayer",
        "2025/10/08",
        "09:32",
        "2025/13/01 09:32",
        "2023/02/29 10:00",
        "2025/10/08 24:00",
        "2025/1/8 9:32",
        "08-10-2025 09:32",
        "2025/10-08 09:32",
        "٢٠٢٥/١٠/٠٨ ٠٩:٣٢",
        "2025/10/08 09:32 PM",
        "20251008_093200",
    ],
)
def test_bad_fecha(raw: str) -> None:
    out = rejected(rec(fecha=raw))
    assert out.code == "bad_fecha" and "fecha" in out.detail
    assert parse_fecha(raw.strip()) is None


@pytest.mark.parametrize(
    "raw,ok",
    [
        ("2020/09/30 23:59", False),
        ("2020/10/01 00:00", True),
        ("2025/10/09 23:59", True),
        ("2025/10/10 00:00", False),
    ],
)
def test_fecha_range(raw: str, ok: bool) -> None:
    out = validate_record(rec(fecha=raw), TODAY)
    if ok:
        assert isinstance(out, ValidRecord)
    else:
        assert isinstance(out, Reject) and out.code == "fecha_out_of_range" and "fecha" in out.detail


# --- hard rejects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
@pytest.mark.parametrize("value", ["<absent>", None, "", "   ", "\t\x1f\n"])
def test_missing_required(field: str, value: object) -> None:
    obj = rec()
    if value == "<absent>":
        del obj[field]
    else:
        obj[field] = value
    out = rejected(obj)
    assert out.code == "missing_required" and field in out.detail


@pytest.mark.parametrize("field,limit", sorted(FIELD_LIMITS.items()))
def test_value_too_long(field: str, limit: int) -> None:
    at_limit = ("a" * (limit - 12) + "@example.com") if field == "correo_electronico" else "7" * limit
    over = ("a" * (limit - 11) + "@example.com") if field == "correo_electronico" else "7" * (limit + 1)
    assert isinstance(validate_record(rec(**{field: at_limit}), TODAY), ValidRecord)
    out = rejected(rec(**{field: over}))
    assert out.code == "value_too_long" and field in out.detail


def test_length_is_of_the_canonical_value() -> None:
    assert isinstance(validate_record(rec(nic="  " + "7" * 50 + "  "), TODAY), ValidRecord)


@pytest.mark.parametrize("field", [f for f in BUSINESS_FIELDS if f not in FIELD_LIMITS and f != "fecha"])
def test_other_fields_unbounded(field: str) -> None:
    big = "x" * 200_000
    out = valid(rec(**{field: big}))
    assert out.values[field] == big


# --- soft rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,warning",
    [
        ("nic", "12345", None),
        ("nic", "123456789012", None),
        ("nic", "1234", "nic_invalid"),
        ("nic", "1234567890123", "nic_invalid"),
        ("nic", "73O1245", "nic_invalid"),
        ("nic", "", None),
        ("correo_electronico", "ana.perez+pqr@mail.example.co", None),
        ("correo_electronico", "ana@", "email_invalid"),
        ("correo_electronico", "ana perez@example.com", "email_invalid"),
        ("correo_electronico", "ana@example", "email_invalid"),
        ("celular", "3001234567", None),
        ("celular", "300 123 4567", None),
        ("celular", "+57 300 123 4567", None),
        ("celular", "+573001234567", None),
        ("celular", "300-123-4567", None),
        ("celular", "(300) 123 4567", None),
        ("celular", "2001234567", "celular_invalid"),
        ("celular", "300123456", "celular_invalid"),
        ("celular", "30012345678", "celular_invalid"),
        ("celular", "+1 300 123 4567", "celular_invalid"),
        ("celular", "5730012345", "celular_invalid"),
        ("celular", "tel 3001234567", None),  # phonenumbers reads the number out of the text
        ("telefono", "6053456789", None),
        ("telefono", "605 345 6789", None),
        ("telefono", "+57 601 234 5678", None),
        ("telefono", "3456789", "telefono_invalid"),
        ("telefono", "6153456789", "telefono_invalid"),
        ("telefono", "0000000000", "telefono_invalid"),
        ("documento_identidad", "1045678912", None),
        ("documento_identidad", "900123456-7", None),
        ("documento_identidad", "CC1045678912", "documento_invalid"),
        ("documento_identidad", "1.045.678.912", "documento_invalid"),
        ("documento_identidad", "900123456-78", "documento_invalid"),
    ],
)
def test_soft_rules(field: str, value: str, warning: str | None) -> None:
    out = valid(rec(**{field: value}))
    expected = [warning] if warning else []
    assert out.warnings == expected


def test_unknown_keys() -> None:
    assert valid(rec()).warnings == []
    assert valid(rec(tabla_historial=[{"a": 1}], tabla_x="y")).warnings == []
    assert valid(rec(otro="x")).warnings == ["unknown_keys"]
    meta_only = {k: v for k, v in rec().items() if k in BUSINESS_FIELDS}
    assert valid(meta_only).warnings == []  # extraction metadata is optional


def test_warnings_are_codes_and_the_row_loads() -> None:
    out = valid(rec(nic="x", otro=1, cuerpo_reclamacion="ReclamaciÃ³n"))
    assert out.warnings == ["nic_invalid", "unknown_keys", "text_repaired"]


# --- hash_registro ------------------------------------------------------------------------------

_REF_FIELDS = (
    "nic",
    "fecha",
    "documento_identidad",
    "nombres_apellidos",
    "lectura",
    "correo_electronico",
    "telefono",
    "celular",
    "tipo_pqr",
    "canal_respuesta",
    "documento_prueba",
    "cuerpo_reclamacion",
    "numero_radicado",
    "estado_solicitud",
    "finalizar",
    "adjuntar_archivo",
    "numero_reclamo_sgc",
    "comentarios",
)


def _reference_hash(obj: dict) -> str:
    """CONTRACT §4 written out independently (nothing from ov_assets)."""
    import ftfy

    def canon(v: object) -> str:
        s = "" if v is None else str(v)
        return " ".join(unicodedata.normalize("NFC", ftfy.fix_encoding(s)).split())

    vals = [canon(obj.get(f)) for f in _REF_FIELDS]
    raw = vals[1]
    for fmt in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M"):
        try:
            vals[1] = dt.datetime.strptime(raw, fmt).strftime("%Y-%m-%dT%H:%M:%S")
            break
        except ValueError:
            pass
    return hashlib.sha256("\x1f".join(vals).encode("utf-8")).hexdigest()


def test_field_order_is_the_contracts() -> None:
    assert BUSINESS_FIELDS == _REF_FIELDS


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"fecha": "2025-10-08 09:32:00"},
        {"fecha": "08/10/2025 09:32"},
        {"nombres_apellidos": "  José\u0301\x1e Ñ "},
        {"cuerpo_reclamacion": "ReclamaciÃ³n “x”"},
        {"lectura": 12345},
        {"comentarios": None},
        {"finalizar": "😀"},
    ],
)
def test_hash_matches_reference(over: dict) -> None:
    obj = rec(**over)
    out = valid(obj)
    assert out.hash_registro == _reference_hash(obj)
    assert out.hash_registro == hash_registro(out.values)
    assert out.values["fecha"].count("T") == 1  # hashed in its canonical ISO form


@pytest.mark.parametrize("field", [f for f in BUSINESS_FIELDS if f not in ("fecha",)])
def test_any_business_change_changes_the_hash(field: str) -> None:
    base = valid(rec())
    changed = valid(rec(**{field: (rec().get(field) or "") + "1"}))
    assert base.hash_registro != changed.hash_registro


def test_status_change_is_an_update_and_metadata_is_not() -> None:
    a, b = valid(rec(estado_solicitud="Radicado")), valid(rec(estado_solicitud="Finalizado"))
    assert a.hash_registro != b.hash_registro
    assert (
        valid(rec(extraction_timestamp="20251009_000000", page_title="x", tabla_y="z")).hash_registro
        == valid(rec()).hash_registro
    )
    assert valid(rec(fecha="2025/10/08 09:33")).hash_registro != valid(rec()).hash_registro


def test_separator_prevents_shifting() -> None:
    a = valid(rec(lectura="ab", correo_electronico=""))
    b = valid(rec(lectura="a", correo_electronico="b"))
    assert a.hash_registro != b.hash_registro


def test_nul_character_in_a_value_rejects_the_record() -> None:
    """A JSON ``\\u0000`` decodes to U+0000, which PostgreSQL text refuses: loading it would fail
    the whole partition, so the record is rejected alone, naming the field."""
    import datetime as _dt

    from ov_assets.core.contract import Reject, validate_record

    obj = {
        "numero_radicado": "202510080012345",
        "fecha": "2025/10/08 09:32",
        "estado_solicitud": "Finalizado",
        "comentarios": "antes\u0000despues",
    }
    out = validate_record(obj, _dt.date(2026, 1, 1))
    assert isinstance(out, Reject) and out.code == "undecodable" and "comentarios" in out.detail
    obj["comentarios"] = "antes despues"
    assert not isinstance(validate_record(obj, _dt.date(2026, 1, 1)), Reject)


# --- the fast paths compute exactly the same values -------------------------------------------


def test_split_spaces_are_what_str_split_splits_on() -> None:
    import sys

    from ov_assets.core.contract import SPLIT_SPACES

    assert set(SPLIT_SPACES) | {" "} == {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}


def test_mojibake_prefilter_catches_everything_ftfy_would_look_at() -> None:
    """The cheap pre-filter in front of ftfy is a superset of ``ftfy.badness.is_bad`` on every
    string of up to two characters over ASCII, the Spanish letters and the inverted marks, and
    of three over the Spanish letters with some ASCII (all of ftfy's patterns that can match
    such text are that short; the longer ones need other characters)."""
    import itertools

    from ftfy.badness import is_bad

    from ov_assets.core.contract import _maybe_mojibake

    spanish = list("áéíóúüñÁÉÍÓÚÜÑ¿¡")
    alphabet = spanish + [chr(i) for i in range(128)]
    for n, letters in ((1, alphabet), (2, alphabet), (3, spanish + list("aZ0 ._\n-"))):
        for chars in itertools.product(letters, repeat=n):
            s = "".join(chars)
            assert not is_bad(s) or _maybe_mojibake(s), repr(s)


def test_plain_text_class_holds_only_text_every_check_passes() -> None:
    """``canonical_fast`` skips the mojibake, NFC and whitespace checks for text with no
    character outside ``_PLAIN``'s allowed set: every such character, alone and in pairs, must
    pass all three (a combining mark or a split space in the set would break it)."""
    import itertools

    from ov_assets.core.contract import _PLAIN, SPLIT_SPACES, _maybe_mojibake

    allowed = [chr(i) for i in range(0x110000) if _PLAIN.search(chr(i)) is None]
    assert "a" in allowed and "ñ" in allowed and "\t" not in allowed and "Ñ" not in allowed
    for a, b in itertools.product(allowed, repeat=2):
        s = a + b
        assert not _maybe_mojibake(s) and unicodedata.is_normalized("NFC", s), repr(s)
        assert not any(c in SPLIT_SPACES for c in s), repr(s)


_PIECES = [*"abcAB09 ñÑáÁéÉíÍóÓúÚüÜ¿¡?.\t\n\x1c\x1f\x00\x85\u00a0\u0301\u2003", "Ã³", "Ã±", "Â", "  ", "ß"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=6).map("".join), min_size=18, max_size=18))
def test_fast_canonical_path_equals_the_field_by_field_one(values: list[str]) -> None:
    from ov_assets.core.contract import canonical_fast

    fast = canonical_fast(dict(zip(BUSINESS_FIELDS, values, strict=True)))
    assert fast is None or fast == [canonical(v) for v in values]
    if fast is not None:
        assert not any(canonical_with_flag(v)[1] for v in values)  # nothing was repaired
