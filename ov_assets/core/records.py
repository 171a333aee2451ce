"""Landing files -> one polars frame per partition: every record file with its outcome
(valid version or reject), canonical values, ``hash_registro``, warnings, its linked files,
and the version winner per ``numero_radicado`` (CONTRACT §3-§4).

Pure: no Dagster, no database. The per-file work is decode + parse + canonicalise + hash;
everything set-based (winners) is done by polars.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from ov_assets.core.contract import (
    BUSINESS_FIELDS,
    EMPTY_FILE,
    FIRST_DAY,
    INVALID_JSON,
    NOT_AN_OBJECT,
    SURROGATE_DETAIL,
    UNDECODABLE,
    UNENCODABLE_VALUE,
    Reject,
    ValidRecord,
    canonical_fast,
    check_values,
    lone_surrogate_field,
    parse_extraction_ts,
    parse_fecha,
    validate_record,
)
from ov_assets.core.file_names import FILE_RECORD, parse_name

_UTF8_BOM = b"\xef\xbb\xbf"
_FIELD_VALUES = operator.itemgetter(*BUSINESS_FIELDS)
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
# Bump when a rule of CONTRACT §4 changes: outcomes cached in the landing index under another
# version are evaluated again from the file.
RULES_VERSION = 4  # 4: phones by phonenumbers, e-mails by email-validator; 3: unencodable_value, landing codes

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


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode_bytes(data: bytes) -> tuple[dict[str, Any], list[str]] | Reject:
    """Bytes of a record file -> (JSON object, decoding warnings) or a file-level Reject.

    Never raises. The fast path (UTF-8, one JSON object, no duplicate keys) is one orjson call;
    anything else goes through the careful path that names what is wrong.
    """
    obj = _decode_fast(data)
    if obj is not None:
        return obj, []
    return _decode_careful(data[3:] if data[:3] == _UTF8_BOM else data)


def _decode_fast(data: bytes) -> dict[str, Any] | None:
    """The usual file (UTF-8, maybe with a BOM, one flat JSON object, no duplicate key) in one
    orjson call; None for anything else."""
    if data[:3] == _UTF8_BOM:
        data = data[3:]
    if b"\x00" in data:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    # Every key of a flat object written as "key": counts once; a mismatch (nested objects,
    # unusual spacing, a duplicate key) takes the careful path.
    return obj if obj.__class__ is dict and data.count(b'":') == len(obj) else None


def _decode_careful(data: bytes) -> tuple[dict[str, Any], list[str]] | Reject:
    warnings: list[str] = []
    if not data.strip():
        return Reject(EMPTY_FILE, "the file is empty" if not data else "the file holds only whitespace")
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            return Reject(UNDECODABLE, f"the file is {name}; records must be UTF-8 (or cp1252)")
    if b"\x00" in data:
        return Reject(UNDECODABLE, "the file holds NUL bytes (binary, or UTF-16/32 without BOM)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            return Reject(UNDECODABLE, f"neither UTF-8 nor cp1252 (byte 0x{data[exc.start]:02x} at offset {exc.start})")
        warnings.append("decoded_cp1252")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        return Reject(INVALID_JSON, f"duplicate key {str(exc)[:60]!r}")
    except RecursionError:
        return Reject(INVALID_JSON, "not valid JSON: nested too deeply")
    except ValueError as exc:  # json.JSONDecodeError and the constants
        return Reject(INVALID_JSON, f"not valid JSON: {str(exc)[:120]}")
    if not isinstance(obj, dict):
        return Reject(NOT_AN_OBJECT, f"the JSON value is {_json_type(obj)}, not an object")
    # Lone surrogates ("\\ud800") are not text: orjson refuses them, json does not. Looked for
    # in every string (not by re-encoding with orjson, which fails first on other things, such
    # as an integer beyond 64 bits, and let the surrogate through).
    where = lone_surrogate_field(obj)
    if where is not None:
        return Reject(UNENCODABLE_VALUE, f"field {where} {SURROGATE_DETAIL}")
    return obj, warnings


def _json_type(value: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


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
    # The partition day its fecha gives (valid records, and rejects whose fecha was readable).
    fecha_day: dt.date | None = None

    def as_list(self) -> list[Any]:
        """The compact form: [rules version, 18 canonical values or None, hash_registro, warnings,
        [reject code, detail] or None, numero_radicado, extraction time (ISO) or None,
        referenced file names, fecha day (ISO) or None]."""
        r = self.record
        return [
            RULES_VERSION,
            list(_FIELD_VALUES(r.values)) if r else None,
            r.hash_registro if r else None,
            r.warnings if r else None,
            [self.reject.code, self.reject.detail] if self.reject else None,
            self.numero_radicado,
            self.fecha_extraccion.isoformat() if self.fecha_extraccion else None,
            self.referenced,
            self.fecha_day.isoformat() if self.fecha_day else None,
        ]

    def to_json(self) -> bytes:
        """Compact form kept in the landing index (so a partition is not read twice)."""
        return orjson.dumps(self.as_list())

    @classmethod
    def from_json(cls, name: str, sha256: str, size: int, blob: bytes | str) -> FileOutcome | None:
        """The outcome stored by ``to_json``; None when it was made under other rules."""
        try:
            version, values, hreg, warnings, reject, radicado, extracted, refs, day = orjson.loads(blob)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        if version != RULES_VERSION:
            return None
        out = cls(
            name,
            sha256,
            size,
            numero_radicado=radicado,
            referenced=refs,
            fecha_extraccion=dt.datetime.fromisoformat(extracted) if extracted else None,
            fecha_day=dt.date.fromisoformat(day) if day else None,
        )
        if values is not None:
            vals = dict(zip(BUSINESS_FIELDS, values, strict=True))
            out.record = ValidRecord(vals, dt.datetime.fromisoformat(vals["fecha"]), hreg, warnings)
        else:
            out.reject = Reject(*reject)
        return out


def _fecha_day(obj: dict[str, Any], today: dt.date) -> dt.date | None:
    """The day of a rejected record's fecha, when it is readable and in range."""
    raw = obj.get("fecha")
    if raw.__class__ is not str:
        return None
    parsed = parse_fecha(" ".join(raw.split()))
    if parsed is None or not FIRST_DAY <= parsed.date() <= today:
        return None
    return parsed.date()


