"""Landing files -> one polars frame per partition: every record file with its outcome
(valid version or reject), canonical values, ``hash_registro``, warnings, its linked files,
and the version winner per ``numero_radicado`` (CONTRACT §3-§4).

Pure: no Dagster, no database. The per-file work is decode + parse + canonicalise + hash;
everything set-based (winners) is done by polars.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from ov_assets.contract import (
    BUSINESS_FIELDS,
    EMPTY_FILE,
    INVALID_JSON,
    NOT_AN_OBJECT,
    UNDECODABLE,
    Reject,
    ValidRecord,
    parse_extraction_ts,
    validate_record,
)
from ov_assets.landing import FILE_RECORD, parse_name

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
               b"\xfe\xff": "UTF-16"}

FILE_STRUCT = pl.Struct({"file_type": pl.String, "filename": pl.String, "size": pl.Int64, "sha256": pl.String})
FRAME_SCHEMA: dict[str, pl.DataType] = {
    "empresa": pl.String(),
    "partition_date": pl.Date(),
    "file_name": pl.String(),
    "file_sha256": pl.String(),
    "file_size": pl.Int64(),
    "status": pl.String(),  # valid | rejected
    "reject_code": pl.String(),
    "reject_detail": pl.String(),
    **{f: pl.String() for f in BUSINESS_FIELDS},
    "fecha_dt": pl.Datetime("us"),
    "hash_registro": pl.String(),
    "fecha_extraccion": pl.Datetime("us"),
    "warnings": pl.List(pl.String()),
    "files": pl.List(FILE_STRUCT),
    "is_winner": pl.Boolean(),
}


def decode_bytes(data: bytes) -> tuple[dict[str, Any], list[str]] | Reject:
    """Bytes of a record file -> (JSON object, decoding warnings) or a file-level Reject."""
    warnings: list[str] = []
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if not data.strip():
        return Reject(EMPTY_FILE, "the file is empty")
    for bom, name in _OTHER_BOMS.items():
        if data.startswith(bom):
            return Reject(UNDECODABLE, f"the file is {name}; records must be UTF-8 (or cp1252)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            return Reject(UNDECODABLE, f"neither UTF-8 nor cp1252 (byte 0x{data[exc.start]:02x} at offset {exc.start})")
        warnings.append("decoded_cp1252")
    if "\x00" in text:
        return Reject(UNDECODABLE, "the file holds NUL characters (binary or UTF-16 without BOM)")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Reject(INVALID_JSON, f"not valid JSON: {str(exc).split(':')[0]}")
    if not isinstance(obj, dict):
        return Reject(NOT_AN_OBJECT, f"the JSON value is a {type(obj).__name__}, not an object")
    return obj, warnings


@dataclass
class FileOutcome:
    """What one record file turned out to be."""

    file_name: str
    file_sha256: str
    file_size: int
    record: ValidRecord | None = None
    reject: Reject | None = None
    numero_radicado: str | None = None
    fecha_extraccion: dt.datetime | None = None
    referenced: list[str] = field(default_factory=list)  # documento_prueba / adjuntar_archivo names


def evaluate_file(name: str, data: bytes, sha256: str, today: dt.date) -> FileOutcome:
    """Decode and validate one record file (never raises on bad input)."""
    outcome = FileOutcome(name, sha256, len(data))
    decoded = decode_bytes(data)
    if isinstance(decoded, Reject):
        outcome.reject = decoded
        return outcome
    obj, decode_warnings = decoded
    checked = validate_record(obj, today)
    raw_radicado = obj.get("numero_radicado")
    if isinstance(checked, Reject):
        outcome.reject = checked
        if isinstance(raw_radicado, (str, int)) and 0 < len(str(raw_radicado).strip()) <= 50:
            outcome.numero_radicado = str(raw_radicado).strip()
        return outcome
    checked.warnings = decode_warnings + checked.warnings
    outcome.record = checked
    outcome.numero_radicado = checked.values["numero_radicado"]
    ts = obj.get("extraction_timestamp")
    parsed_name = parse_name(name)
    outcome.fecha_extraccion = parse_extraction_ts(ts if isinstance(ts, str) else None) or (
        parsed_name.extraction_time if parsed_name else None
    )
    outcome.referenced = [
        v for v in (checked.values["documento_prueba"], checked.values["adjuntar_archivo"]) if v
    ]
    return outcome


@dataclass(frozen=True)
class LinkedFile:
    """A PDF or attachment of a record, as the landing index knows it."""

    file_type: str
    filename: str
    size: int
    sha256: str


def build_frame(
    empresa: str,
    partition_date: dt.date,
    outcomes: list[FileOutcome],
    linked: dict[str, list[LinkedFile]],
    fallback_extraction: dict[str, dt.datetime] | None = None,
) -> pl.DataFrame:
    """One row per record file of the partition, winners marked.

    ``linked`` maps a record file name to its PDF and attachments. ``fallback_extraction`` gives
    an extraction time (file mtime) for files that carry none in their content or name.
    """
    rows: dict[str, list[Any]] = {name: [] for name in FRAME_SCHEMA}
    fallback_extraction = fallback_extraction or {}
    for o in outcomes:
        rows["empresa"].append(empresa)
        rows["partition_date"].append(partition_date)
        rows["file_name"].append(o.file_name)
        rows["file_sha256"].append(o.file_sha256)
        rows["file_size"].append(o.file_size)
        if o.record is not None:
            rows["status"].append("valid")
            rows["reject_code"].append(None)
            rows["reject_detail"].append(None)
            for f in BUSINESS_FIELDS:
                rows[f].append(o.record.values[f])
            rows["fecha_dt"].append(o.record.fecha)
            rows["hash_registro"].append(o.record.hash_registro)
            rows["fecha_extraccion"].append(o.fecha_extraccion or fallback_extraction.get(o.file_name))
            rows["warnings"].append(o.record.warnings)
            files = [{"file_type": FILE_RECORD, "filename": o.file_name, "size": o.file_size, "sha256": o.file_sha256}]
            files += [vars(f) for f in linked.get(o.file_name, [])]
            rows["files"].append(files)
        else:
            assert o.reject is not None
            rows["status"].append("rejected")
            rows["reject_code"].append(o.reject.code)
            rows["reject_detail"].append(o.reject.detail)
            for f in BUSINESS_FIELDS:
                rows[f].append(o.numero_radicado if f == "numero_radicado" else None)
            rows["fecha_dt"].append(None)
            rows["hash_registro"].append(None)
            rows["fecha_extraccion"].append(None)
            rows["warnings"].append([])
            rows["files"].append([])
        rows["is_winner"].append(False)
    frame = pl.DataFrame(rows, schema=FRAME_SCHEMA)
    return mark_winners(frame)


def mark_winners(frame: pl.DataFrame) -> pl.DataFrame:
    """The winner of each (empresa, numero_radicado) among valid versions: latest extraction,
    ties broken by the greater file name (code-point order, which polars' byte order is)."""
    valid = frame.filter(pl.col("status") == "valid")
    if valid.is_empty():
        return frame.with_columns(pl.lit(False).alias("is_winner"))
    winners = (
        valid.sort(["fecha_extraccion", "file_name"], descending=True, nulls_last=True)
        .unique(subset=["empresa", "numero_radicado"], keep="first", maintain_order=True)
        .select("empresa", "file_name", pl.lit(True).alias("_win"))
    )
    return (
        frame.join(winners, on=["empresa", "file_name"], how="left")
        .with_columns(pl.col("_win").fill_null(False).alias("is_winner"))
        .drop("_win")
        .sort("empresa", "partition_date", "file_name")
    )


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=FRAME_SCHEMA)
