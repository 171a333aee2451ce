"""The data contract (CONTRACT §3-§4) as pure functions: fields, limits, codes, canonical
values, ``hash_registro`` and the validation of one decoded record.

Nothing here imports Dagster, PostgreSQL or the file system: every rule is testable alone and
the same code serves the assets, the scraper, the benchmarks and the checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import ftfy

from ov_assets.core.contacts import email_valid, phone_e164

BOGOTA = ZoneInfo("America/Bogota")
EMPRESAS: tuple[str, ...] = ("afinia", "aire")
EMPRESA_DISPLAY: dict[str, str] = {"afinia": "Afinia", "aire": "Air-e"}
FIRST_DAY = dt.date(2020, 10, 1)

# The 18 business fields, in hash order (CONTRACT §3).
BUSINESS_FIELDS: tuple[str, ...] = (
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
METADATA_FIELDS: tuple[str, ...] = (
    "record_number",
    "sgc_number",
    "extraction_timestamp",
    "page_url",
    "page_title",
)
KNOWN_KEYS: frozenset[str] = frozenset(BUSINESS_FIELDS + METADATA_FIELDS)
REQUIRED_FIELDS: tuple[str, ...] = ("numero_radicado", "fecha", "estado_solicitud")
# Fields holding personal data: never in logs, metadata or alerts.
PERSONAL_FIELDS: tuple[str, ...] = (
    "nic",
    "documento_identidad",
    "nombres_apellidos",
    "correo_electronico",
    "telefono",
    "celular",
    "cuerpo_reclamacion",
    "comentarios",
)
FIELD_LIMITS: dict[str, int] = {
    "numero_radicado": 50,
    "numero_reclamo_sgc": 50,
    "nic": 50,
    "documento_identidad": 50,
    "telefono": 50,
    "celular": 50,
    "correo_electronico": 320,
}
# Statuses after which a PQR does not change any more (re-extraction skips them).
FINAL_STATUSES: frozenset[str] = frozenset({"Finalizado", "Cerrado", "Anulado"})

# File-level reject reasons.
EMPTY_FILE = "empty_file"
UNDECODABLE = "undecodable"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
# Record-level reject reasons.
MISSING_REQUIRED = "missing_required"
BAD_FECHA = "bad_fecha"
FECHA_OUT_OF_RANGE = "fecha_out_of_range"
VALUE_TOO_LONG = "value_too_long"
# A string holds a lone surrogate (JSON "\ud800"): not text, so it cannot be encoded, hashed
# or stored; the detail names the field, never the value.
UNENCODABLE_VALUE = "unencodable_value"
# Reasons the landing index gives before (or instead of) reading a file's content: nothing of
# such a file is read as a record, and one of them never stops the other files.
BAD_FILE_NAME = "bad_file_name"  # the name is not valid UTF-8 (e.g. cp1252 names from Windows zips)
UNKNOWN_NAME = "unknown_name"  # the name is none of CONTRACT §2's (e.g. *.JSON, *.docx): not read
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a symbolic link (never followed), a folder, a FIFO...
RECORD_TOO_LARGE = "record_too_large"  # a record file above OV_MAX_RECORD_BYTES: not read
UNREADABLE = "unreadable"  # the file could not be read or evaluated (the error's class is kept)
LANDING_CODES: tuple[str, ...] = (BAD_FILE_NAME, UNKNOWN_NAME, NOT_A_REGULAR_FILE, RECORD_TOO_LARGE, UNREADABLE)
REJECT_CODES: tuple[str, ...] = (
    EMPTY_FILE,
    UNDECODABLE,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_REQUIRED,
    BAD_FECHA,
    FECHA_OUT_OF_RANGE,
    VALUE_TOO_LONG,
    UNENCODABLE_VALUE,
    *LANDING_CODES,
)
# documento_prueba / adjuntar_archivo name a landing file of another PQR: not linked (the file
# is neither stored nor listed as this PQR's).
REFERENCE_NOT_LINKED = "reference_not_linked"
# Soft warnings: the row loads, flagged.
WARNING_CODES: tuple[str, ...] = (
    "nic_invalid",
    "email_invalid",
    "telefono_invalid",
    "celular_invalid",
    "documento_invalid",
    "unknown_keys",
    "text_repaired",
    "decoded_cp1252",
    REFERENCE_NOT_LINKED,
)

HASH_SEPARATOR = "\x1f"
EXTRACTION_TS_FORMAT = "%Y%m%d_%H%M%S"

# ``repair`` is exactly ``ftfy.fix_encoding``, which returns its input unchanged unless
# ``ftfy.badness.is_bad`` finds a suspicious sequence (a costly regex). ``_MAYBE_MOJIBAKE`` is a
# cheap superset of it: every sequence ``is_bad`` finds holds a non-ASCII character outside
# plain Spanish letters, an inverted mark (¿ ¡) next to another non-ASCII character, or a
# lower-case accented letter (á é í ü ñ) followed by an upper-case one (Á É Í Ü Ñ). Checked
# exhaustively against ftfy 6.3's patterns for every string of up to three characters over ASCII
# and the Spanish letters, up to four with representative ASCII characters and up to five over
# the Spanish letters (ftfy's longer patterns all need other characters); a test re-checks it.
# Text without any of them skips ftfy: correct Spanish text ("Ibáñez") never pays for it.
_SPANISH_LETTERS = "áéíóúüñÁÉÍÓÚÜÑ"
_SPANISH = _SPANISH_LETTERS + "¿¡"
_MAYBE_MOJIBAKE = re.compile(f"[^\x00-\x7f{_SPANISH}]|[¿¡][^\x00-\x7f]|[^\x00-\x7f][¿¡]|[áéíüñ][ÁÉÍÜÑ]")
# Every character ``str.split()`` splits on (``str.isspace()``), the plain space aside; a test
# checks the list against Python's own. A value holding none of them, and no leading, trailing
# or double space, is already in canonical whitespace form.
SPLIT_SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPLIT_SPACE = re.compile(f"[{SPLIT_SPACES}]")
# The first test of ``_MAYBE_MOJIBAKE`` alone (one character class: fast); the others only
# matter when an inverted mark or an upper-case accented letter is present at all.
_SUSPECT_CHAR = re.compile(f"[^\x00-\x7f{_SPANISH}]")

# Text made only of ASCII (but the whitespace ``str.split`` splits on other than the space) and
# the lower-case Spanish letters and Ó Ú: ``_maybe_mojibake`` is False for it (no suspect
# character, no inverted mark, no upper-case letter of its last pattern), it is in NFC (no
# combining mark, every letter precomposed) and its only whitespace is the space. The usual
# record's values pass this one scan; anything it finds takes the three checks one by one.
_PLAIN = re.compile("[^\x00-\x08\x0e-\x1b\x20-\x7fáéíóúüñÓÚ]")


def _maybe_mojibake(text: str) -> bool:
    """``_MAYBE_MOJIBAKE.search(text)``, cheaply: plain str searches first (a regex with
    alternatives tries each of them at every character)."""
    if _SUSPECT_CHAR.search(text):
        return True
    if "¿" in text or "¡" in text or "Á" in text or "É" in text or "Í" in text or "Ü" in text or "Ñ" in text:
        return _MAYBE_MOJIBAKE.search(text) is not None
    return False


_FECHA_YMD = re.compile(
    r"([0-9]{4})(?:/([0-9]{2})/([0-9]{2}) |-([0-9]{2})-([0-9]{2})[ T])([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?"
)
_FECHA_DMY = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
_EXTRACTION_TS = re.compile(r"[0-9]{8}_[0-9]{6}")

# A document number: digits; a NIT may carry its check digit as digits-DV.
_DOCUMENTO = re.compile(r"[0-9]{3,15}(?:-[0-9])?")


def repair(text: str) -> str:
    """Undo UTF-8 misread as cp1252/Latin-1, and nothing else (no quote straightening,
    no entity unescaping, no NFKC)."""
    if text.isascii() or not _maybe_mojibake(text):
        return text
    return ftfy.fix_encoding(text)


def canonical_with_flag(value: Any) -> tuple[str, bool]:
    """The canonical value of a field and whether mojibake repair changed it."""
    if value is None:
        return "", False
    s = value if value.__class__ is str else str(value)
    if s.isascii():
        return " ".join(s.split()), False
    fixed = repair(s)
    return " ".join(unicodedata.normalize("NFC", fixed).split()), fixed != s


def canonical(value: Any) -> str:
    """CONTRACT §4 canonical value: repair, NFC, whitespace collapsed."""
    return canonical_with_flag(value)[0]


def parse_fecha(text: str) -> dt.datetime | None:
    """Parse a portal ``fecha`` in any accepted format; None when it is not a date."""
    m = _FECHA_YMD.fullmatch(text)
    if m:
        y, mo, d, mo2, d2, h, mi, s = m.groups()
        if mo is None:
            mo, d = mo2, d2
    else:
        m = _FECHA_DMY.fullmatch(text)
        if not m:
            return None
        d, mo, y, h, mi, s = m.groups()
    try:
        return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
    except ValueError:
        return None


def parse_extraction_ts(text: str | None) -> dt.datetime | None:
    """``YYYYMMDD_HHMMSS`` (Bogotá local time) or None."""
    if not text or text.__class__ is not str or not _EXTRACTION_TS.fullmatch(text):
        return None
    try:
        return dt.datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[11:13]), int(text[13:15])
        )
    except ValueError:
        return None


def hash_registro(values: dict[str, str]) -> str:
    """SHA-256 of the 18 canonical values in contract order, joined by U+001F."""
    joined = HASH_SEPARATOR.join(values[f] for f in BUSINESS_FIELDS)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def today_bogota() -> dt.date:
    return dt.datetime.now(BOGOTA).date()


@dataclass(frozen=True)
class Reject:
    """Why a file or a record was not loaded."""

    code: str
    detail: str


@dataclass
class ValidRecord:
    """One valid version of a PQR: canonical values, parsed fecha, hash and warnings."""

    values: dict[str, str]
    fecha: dt.datetime
    hash_registro: str
    warnings: list[str] = field(default_factory=list)


_FIELD_VALUES = operator.itemgetter(*BUSINESS_FIELDS)


def canonical_fast(obj: dict[str, Any]) -> list[str] | None:
    """The 18 canonical values, checked on all of them at once, when every field is present and
    a string and none needs repair or NFC (the usual record); None sends the record field by
    field through ``canonical_with_flag``. Same results: the values are joined with NUL (no value
    holds one, counted), and NUL is ASCII, so no check can match across two values."""
    try:
        joined = "\x00".join(_FIELD_VALUES(obj))
    except (KeyError, TypeError):  # a field absent, or a value that is not a string
        return None
    if joined.count("\x00") != len(BUSINESS_FIELDS) - 1:
        return None
    if _PLAIN.search(joined) is None:  # the usual record: one scan answers three questions
        vals = joined.split("\x00")
        if "  " in joined or " \x00" in joined or "\x00 " in joined or joined[:1] == " " or joined[-1:] == " ":
            return [" ".join(v.split()) for v in vals]
        return vals
    if not joined.isascii() and (_maybe_mojibake(joined) or not unicodedata.is_normalized("NFC", joined)):
        return None
    vals = joined.split("\x00")
    if (
        _SPLIT_SPACE.search(joined)
        or "  " in joined
        or " \x00" in joined
        or "\x00 " in joined
        or joined[:1] == " "
        or joined[-1:] == " "
    ):
        return [" ".join(v.split()) for v in vals]
    return vals


def validate_record(obj: dict[str, Any], today: dt.date) -> ValidRecord | Reject:
    """Apply CONTRACT §4 to one decoded JSON object.

    Hard rules give a ``Reject``; soft rules add warning codes to the ``ValidRecord``.
    ``fecha`` is stored and hashed in its canonical form ``YYYY-MM-DDTHH:MM:SS``.
    Never raises for any JSON object.
    """
    repaired = False
    vals = canonical_fast(obj)
    if vals is None:
        get = obj.get
        vals = []
        for name in BUSINESS_FIELDS:
            v = get(name)
            if v is None:
                vals.append("")
                continue
            s = v if v.__class__ is str else str(v)
            if s.isascii():
                vals.append(" ".join(s.split()))
            else:
                c, fixed = canonical_with_flag(s)
                vals.append(c)
                repaired = repaired or fixed
        if any("\x00" in v for v in vals):  # a JSON "\u0000": PostgreSQL text cannot hold it
            name = next(n for n, v in zip(BUSINESS_FIELDS, vals, strict=True) if "\x00" in v)
            return Reject(UNDECODABLE, f"field {name} holds U+0000 (NUL), which PostgreSQL text cannot store")
        unencodable = lone_surrogate_field(dict(zip(BUSINESS_FIELDS, vals, strict=True)))
        if unencodable is not None:
            return Reject(UNENCODABLE_VALUE, f"field {unencodable} {SURROGATE_DETAIL}")
    checked = check_values(vals, obj, today, repaired)
    if checked.__class__ is Reject:
        return checked
    # A tuple here: mypy narrows a `__class__ is` test (kept: the hot path) only where it holds.
    fecha, warnings, hreg = checked  # type: ignore[misc]  # not a Reject (tested above)
    return ValidRecord(
        values=dict(zip(BUSINESS_FIELDS, vals, strict=True)), fecha=fecha, hash_registro=hreg, warnings=warnings
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_DETAIL = "holds a lone surrogate (such as \\ud800): not text, it cannot be encoded as UTF-8"


def lone_surrogate_field(obj: Any) -> str | None:
    """The top-level key of ``obj`` (a decoded JSON value) under which a string or a key holds a
    lone surrogate (``"?"`` when that key is no plain name), else None. Python's ``json``
    accepts ``"\\ud800"`` (orjson does not), and such text fails only later, where it is
    encoded (hash, SQLite, PostgreSQL). Iterative: the nesting depth is the file's to choose."""
    stack: list[tuple[str | None, Any]] = [(None, obj)]
    while stack:
        top, value = stack.pop()
        if value.__class__ is str:
            if _lone_surrogate(value):
                return top or "?"
        elif isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                where = top or (key if key and key.isascii() and key.isidentifier() and len(key) <= 60 else "?")
                if key is not None and _lone_surrogate(key):
                    return where
                stack.append((where, item))
    return None