def evaluate_file(name: str, data: bytes, sha256: str, today: dt.date) -> FileOutcome:
    """Decode and validate one record file (never raises on bad input)."""
    outcome = FileOutcome(name, sha256, len(data))
    decoded = decode_bytes(data)
    if isinstance(decoded, Reject):
        outcome.reject = decoded
        return outcome
    obj, decode_warnings = decoded
    checked = validate_record(obj, today)
    if isinstance(checked, Reject):
        outcome.reject = checked
        raw_radicado = obj.get("numero_radicado")
        if isinstance(raw_radicado, (str, int)) and not isinstance(raw_radicado, bool):
            radicado = " ".join(str(raw_radicado).split())
            if 0 < len(radicado) <= 50:
                outcome.numero_radicado = radicado
        outcome.fecha_day = _fecha_day(obj, today)
        return outcome
    if decode_warnings:
        checked.warnings = decode_warnings + checked.warnings
    outcome.record = checked
    values = checked.values
    outcome.numero_radicado = values["numero_radicado"]
    outcome.fecha_day = checked.fecha.date()
    outcome.fecha_extraccion = _extraction_time(name, obj)
    outcome.referenced = [v for v in (values["documento_prueba"], values["adjuntar_archivo"]) if v]
    return outcome


_I_DOCUMENTO_PRUEBA = BUSINESS_FIELDS.index("documento_prueba")
_I_ADJUNTAR = BUSINESS_FIELDS.index("adjuntar_archivo")
_I_RADICADO = BUSINESS_FIELDS.index("numero_radicado")


