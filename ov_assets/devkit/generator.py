"""Realistic synthetic PQRs and landing files, for the demo, the replica portal and tests.

Deterministic for a seed: the same (empresa, day, seed) always gives the same PQRs, so the
replica portal, the demo and the tests agree on what exists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_assets.core.contract import BOGOTA, BUSINESS_FIELDS
from ov_assets.core.file_names import (
    attachment_file_name,
    format_ts,
    landing_dir,
    pdf_file_name,
    record_file_name,
    sgc_for_name,
)
from ov_assets.fs import private_dir

FIRST_NAMES = (
    "María José",
    "José Ángel",
    "Andrés Felipe",
    "Sebastián",
    "Nicolás",
    "Lucía",
    "Ángela",
    "Óscar Iván",
    "Jesús Alberto",
    "Inés",
    "Ramón",
    "Julián David",
    "Ximena",
    "Yésica",
    "Camilo Andrés",
    "Dayana",
    "Yuliana",
    "Héctor",
    "Matías",
    "Valentina",
    "Martín Elías",
)
LAST_NAMES = (
    "Pérez",
    "Gómez",
    "Rodríguez",
    "Ñáñez",
    "Martínez",
    "Hernández",
    "Díaz",
    "Muñoz",
    "Peñaloza",
    "Castaño",
    "Londoño",
    "Ibáñez",
    "Mendoza",
    "Barrios",
    "Cárdenas",
    "Zúñiga",
    "Ospina",
    "Guzmán",
    "De la Hoz",
    "Villalobos",
    "Montaño",
    "Solórzano",
    "Acuña",
)
TIPOS = ("Reclamo", "Petición", "Queja", "Recurso de reposición")
CANALES = ("Correo electrónico", "Dirección física", "Notificación en oficina")
ESTADOS_ABIERTOS = ("Radicado", "En trámite", "Pendiente")
BODIES = (
    "Cobro excesivo en la factura de {mes}; solicito revisión del consumo.",
    "El medidor fue cambiado sin notificación y la lectura no corresponde.",
    "Suspensión del servicio sin aviso previo el día {dia}, a pesar de estar al día.",
    "Solicito la reconexión del servicio; ya realicé el pago en la oficina de Montería.",
    "Variación de voltaje dañó la nevera; pido indemnización según la regulación de la CREG.",
    "Reclamación por cobro de energía reactiva que no corresponde a mi predio.",
    "El transformador del barrio está en mal estado y hay cortes cada noche.",
)
MESES = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)
EMAIL_DOMAINS = ("example.com", "correo.example.co", "mail.example.org")

# A minimal, valid one-page PDF (no personal data in it).
_PDF_TEMPLATE = (
    "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>endobj\n"
    "4 0 obj<</Length {length}>>stream\n{stream}\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


# Numbers Colombia's plan assigns (phonenumbers' metadata): mobile prefixes 300-305 and 310-324
# (306-309 and 325-329 are unassigned); Atlántico/Bolívar landlines 605 + a subscriber number not
# starting with 1. Invalid phones belong in the bad corpora, not in every generated day.
MOBILE_PREFIXES = (*range(300, 306), *range(310, 325))


def _mobile(choice: int, subscriber: int) -> str:
    return f"{MOBILE_PREFIXES[choice % len(MOBILE_PREFIXES)]}{subscriber}"


def _landline(subscriber: int) -> str:
    return f"605{2 + subscriber % 8}{subscriber % 1_000_000:06d}"


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii())


def pdf_bytes(title: str) -> bytes:
    """A small valid PDF whose only text is ``title``."""
    stream = f"BT /F1 12 Tf 72 720 Td ({_ascii(title)}) Tj ET"
    return _PDF_TEMPLATE.format(length=len(stream), stream=stream).encode("ascii")


def seeded_rng(*parts: object) -> random.Random:
    """A random generator seeded by ``parts``, so every value drawn for them is reproducible."""
    return random.Random("|".join(str(p) for p in parts))


def fake_pqr(empresa: str, day: dt.date, index: int, seed: int = 0) -> dict[str, Any]:
    """The business fields (CONTRACT §3) of PQR number ``index`` filed on ``day``."""
    rng = seeded_rng(seed, empresa, day.isoformat(), index)
    first, last1, last2 = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(LAST_NAMES)
    name = f"{first} {last1} {last2}"
    user = _ascii(f"{first.split()[0]}.{last1}").lower().replace(" ", "") + str(rng.randint(1, 999))
    filed = dt.datetime.combine(day, dt.time(rng.randint(6, 20), rng.randint(0, 59)))
    empresa_digit = "1" if empresa == "afinia" else "2"
    radicado = f"{day:%Y%m%d}{empresa_digit}{index:06d}"
    sgc_kind = rng.random()
    if sgc_kind < 0.8:
        sgc = f"RE{day:%d%m%Y}{empresa_digit}{index:04d}"
    elif sgc_kind < 0.9:
        sgc = str(60_000_000 + int(radicado[-7:]))
    else:
        sgc = ""
    has_proof = rng.random() < 0.4
    record = {
        "nic": str(rng.randint(1_000_000, 9_999_999)),
        "fecha": filed.strftime("%Y/%m/%d %H:%M"),
        "documento_identidad": str(rng.randint(10_000_000, 1_199_999_999)),
        "nombres_apellidos": name,
        "lectura": str(rng.randint(1000, 99999)) if rng.random() < 0.3 else "",
        "correo_electronico": f"{user}@{rng.choice(EMAIL_DOMAINS)}",
        "telefono": _landline(rng.randint(1_000_000, 9_999_999)) if rng.random() < 0.6 else "",
        "celular": _mobile(rng.randint(0, 2) * 10 + rng.randint(0, 9), rng.randint(1_000_000, 9_999_999)),
        "tipo_pqr": rng.choice(TIPOS),
        "canal_respuesta": rng.choice(CANALES),
        "documento_prueba": f"{uuid.UUID(int=rng.getrandbits(128))}.pdf" if has_proof else "",
        "cuerpo_reclamacion": rng.choice(BODIES).format(mes=rng.choice(MESES), dia=day.day),
        "numero_radicado": radicado,
        "estado_solicitud": rng.choice(ESTADOS_ABIERTOS) if rng.random() < 0.5 else "Finalizado",
        "finalizar": "",
        "adjuntar_archivo": "",
        "numero_reclamo_sgc": sgc,
        "comentarios": "Cliente solicita respuesta por escrito." if rng.random() < 0.2 else "",
    }
    return {k: record[k] for k in BUSINESS_FIELDS}


@dataclass
class GeneratedDay:
    """What ``write_day`` put in the landing folder."""

    empresa: str
    day: dt.date
    records: list[dict[str, Any]] = field(default_factory=list)  # every version written
    files: list[Path] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # file name -> expected reason code

    @property
    def radicados(self) -> set[str]:
        return {r["numero_radicado"] for r in self.records}


def _write(path: Path, data: bytes, mtime: float | None = None) -> Path:
    """Written aside and renamed, owner-only from creation: landing files hold personal data."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o600)  # a leftover of an interrupted write kept its old mode
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def extraction_time_for(filed: dt.datetime, offset_minutes: int, now: dt.datetime | None = None) -> dt.datetime:
    """An extraction time after filing, never after ``now`` (Bogotá local time; default the
    clock): only a day that has not ended yet depends on it."""
    now = now or dt.datetime.now(BOGOTA).replace(tzinfo=None)
    return min(filed + dt.timedelta(minutes=offset_minutes), now)


