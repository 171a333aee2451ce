"""The data contract (CONTRACT §3-§4) as pure functions: fields, limits, codes, canonical
values, ``hash_registro`` and the validation of one decoded record.

Nothing here imports Dagster, PostgreSQL or the file system: every rule is testable alone and
the same code serves the assets, the scraper, the benchmarks and the checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import ftfy

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
REJECT_CODES: tuple[str, ...] = (
    EMPTY_FILE,
    UNDECODABLE,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_REQUIRED,
    BAD_FECHA,
    FECHA_OUT_OF_RANGE,
    VALUE_TOO_LONG,
)
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
)

HASH_SEPARATOR = "\x1f"
EXTRACTION_TS_FORMAT = "%Y%m%d_%H%M%S"
FECHA_OUTPUT_FORMAT = "%Y-%m-%dT%H:%M:%S"

# UTF-8 read as cp1252/Latin-1 turns every multi-byte sequence into a lead character
# (Â..ô) followed by a continuation character (U+0080..U+00BF or cp1252's specials).
# Only text with such a pair is handed to ftfy: plain Spanish text never pays for it.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
)
_FECHA_YMD = re.compile(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?")
_FECHA_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?")
_EXTRACTION_TS = re.compile(r"\d{8}_\d{6}")

_NIC = re.compile(r"\d{5,12}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?:\+?57)?(?:3\d{9}|60\d{8})")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_DOCUMENTO = re.compile(r"\d{3,15}(?:-\d)?")


def repair(text: str) -> str:
    """Undo UTF-8 misread as cp1252/Latin-1, and nothing else (no quote straightening,
    no entity unescaping, no NFKC)."""
    if text.isascii() or not _MOJIBAKE_HINT.search(text):
        return text
    return ftfy.fix_encoding(text)


def canonical_with_flag(value: Any) -> tuple[str, bool]:
    """The canonical value of a field and whether mojibake repair changed it."""
    s = "" if value is None else str(value)
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
        y, mo, d, h, mi, s = m.groups()
    else:
        m = _FECHA_DMY.fullmatch(text)
        if not m:
            return None
        d, mo, y, h, mi, s = m.groups()
    try:
        return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
    except ValueError:
        return None


def format_fecha(value: dt.datetime) -> str:
    return value.strftime(FECHA_OUTPUT_FORMAT)


def parse_extraction_ts(text: str | None) -> dt.datetime | None:
    """``YYYYMMDD_HHMMSS`` (Bogotá local time) or None."""
    if not text or not _EXTRACTION_TS.fullmatch(text):
        return None
    try:
        return dt.datetime.strptime(text, EXTRACTION_TS_FORMAT)
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


def validate_record(obj: dict[str, Any], today: dt.date) -> ValidRecord | Reject:
    """Apply CONTRACT §4 to one decoded JSON object.

    Hard rules give a ``Reject``; soft rules add warning codes to the ``ValidRecord``.
    ``fecha`` is stored and hashed in its canonical form ``YYYY-MM-DDTHH:MM:SS``.
    """
    values: dict[str, str] = {}
    warnings: list[str] = []
    repaired = False
    for name in BUSINESS_FIELDS:
        value, fixed = canonical_with_flag(obj.get(name))
        values[name] = value
        repaired = repaired or fixed

    for name in REQUIRED_FIELDS:
        if not values[name]:
            return Reject(MISSING_REQUIRED, f"field {name} is missing or blank")
    fecha = parse_fecha(values["fecha"])
    if fecha is None:
        return Reject(BAD_FECHA, "fecha is not YYYY/MM/DD HH:MM or another accepted format")
    if fecha.date() < FIRST_DAY or fecha.date() > today:
        return Reject(
            FECHA_OUT_OF_RANGE, f"fecha {fecha.date().isoformat()} is outside {FIRST_DAY}..{today}"
        )
    values["fecha"] = format_fecha(fecha)
    for name, limit in FIELD_LIMITS.items():
        if len(values[name]) > limit:
            return Reject(VALUE_TOO_LONG, f"field {name} has {len(values[name])} characters (limit {limit})")

    if values["nic"] and not _NIC.fullmatch(values["nic"]):
        warnings.append("nic_invalid")
    if values["correo_electronico"] and not _EMAIL.fullmatch(values["correo_electronico"]):
        warnings.append("email_invalid")
    for name in ("telefono", "celular"):
        if values[name] and not _PHONE.fullmatch(_PHONE_NOISE.sub("", values[name])):
            warnings.append(f"{name}_invalid")
    if values["documento_identidad"] and not _DOCUMENTO.fullmatch(values["documento_identidad"]):
        warnings.append("documento_invalid")
    if any(k not in KNOWN_KEYS and not k.startswith("tabla_") for k in obj):
        warnings.append("unknown_keys")
    if repaired:
        warnings.append("text_repaired")
    return ValidRecord(values=values, fecha=fecha, hash_registro=hash_registro(values), warnings=warnings)
