"""A corpus of broken and odd record files (issue 3, "Bad input").

``corpus(day)`` gives one ``Case`` per kind: the file name (its ``{ts}`` on ``day``, so every
file belongs to ``day``'s partition), its bytes, and what pqr_records must make of it: a reject
code, or a valid row with these warnings (and optionally the canonical value of one field).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    data: bytes
    reject: str | None = None  # expected reject code; None: a valid row
    warnings: frozenset[str] = frozenset()  # expected warnings of a valid row (exactly)
    expect_values: dict[str, str] = field(default_factory=dict)  # canonical values of a valid row
    detail_names: str | None = None  # a word the reject detail must contain (the field)


def base_record(day: dt.date, radicado: str, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "nic": "7301245",
        "fecha": f"{day:%Y/%m/%d} 09:32",
        "documento_identidad": "1045678912",
        "nombres_apellidos": "María José Pérez Ñáñez",
        "lectura": "",
        "correo_electronico": "mjperez@example.com",
        "telefono": "6053456789",
        "celular": "3001234567",
        "tipo_pqr": "Reclamo",
        "canal_respuesta": "Correo electrónico",
        "documento_prueba": "",
        "cuerpo_reclamacion": "Cobro excesivo.",
        "numero_radicado": radicado,
        "estado_solicitud": "Finalizado",
        "finalizar": "",
        "adjuntar_archivo": "",
        "numero_reclamo_sgc": "",
        "comentarios": "",
        "record_number": 1,
        "sgc_number": "",
        "extraction_timestamp": f"{day:%Y%m%d}_100000",
        "page_url": "https://portal.example/#/Detail/1",
        "page_title": "Detalle PQR",
    }
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()


def _j(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")


def corpus(day: dt.date) -> list[Case]:
    ts = f"{day:%Y%m%d}_235900"
    n = iter(range(1, 1000))

    def name(kind: str) -> str:
        return f"BAD{next(n):02d}{kind.replace('_', '')}_data_{ts}.json"

    def rad() -> str:
        return f"{day:%Y%m%d}9{len(cases):05d}"

    cases: list[Case] = []

    def add(
        kind: str,
        data: bytes,
        reject: str | None = None,
        warnings: set[str] | None = None,
        values: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        cases.append(Case(kind, name(kind), data, reject, frozenset(warnings or ()), values or {}, detail))

    good = base_record(day, "0")
    add("invalid_json", b'{"numero_radicado": "1", "fecha": }', "invalid_json")
    add("truncated_json", _j(base_record(day, rad()))[:200], "invalid_json")
    add("empty", b"", "empty_file")
    add("whitespace_only", b" \r\n\t  \n", "empty_file")
    add("bom_only", b"\xef\xbb\xbf", "empty_file")
    add("array", _j([good]), "not_an_object")
    add("scalar_string", b'"hola"', "not_an_object")
    add("scalar_number", b"42", "not_an_object")
    add("null", b"null", "not_an_object")
    add("binary_junk", bytes(range(256)) * 4, "undecodable")
    add("undefined_cp1252_bytes", b'{"a": "\x81\x8d\x8f\x90\x9d"}', "undecodable")
    add("utf16_bom", _j(base_record(day, rad())).decode().encode("utf-16"), "undecodable")
    add("utf16le_no_bom", _j(base_record(day, rad())).decode().encode("utf-16-le"), "undecodable")
    add("utf32_bom", _j(base_record(day, rad())).decode().encode("utf-32"), "undecodable")
    add("nul_padding", _j(base_record(day, rad())) + b"\x00" * 64, "undecodable")
    add(
        "cp1252",
        json.dumps(base_record(day, rad(), nombres_apellidos="Ñáñez Peñaloza"), ensure_ascii=False).encode("cp1252"),
        warnings={"decoded_cp1252"},
        values={"nombres_apellidos": "Ñáñez Peñaloza"},
    )
    add("utf8_bom", b"\xef\xbb\xbf" + _j(base_record(day, rad())))
    add(
        "mojibake",
        _j(base_record(day, rad(), cuerpo_reclamacion="ReclamaciÃ³n por cobro en la facturaciÃ³n")),
        warnings={"text_repaired"},
        values={"cuerpo_reclamacion": "Reclamación por cobro en la facturación"},
    )
    add("missing_radicado", _j(base_record(day, _DROP)), "missing_required", detail="numero_radicado")  # type: ignore[arg-type]
    add(
        "blank_estado",
        _j(base_record(day, rad(), estado_solicitud=" \t ")),
        "missing_required",
        detail="estado_solicitud",
    )
    add("null_fecha", _j(base_record(day, rad(), fecha=None)), "missing_required", detail="fecha")
    add("unparsable_fecha", _j(base_record(day, rad(), fecha="ayer por la tarde")), "bad_fecha", detail="fecha")
    add("impossible_fecha", _j(base_record(day, rad(), fecha="2023/02/29 10:00")), "bad_fecha", detail="fecha")
    add(
        "fecha_before_2020_10",
        _j(base_record(day, rad(), fecha="2020/09/30 23:59")),
        "fecha_out_of_range",
        detail="fecha",
    )
    add("fecha_future", _j(base_record(day, rad(), fecha="2099/01/01 00:00")), "fecha_out_of_range", detail="fecha")
    add("radicado_too_long", _j(base_record(day, "9" * 51)), "value_too_long", detail="numero_radicado")
    add(
        "email_too_long",
        _j(base_record(day, rad(), correo_electronico="a" * 310 + "@example.com")),
        "value_too_long",
        detail="correo_electronico",
    )
    dup = _j(base_record(day, rad())).rstrip(b"}\n") + b',\n "estado_solicitud": "Radicado"\n}'
    add("duplicate_keys", dup, "invalid_json", detail="estado_solicitud")
    add(
        "lone_surrogate",
        _j(base_record(day, rad())).replace(b'"Cobro excesivo."', b'"Cobro \\ud800"'),
        "unencodable_value",
        detail="cuerpo_reclamacion",
    )
    # (issue 21) an integer beyond 64 bits sends the file past orjson, whose re-encoding then
    # failed on the integer first and let the surrogate through to the hash: every refresh died
    big = _j({"big": 2**70, **base_record(day, rad(), nombres_apellidos="@")})
    add("surrogate_behind_big_int", big.replace(b'"@"', b'"\\ud800"'), "unencodable_value", detail="nombres_apellidos")
    add("big_int_alone", _j({"big": 2**70, **base_record(day, rad())}), warnings={"unknown_keys"})
    add("nan", _j(base_record(day, rad())).replace(b'"record_number": 1', b'"record_number": NaN'), "invalid_json")
    add("deep_nesting", b"[" * 200_000 + b"]" * 200_000, "invalid_json")
    huge = "Texto largo. " * 300_000  # ~3.9 MB: cuerpo_reclamacion is unbounded
    add("huge_text", _j(base_record(day, rad(), cuerpo_reclamacion=huge)), values={"cuerpo_reclamacion": huge.strip()})
    add(
        "emoji",
        _j(base_record(day, rad(), cuerpo_reclamacion="Sin luz 😡🔌 desde ayer 👍🏽")),
        values={"cuerpo_reclamacion": "Sin luz 😡🔌 desde ayer 👍🏽"},
    )
    sql = "'; DROP TABLE data_general.ov_afinia; -- \" OR 1=1 /* $$ \\x00"
    add(
        "sql_looking",
        _j(base_record(day, rad(), comentarios=sql, nombres_apellidos="Robert'); DELETE FROM x;--")),
        values={"comentarios": sql},
    )
    add("unknown_keys", _j(base_record(day, rad(), campo_nuevo="x", tabla_historial="kept")), warnings={"unknown_keys"})
    add("tabla_keys_only", _j(base_record(day, rad(), tabla_historial="x", tabla_otro=[1, 2])))
    add("nested_unknown", _j(base_record(day, rad(), extra={"a": {"b": [1, 2]}})), warnings={"unknown_keys"})
    add(
        "nested_business_value",
        _j(base_record(day, rad(), comentarios={"nota": "x"})),
        values={"comentarios": str({"nota": "x"})},
    )
    add(
        "numbers_not_strings",
        _j(base_record(day, 202510080012345, nic=7301245)),
        values={"numero_radicado": "202510080012345", "nic": "7301245"},
    )
    add(
        "whitespace_and_separators",
        _j(base_record(day, rad(), nombres_apellidos="  Ana\x1c\x1d María\t\n\u00a0Gómez\x1f ")),
        values={"nombres_apellidos": "Ana María Gómez"},
    )
    add(
        "soft_warnings",
        _j(
            base_record(
                day,
                rad(),
                nic="12",
                correo_electronico="no-es-correo",
                telefono="12345",
                celular="2001234567",
                documento_identidad="CC 10.456",
            )
        ),
        warnings={"nic_invalid", "email_invalid", "telefono_invalid", "celular_invalid", "documento_invalid"},
    )
    add(
        "nfd_text",
        _j(base_record(day, rad(), nombres_apellidos="Jose\u0301 Mun\u0303oz")),
        values={"nombres_apellidos": "José Muñoz"},
    )
    return cases