def _lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


_FIELD_INDEX = {name: i for i, name in enumerate(BUSINESS_FIELDS)}
_REQUIRED_AT = tuple((name, _FIELD_INDEX[name]) for name in REQUIRED_FIELDS)
_LIMITS_AT = tuple((name, _FIELD_INDEX[name], limit) for name, limit in FIELD_LIMITS.items())
_I_FECHA = _FIELD_INDEX["fecha"]
_I_NIC = _FIELD_INDEX["nic"]
_I_EMAIL = _FIELD_INDEX["correo_electronico"]
_PHONES_AT = (("telefono", _FIELD_INDEX["telefono"]), ("celular", _FIELD_INDEX["celular"]))
_I_DOCUMENTO = _FIELD_INDEX["documento_identidad"]


def check_values(
    vals: list[str], obj: dict[str, Any], today: dt.date, repaired: bool
) -> tuple[dt.datetime, list[str], str] | Reject:
    """The rules of CONTRACT §4 on the 18 canonical values of a record (``vals``, in
    ``BUSINESS_FIELDS`` order; its ``fecha`` is set to the canonical form) and its raw keys
    (``obj``): a ``Reject``, or (fecha, warning codes, ``hash_registro``). The one home of the
    rules, for ``validate_record`` and for the landing index's fast path (no dict per record)."""
    for name, i in _REQUIRED_AT:
        if not vals[i]:
            return Reject(MISSING_REQUIRED, f"field {name} is missing or blank")
    fecha = parse_fecha(vals[_I_FECHA])
    if fecha is None:
        return Reject(BAD_FECHA, "field fecha is not YYYY/MM/DD HH:MM or another accepted format")
    day = fecha.date()
    if day < FIRST_DAY or day > today:
        return Reject(FECHA_OUT_OF_RANGE, f"field fecha {day.isoformat()} is outside {FIRST_DAY}..{today}")
    vals[_I_FECHA] = fecha.isoformat()  # YYYY-MM-DDTHH:MM:SS: zero-padded, and parse_fecha gives no fraction
    for name, i, limit in _LIMITS_AT:
        if len(vals[i]) > limit:
            return Reject(VALUE_TOO_LONG, f"field {name} has {len(vals[i])} characters (limit {limit})")

    warnings: list[str] = []
    v = vals[_I_NIC]
    if v and not (v.isdigit() and v.isascii() and 5 <= len(v) <= 12):  # == _NIC.fullmatch(v)
        warnings.append("nic_invalid")
    v = vals[_I_EMAIL]
    if v and not email_valid(v):  # email-validator's syntax rules, no DNS
        warnings.append("email_invalid")
    for name, i in _PHONES_AT:
        v = vals[i]
        if v and phone_e164(v) is None:  # not a valid Colombian number for phonenumbers
            warnings.append(f"{name}_invalid")
    v = vals[_I_DOCUMENTO]
    if v and not _DOCUMENTO.fullmatch(v):
        warnings.append("documento_invalid")
    if not KNOWN_KEYS.issuperset(obj):
        extra = obj.keys() - KNOWN_KEYS  # one set operation in C; usually tabla_* keys only
        if any(not k.startswith("tabla_") for k in extra):
            warnings.append("unknown_keys")
    if repaired:
        warnings.append("text_repaired")
    hreg = hashlib.sha256(HASH_SEPARATOR.join(vals).encode("utf-8")).hexdigest()
    return fecha, warnings, hreg
