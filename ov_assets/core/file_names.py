"""The landing folder (CONTRACT §2): where files live and what their names say.

Pure name rules live here; the incremental index of the folder is in ``landing_index``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import NamedTuple

from ov_assets.core.contract import EXTRACTION_TS_FORMAT, parse_extraction_ts

FILE_RECORD = "json"
FILE_PDF = "pdf"
FILE_ATTACHMENT = "attachment"

_TS = r"(?P<ts>\d{8}_\d{6})"
_RECORD_OLD = re.compile(rf"pqr_data_(?P<sgc>.+)_{_TS}\.json")
_RECORD = re.compile(rf"(?P<sgc>.+)_data_{_TS}\.json")
_ATTACHMENT = re.compile(rf"(?P<sgc>.+)_adjunto(?:_\d+)?_{_TS}\.(?P<ext>[A-Za-z0-9]+)")
_PDF = re.compile(rf"(?P<sgc>.+)_{_TS}\.pdf")
_PORTAL_NAME = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.[A-Za-z0-9]+")
# Names that are being written (the scraper writes aside, then renames): a leading dot, or
# these endings (also before a final newline, as a regex ``$`` would allow).
TEMPORARY_ENDINGS = (".part", ".tmp", "~", ".part\n", ".tmp\n", "~\n")


class LandingName(NamedTuple):
    """What a landing file's name says: its kind and the (sgc, ts) that links it to a record.
    (A named tuple: the landing index makes one per file, a frozen dataclass costs twice.)"""

    kind: str  # json | pdf | attachment
    sgc: str | None
    ts: str | None

    @property
    def link_key(self) -> str | None:
        """Files of one record share ``{sgc}`` and ``{ts}``."""
        return f"{self.sgc}|{self.ts}" if self.sgc and self.ts else None

    @property
    def extraction_time(self) -> dt.datetime | None:
        return parse_extraction_ts(self.ts)


def parse_name(name: str) -> LandingName | None:
    """Classify a landing file name; None for files that are not ours (or still being written)."""
    if name[:1] == "." or name.endswith(TEMPORARY_ENDINGS):
        return None
    m = _RECORD_OLD.fullmatch(name) or _RECORD.fullmatch(name)
    if m:
        return LandingName(FILE_RECORD, m["sgc"], m["ts"])
    m = _ATTACHMENT.fullmatch(name)
    if m:
        return LandingName(FILE_ATTACHMENT, m["sgc"], m["ts"])
    m = _PDF.fullmatch(name)
    if m:
        return LandingName(FILE_PDF, m["sgc"], m["ts"])
    if _PORTAL_NAME.fullmatch(name):
        return LandingName(FILE_PDF if name.lower().endswith(".pdf") else FILE_ATTACHMENT, None, None)
    if name.endswith(".json"):
        # A JSON file outside the naming rules is still offered for validation.
        return LandingName(FILE_RECORD, None, None)
    return None


def landing_dir(data_dir: Path, empresa: str) -> Path:
    return data_dir / "downloads" / empresa / "oficina_virtual" / "processed"


def record_file_name(sgc: str, ts: str) -> str:
    return f"{sgc}_data_{ts}.json"


def pdf_file_name(sgc: str, ts: str) -> str:
    return f"{sgc}_{ts}.pdf"


def attachment_file_name(sgc: str, ts: str, ext: str, index: int = 0) -> str:
    suffix = f"_{index}" if index else ""
    return f"{sgc}_adjunto{suffix}_{ts}.{ext}"


# Characters a name token may keep verbatim; every other value is shortened and hashed.
_SAFE = re.compile(r"[A-Za-z0-9-]{1,64}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9-]")
_PREFIX_CHARS = 32
_HASH_CHARS = 16


def safe_token(value: str) -> str:
    """A name part made from untrusted portal text (an SGC or a radicado may hold ``/``, ``..``,
    spaces, be very long or be absent): ``value`` itself when it is 1-64 characters of
    ``[A-Za-z0-9-]``; else its allowed characters (at most 32) followed by ``_h`` and 16 hex
    digits of its SHA-256. Deterministic (the same SGC always names the same files); the ``_``
    keeps hashed tokens apart from every verbatim one; empty in, hash of the empty string out
    (never an empty name part)."""
    if _SAFE.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{_UNSAFE_CHARS.sub('', value)[:_PREFIX_CHARS]}_h{digest}"


def sgc_for_name(numero_reclamo_sgc: str, key: str | int, ts: str) -> str:
    """The ``{sgc}`` part of file names: the SGC, else ``PQR_{n}_{ts}`` with ``n`` the ``key``
    that tells this PQR apart (the scraper passes the radicado, never a list position, so
    concurrent scrapes never share a name). Both are portal text, made safe tokens first
    (``safe_token``): never a path, never too long; the JSON keeps them verbatim."""
    if numero_reclamo_sgc:
        return safe_token(numero_reclamo_sgc)
    return f"PQR_{safe_token(str(key))}_{ts}"


def format_ts(value: dt.datetime) -> str:
    return value.strftime(EXTRACTION_TS_FORMAT)