def evaluate_parts(name: str, data: bytes, sha256: str, today: dt.date) -> list[Any]:
    """``evaluate_file(...).as_list()``, the same list for every input, without the objects in
    between for the usual file (UTF-8, one flat JSON object, every field a string already in
    canonical form, valid): the landing index evaluates every record file this way, and per
    record the objects cost as much as the rules. Anything else takes ``evaluate_file``."""
    obj = _decode_fast(data)
    vals = canonical_fast(obj) if obj is not None else None
    if vals is not None:
        # obj is a dict when vals is not None; checked is a tuple when not a Reject (a `__class__`
        # test, kept on this hot path, which mypy does not narrow).
        checked = check_values(vals, obj, today, False)  # type: ignore[arg-type]  # obj is not None
        if checked.__class__ is not Reject:
            fecha, warnings, hreg = checked  # type: ignore[misc]  # not a Reject
            extracted = _extraction_time(name, obj)  # type: ignore[arg-type]  # obj is not None
            return [
                RULES_VERSION,
                vals,
                hreg,
                warnings,
                None,
                vals[_I_RADICADO],
                extracted.isoformat() if extracted else None,
                [v for v in (vals[_I_DOCUMENTO_PRUEBA], vals[_I_ADJUNTAR]) if v],
                fecha.date().isoformat(),
            ]
    return evaluate_file(name, data, sha256, today).as_list()


def _extraction_time(name: str, obj: dict[str, Any]) -> dt.datetime | None:
    """The record's ``extraction_timestamp``, else the one in its file name (else None: the
    file's mtime is used later)."""
    extracted = parse_extraction_ts(obj.get("extraction_timestamp"))
    if extracted is None:
        parsed_name = parse_name(name)
        extracted = parsed_name.extraction_time if parsed_name else None
    return extracted


# The per-file columns of a partition frame: what the landing index's workers build for the
# files they evaluate, so that the main process only adds linked files and winners.
BASE_SCHEMA: dict[str, pl.DataType] = {
    k: (pl.String() if k == "warnings" else v)
    for k, v in FRAME_SCHEMA.items()
    if k not in ("empresa", "partition_date", "files", "is_winner", "fecha_dt")
}
# Linked files per record file (``owner``), in the order they appear in its ``files`` list.
LINKED_SCHEMA = {"owner": pl.String(), **FILE_STRUCT.to_schema()}


def base_frame(
    items: Sequence[tuple[str, str, int, Sequence[Any]]],
    fallback_extraction: dict[str, dt.datetime] | None = None,
    extra: dict[str, tuple[list[Any], pl.DataType]] | None = None,
) -> pl.DataFrame:
    """The per-file columns (``BASE_SCHEMA``, ``warnings`` comma-joined) from (file name, sha256,
    size, ``FileOutcome.as_list()``) per record file, built column by column with no per-row
    objects. ``fallback_extraction``: extraction time (file mtime) of the files that carry none
    in their content or name. ``extra``: more columns (values, dtype)."""
    fallback_extraction = fallback_extraction or {}
    names = [it[0] for it in items]
    parts = [it[3] for it in items]
    values = [p[1] for p in parts]
    rejects = [p[4] for p in parts]
    fromiso = dt.datetime.fromisoformat
    cols: dict[str, Any] = {
        "file_name": names,
        "file_sha256": [it[1] or None for it in items],  # "": a file rejected unread (a link...)
        "file_size": [it[2] for it in items],
        "status": ["valid" if v is not None else "rejected" for v in values],
        "reject_code": [j[0] if j is not None else None for j in rejects],
        "reject_detail": [j[1] if j is not None else None for j in rejects],
    }
    if None not in values:  # all valid (the usual batch): one transpose in C
        by_field: list[Any] = list(zip(*values, strict=True)) if values else [()] * len(BUSINESS_FIELDS)
    else:
        by_field = [[v[i] if v is not None else None for v in values] for i in range(len(BUSINESS_FIELDS))]
    for i, f in enumerate(BUSINESS_FIELDS):
        cols[f] = [p[5] for p in parts] if f == "numero_radicado" else by_field[i]
    cols["hash_registro"] = [p[2] for p in parts]
    cols["fecha_extraccion"] = [
        (fromiso(p[6]) if p[6] else fallback_extraction.get(name)) if p[1] is not None else None
        for name, p in zip(names, parts, strict=True)
    ]
    cols["warnings"] = [",".join(p[3]) if p[1] is not None else "" for p in parts]
    schema = dict(BASE_SCHEMA)
    for k, (vals, dtype) in (extra or {}).items():
        cols[k] = vals
        schema[k] = dtype
    return pl.DataFrame(cols, schema=schema)


