"""The scraper's side of the landing folder (CONTRACT §2): what is already there (the latest valid
version of each radicado, so an unchanged record writes nothing) and how one extracted version
is written (unique temporary names linked into place create-exclusive, the JSON last)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_assets.core.contract import ValidRecord, parse_extraction_ts, today_bogota, validate_record
from ov_assets.core.file_names import (
    FILE_RECORD,
    attachment_file_name,
    format_ts,
    parse_name,
    pdf_file_name,
    record_file_name,
    sgc_for_name,
)
from ov_assets.fs import private_dir
from ov_assets.portal import naming

_UUID_NAME = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.[A-Za-z0-9]+")
_EXT = re.compile(r"\.([A-Za-z0-9]{1,8})$")


@dataclass
class LandingState:
    """The latest valid version of each radicado in a landing folder."""

    latest: dict[str, tuple[str, str, ValidRecord]] = field(default_factory=dict)  # radicado -> (ts, name, rec)

    @property
    def hashes(self) -> set[str]:
        return {rec.hash_registro for _, _, rec in self.latest.values()}


def landing_state(folder: Path, day: dt.date | None = None) -> LandingState:
    """Read the record files of ``folder`` (all of them: O(folder); the asset should prefer the
    hashes it already has in its index or table) and keep the latest valid version per
    radicado, optionally only those whose ``fecha`` falls on ``day``."""
    state = LandingState()
    today = today_bogota()
    if not folder.is_dir():
        return state
    for entry in os.scandir(folder):
        name = parse_name(entry.name)
        if name is None or name.kind != FILE_RECORD:
            continue
        try:
            obj = json.loads(Path(entry.path).read_bytes().decode("utf-8-sig"))
        except (OSError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        rec = validate_record(obj, today)
        if not isinstance(rec, ValidRecord) or (day is not None and rec.fecha.date() != day):
            continue
        ts = obj.get("extraction_timestamp") if parse_extraction_ts(obj.get("extraction_timestamp")) else name.ts
        key = (ts or "", entry.name)
        rad = rec.values["numero_radicado"]
        if rad not in state.latest or key > state.latest[rad][:2]:
            state.latest[rad] = (key[0], key[1], rec)
    return state


def write_version(
    folder: Path,
    record: dict[str, str],
    extracted: dt.datetime,
    record_number: int,
    pdf: bytes,
    attachments: list[tuple[str, bytes]],
    page_url: str,
    page_title: str = "Detalle PQR",
) -> list[Path]:
    """Write one extracted version with CONTRACT §2 names: attachments, PDF, then the JSON.

    Names come from ``naming``: the SGC as a safe token, else ``PQR_{radicado}_{ts}``, never
    the list position, so concurrent scrapes of different PQRs never share a name. Every file
    is written to a unique temporary name and linked into place create-exclusive, the JSON
    last, so a reader that sees a record sees its files; a name taken by other bytes raises
    ``LandingConflict`` and removes the files of this version that this call created.
    An attachment that carries the portal's ``<uuid>.<ext>`` name keeps it (shared by every
    version, so never removed again; the same name with the same bytes is already there);
    others become ``{sgc}_adjunto[_i]_{ts}.{ext}``. Files and folder are owner-only. Returns
    the paths created.
    """
    private_dir(folder)
    ts = format_ts(extracted)
    # A blank radicado (a record the loader will reject) still gets a name of its own.
    key = record["numero_radicado"] or secrets.token_hex(6)
    sgc = sgc_for_name(record["numero_reclamo_sgc"], key, ts)
    doc: dict[str, Any] = dict(record)
    doc.update(
        record_number=record_number,
        sgc_number=record["numero_reclamo_sgc"],
        extraction_timestamp=ts,
        page_url=page_url,
        page_title=page_title,
    )
    shared: list[tuple[Path, bytes]] = []
    own: list[tuple[Path, bytes]] = []
    index = 0
    for name, data in attachments:
        if _UUID_NAME.fullmatch(name):
            target = folder / name
            if not target.exists():
                shared.append((target, data))
                continue
            if target.read_bytes() == data:
                continue
        m = _EXT.search(name)
        ext = (m.group(1) if m else "bin").lower()
        own.append((folder / attachment_file_name(sgc, ts, ext, index), data))
        index += 1
    own.append((folder / pdf_file_name(sgc, ts), pdf))
    own.append((folder / record_file_name(sgc, ts), json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")))
    return naming.commit_files(shared) + naming.commit_files(own)