def write_record_files(
    folder: Path,
    record: dict[str, Any],
    extracted: dt.datetime,
    record_number: int,
    attachment: bytes | None = None,
    page_url: str = "",
) -> list[Path]:
    """Write one version of a PQR as the scraper does: JSON, PDF, attachments."""
    ts = format_ts(extracted)
    sgc = sgc_for_name(record["numero_reclamo_sgc"], record_number, ts)
    doc = dict(record)
    doc.update(
        record_number=record_number,
        sgc_number=record["numero_reclamo_sgc"],
        extraction_timestamp=ts,
        page_url=page_url or f"https://replica.invalid/#/Detail/{record['numero_radicado']}",
        page_title="Detalle PQR",
    )
    written = [
        _write(folder / record_file_name(sgc, ts), json.dumps(doc, ensure_ascii=False, indent=1).encode()),
        _write(folder / pdf_file_name(sgc, ts), pdf_bytes(f"PQR {record['numero_radicado']} {ts}")),
    ]
    if attachment is not None:
        written.append(_write(folder / attachment_file_name(sgc, ts, "jpg"), attachment))
    if record["documento_prueba"]:
        proof = folder / record["documento_prueba"]
        if not proof.exists():
            written.append(_write(proof, pdf_bytes(f"Prueba {record['numero_radicado']}")))
    return written