def finish_frame(
    empresa: str, partition_date: dt.date | None, base: pl.DataFrame, linked: pl.DataFrame | None
) -> pl.DataFrame:
    """A partition frame (``FRAME_SCHEMA``, winners marked) from its per-file columns
    (``base_frame``) and its records' linked files (``LINKED_SCHEMA``). Each valid record's
    ``files`` list holds its own JSON file, then its linked files in the given order. Other
    columns of ``base`` (helpers such as ``_link_key``) are dropped.

    ``partition_date`` None: several partitions at once, each row's in a ``_day`` column of
    ``base`` (winners are per partition, as if each were finished alone)."""
    if base.is_empty():
        return empty_frame()
    valid = pl.col("status") == "valid"
    own = pl.struct(
        pl.lit(FILE_RECORD).alias("file_type"),
        pl.col("file_name").alias("filename"),
        pl.col("file_size").alias("size"),
        pl.col("file_sha256").alias("sha256"),
    )
    frame = base.lazy().with_columns(  # one query plan, collected once
        pl.lit(empresa, pl.String()).alias("empresa"),
        (pl.col("_day") if partition_date is None else pl.lit(partition_date, pl.Date())).alias("partition_date"),
        pl.col("fecha").str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="us", strict=False).alias("fecha_dt"),
        pl.when(pl.col("warnings") == "")
        .then(pl.lit([], pl.List(pl.String())))
        .otherwise(pl.col("warnings").str.split(","))
        .alias("warnings"),
    )
    if linked is None or linked.is_empty():
        frame = frame.with_columns(
            pl.when(valid).then(pl.concat_list(own)).otherwise(pl.lit([], pl.List(FILE_STRUCT))).alias("files")
        )
    else:
        owned = pl.concat(
            [
                frame.filter(valid).select(
                    pl.col("file_name").alias("owner"), own.alias("f"), pl.lit(-1, pl.Int64()).alias("_k")
                ),
                linked.lazy()
                .join(frame.filter(valid).select(pl.col("file_name").alias("owner")), on="owner", how="semi")
                .select(
                    "owner",
                    pl.struct(*FILE_STRUCT.to_schema()).alias("f"),
                    pl.int_range(0, pl.len(), dtype=pl.Int64()).alias("_k"),
                ),
            ]
        )
        files = owned.sort("owner", "_k").group_by("owner", maintain_order=True).agg(pl.col("f").alias("files"))
        frame = frame.join(files, left_on="file_name", right_on="owner", how="left").with_columns(
            pl.col("files").fill_null(pl.lit([], pl.List(FILE_STRUCT)))
        )
    frame = frame.with_columns(pl.lit(False).alias("is_winner")).select(list(FRAME_SCHEMA)).cast(FRAME_SCHEMA)  # type: ignore[arg-type]  # polars types the keys as str | selector (invariant)
    return mark_winners(frame.collect())


def mark_winners(frame: pl.DataFrame) -> pl.DataFrame:
    """The winner of each (empresa, numero_radicado) of a partition among valid versions: latest
    extraction, ties broken by the greater file name (code-point order, which polars' byte order
    is). A frame of several partitions gets each partition's winners.

    No sort by extraction: the frame is sorted by file name (its output order) first, so within
    a partition a greater file name is a later row; two windows then pick, among the valid
    versions with the latest extraction, the last row."""
    key = ["empresa", "partition_date", "numero_radicado"]
    valid = pl.col("status") == "valid"
    extracted = pl.col("fecha_extraccion")
    latest = extracted.filter(valid).max().over(key)  # null when no valid version has one
    return (
        frame.lazy()  # one query plan, collected once (each eager step is a collect)
        .sort("empresa", "partition_date", "file_name")
        .with_row_index("_row")
        .with_columns((valid & ((extracted == latest) | latest.is_null())).fill_null(False).alias("_top"))
        .with_columns(
            (pl.col("_top") & (pl.col("_row") == pl.col("_row").filter(pl.col("_top")).max().over(key)))
            .fill_null(False)
            .alias("is_winner")
        )
        .drop("_row", "_top")
        .collect()
    )


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=FRAME_SCHEMA)