def write_day(
    data_dir: Path,
    empresa: str,
    day: dt.date,
    n: int = 10,
    seed: int = 0,
    versions: bool = True,
    broken: bool = True,
    now: dt.datetime | None = None,
) -> GeneratedDay:
    """Write ``n`` PQRs filed on ``day`` into the landing folder, some in two versions (the
    later one with a changed status), and, when ``broken``, a few files that must be rejected.
    Extraction times are capped at ``now`` (naive Bogotá time, default the clock), so the
    files are a function of (empresa, day, seed, now) alone."""
    folder = landing_dir(data_dir, empresa)
    private_dir(folder)
    out = GeneratedDay(empresa, day)
    for i in range(1, n + 1):
        record = fake_pqr(empresa, day, i, seed)
        rng = seeded_rng(seed, "files", empresa, day.isoformat(), i)
        filed = dt.datetime.strptime(record["fecha"], "%Y/%m/%d %H:%M")
        attachment = rng.randbytes(rng.randint(2_000, 8_000)) if rng.random() < 0.3 else None
        first = extraction_time_for(filed, rng.randint(5, 120), now)
        out.files += write_record_files(folder, record, first, i, attachment)
        out.records.append(record)
        if versions and i % 4 == 0 and record["estado_solicitud"] != "Finalizado":
            later = dict(record, estado_solicitud="Finalizado", comentarios="Respuesta enviada al cliente.")
            second = extraction_time_for(filed, rng.randint(180, 600), now)
            if second > first:
                out.files += write_record_files(folder, later, second, i, attachment)
                out.records.append(later)
    if broken:
        for path, code in write_broken_files(data_dir, empresa, day).items():
            out.files.append(path)
            out.broken[path.name] = code
    return out


def write_broken_files(data_dir: Path, empresa: str, day: dt.date) -> dict[Path, str]:
    """A few record files that must be rejected (routed to ``day`` by the ts in their names):
    path -> expected reason code."""
    folder = landing_dir(data_dir, empresa)
    private_dir(folder)
    ts = format_ts(dt.datetime.combine(day, dt.time(23, 50)))
    bad = {
        f"ROTO1_data_{ts}.json": (b"", "empty_file"),
        f"ROTO2_data_{ts}.json": (b'{"numero_radicado": "1", "fecha": ', "invalid_json"),
        f"ROTO3_data_{ts}.json": (b"[1, 2, 3]", "not_an_object"),
        f"ROTO4_data_{ts}.json": (
            json.dumps(
                {"numero_radicado": f"{day:%Y%m%d}9000001", "fecha": "ayer", "estado_solicitud": "Radicado"}
            ).encode(),
            "bad_fecha",
        ),
    }
    out = {}
    for name, (data, code) in bad.items():
        path = folder / name
        if not path.exists():  # written once: a rerun changes nothing
            _write(path, data)
        out[path] = code
    return out


def write_days(
    data_dir: Path,
    days: list[dt.date],
    empresas: tuple[str, ...],
    n: int = 10,
    seed: int = 0,
    broken: bool = True,
) -> list[GeneratedDay]:
    return [write_day(data_dir, e, d, n=n, seed=seed, broken=broken) for d in days for e in empresas]
