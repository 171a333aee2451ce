"""One landing file, examined the way the index takes it in: classified by its name, opened
relative to the folder without following a symbolic link, hashed and, for a record file,
evaluated; the result is its index row (and, for a record-frame file, its outcome).

Files are untrusted: each is examined under its own guard (``examine_guarded``), checked to be a
regular file, read only up to ``OV_MAX_RECORD_BYTES`` when it is a record and hashed in chunks
otherwise. What cannot be loaded (a lone surrogate, a name that is not UTF-8 or not ours, a link,
a folder, an oversized record, an unreadable file) becomes a rejected record-frame row with its
reason, so it reaches ``ov_rejects`` and never stops the other files.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
from contextlib import suppress
from typing import Any, cast

import orjson

from ov_assets.core.contract import (
    BAD_FILE_NAME,
    BOGOTA,
    FIRST_DAY,
    NOT_A_REGULAR_FILE,
    RECORD_TOO_LARGE,
    UNKNOWN_NAME,
    UNREADABLE,
    Reject,
    parse_extraction_ts,
)

# (the endings of names being written: such files are skipped, not reported)
from ov_assets.core.file_names import FILE_RECORD, TEMPORARY_ENDINGS, parse_name
from ov_assets.core.records import RULES_VERSION, FileOutcome, evaluate_parts
from ov_assets.fs import NotARegularFile, open_regular
from ov_assets.landing.index_store import IndexRow, Outcome, RecordItem
from ov_assets.settings import max_record_bytes

_CHUNK = 1 << 20
_DAYS: dict[str, dt.date] = {}  # ISO day -> date, shared by the records of a day
_TS_ANYWHERE = re.compile(r"(?<!\d)(\d{8}_\d{6})(?!\d)")


class Examined:
    """What ``examine_guarded`` made of some files of one folder: index rows and, per
    record-frame row, its ``RecordItem``, link key, partition day and mtime, and the mtime as
    extraction time of the valid records that carry none."""

    def __init__(self, empresa: str, today: dt.date, now: str) -> None:
        self.empresa, self.today, self.now = empresa, today, now
        self.rows: list[IndexRow] = []
        self.items: list[RecordItem] = []
        self.links: list[str | None] = []
        self.days: list[dt.date] = []
        self.mtimes: list[int] = []
        self.fallback: dict[str, dt.datetime] = {}


def open_folder(folder: str | os.PathLike[str]) -> int:
    """A descriptor of the folder, which files are then opened relative to."""
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))


def examine_file(folder: str | os.PathLike[str], empresa: str, name: str, today: dt.date) -> RecordItem | None:
    """One record-frame file of the folder, read the way the refresh reads it (no link followed,
    the size cap, every failure a reject); None when it is gone or no longer such a file."""
    out = Examined(empresa, today, "")
    try:
        dir_fd = open_folder(folder)
    except FileNotFoundError:
        return None
    try:
        examine_guarded(dir_fd, name, max_record_bytes(), out)
    finally:
        os.close(dir_fd)
    return out.items[0] if out.items else None


def examine_guarded(dir_fd: int, name: str, cap: int, out: Examined) -> None:
    """``_examine``; a file it cannot make sense of becomes an ``unreadable`` reject: no content,
    name or kind of file stops the other files of the folder (or every refresh)."""
    try:
        _examine(dir_fd, name, cap, out)
    except Exception as exc:  # noqa: BLE001 - kept as the file's reason (its class: no content)
        with suppress(OSError):  # gone since the listing: the next refresh drops it
            _reject_into(
                dir_fd,
                name,
                stored_name(name),
                None,
                UNREADABLE,
                f"the file could not be read or evaluated ({type(exc).__name__})",
                out,
            )


def _examine(dir_fd: int, name: str, cap: int, out: Examined) -> None:
    """Classify, open (never through a symbolic link), hash and, for a record file, evaluate one
    landing file; append its index row (and record-frame item) to ``out``. Every file but those
    being written gets a row: what cannot be loaded is a reject with its reason."""
    stored = stored_name(name)
    if stored[:1] == "." or stored.endswith(TEMPORARY_ENDINGS):
        return  # being written (the scraper writes aside, then renames)
    if stored is not name:
        _reject_into(
            dir_fd,
            name,
            stored,
            None,
            BAD_FILE_NAME,
            "the file name is not valid UTF-8 (a cp1252 name from a Windows zip?): the file was not read; rename it",
            out,
        )
        return
    parsed = parse_name(name)
    if parsed is None:
        _reject_into(
            dir_fd,
            name,
            name,
            None,
            UNKNOWN_NAME,
            "the name is none of the landing folder's (CONTRACT §2): the file was not read; "
            "rename it if it is a PQR file, else move it out of the folder",
            out,
        )
        return
    try:  # relative to the folder: one path component, and never through a symbolic link
        fd, st = open_regular(name, dir_fd)
    except FileNotFoundError:
        return  # removed since the listing
    except NotARegularFile as exc:
        _reject_into(dir_fd, name, name, parsed.ts, NOT_A_REGULAR_FILE, exc.detail, out, exc.st)
        return
    except OSError as exc:
        _reject_into(
            dir_fd,
            name,
            name,
            parsed.ts,
            UNREADABLE,
            f"the file could not be opened ({errno.errorcode.get(exc.errno or 0, 'OSError')})",
            out,
        )
        return
    try:
        if parsed.kind != FILE_RECORD:
            sha, size = _hash_fd(fd)
            out.rows.append(
                IndexRow(
                    out.empresa,
                    name,
                    size,
                    st.st_mtime_ns,
                    sha,
                    parsed.kind,
                    parsed.link_key,
                    None,
                    None,
                    None,
                    None,
                    "[]",
                    out.now,
                    None,
                    None,
                )
            )
            return
        data = _read_fd(fd, st.st_size, cap) if st.st_size <= cap else None
        if data is None or len(data) > cap:  # (or it grew past the cap since fstat)
            os.lseek(fd, 0, os.SEEK_SET)
            sha, size = _hash_fd(fd)
            _reject_into(
                dir_fd,
                name,
                name,
                parsed.ts,
                RECORD_TOO_LARGE,
                f"the record file has {size} bytes, above OV_MAX_RECORD_BYTES ({cap}): not read",
                out,
                st,
                sha,
                size,
            )
            return
    finally:
        os.close(fd)
    sha = hashlib.sha256(data).hexdigest()
    _record_into(name, parsed.link_key, parsed.ts, st, sha, len(data), evaluate_parts(name, data, sha, out.today), out)


def _reject_into(
    dir_fd: int,
    name: str,
    stored: str,
    ts: str | None,
    code: str,
    detail: str,
    out: Examined,
    st: os.stat_result | None = None,
    sha: str = "",
    size: int | None = None,
) -> None:
    """A file rejected before its content was evaluated: a record-frame row (kind ``json``, so
    it reaches ``ov_rejects`` through its partition like a rejected record file) holding the
    reason, linked to nothing. ``stored``: the name as the index keeps it; ``sha`` "" when the
    file was not read."""
    if st is None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    size = st.st_size if size is None else size
    parts = FileOutcome(stored, sha, size, reject=Reject(code, detail)).as_list()
    _record_into(stored, None, ts if ts is not None else _name_ts(stored), st, sha, size, parts, out)


def _record_into(
    name: str,
    link_key: str | None,
    ts: str | None,
    st: os.stat_result,
    sha: str,
    size: int,
    parts: list[Any],
    out: Examined,
) -> None:
    """Append the index row and record-frame item of a record file (or of a file rejected as
    one) whose outcome is ``parts`` (``FileOutcome.as_list()``). Partition: its fecha's day,
    else the ``{ts}`` of its name, else its mtime's day (CONTRACT §5)."""
    outcome = Outcome._make(parts)
    if outcome.values is not None:
        status, refs, hreg = "valid", outcome.refs, outcome.hash_registro
    else:  # (an outcome without values is a reject)
        status, refs, hreg = cast("list[str]", outcome.reject)[0], [], None
    iso_day = outcome.fecha_day
    if iso_day is not None:
        day = iso_date(iso_day)
    else:
        named = parse_extraction_ts(ts)
        day = (
            named.date()
            if named and FIRST_DAY <= named.date() <= out.today
            else dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, BOGOTA).date()
        )
        iso_day = day.isoformat()
    row = IndexRow(
        out.empresa,
        name,
        size,
        st.st_mtime_ns,
        sha,
        FILE_RECORD,
        link_key,
        iso_day,
        outcome.numero_radicado,
        hreg,
        status,
        orjson.dumps(refs).decode() if refs else "[]",
        out.now,
        orjson.dumps(parts),
        RULES_VERSION,
    )
    out.rows.append(row)  # (all that may fail is done: the lists stay aligned)
    out.items.append(RecordItem(name, sha, size, outcome))
    out.links.append(link_key)
    out.days.append(day)
    out.mtimes.append(st.st_mtime_ns)
    if outcome.values is not None and outcome.extracted is None:
        out.fallback[name] = bogota_naive(st.st_mtime_ns)


def stored_name(name: str) -> str:
    """The name as the index (and ``ov_rejects``) keep it: ``name`` itself when it is valid
    UTF-8, else its bytes with the invalid ones written ``\\xNN`` (``os.scandir`` hands such
    names over with surrogate escapes, which no UTF-8 store accepts)."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _name_ts(name: str) -> str | None:
    """A ``{ts}`` anywhere in a name that follows no rule (its partition, CONTRACT §5)."""
    found = _TS_ANYWHERE.search(name)
    return found[1] if found else None


def iso_date(iso_day: str) -> dt.date:
    """``date.fromisoformat``, one shared object per day (the records of a day share it)."""
    return _DAYS.get(iso_day) or _DAYS.setdefault(iso_day, dt.date.fromisoformat(iso_day))


def bogota_naive(mtime_ns: int) -> dt.datetime:
    """A file's mtime as Bogotá wall-clock time (the extraction time of a record without one)."""
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, BOGOTA).replace(tzinfo=None)


def _read_fd(fd: int, size: int, cap: int) -> bytes:
    """The file's bytes; more than ``cap`` of them only when it is over the cap."""
    data = os.read(fd, size + 1)
    if len(data) <= size:  # a short read of a regular file: its end
        return data
    chunks = [data]  # the file grew since fstat
    total = len(data)
    while chunks[-1] and total <= cap:
        chunks.append(os.read(fd, _CHUNK))
        total += len(chunks[-1])
    return b"".join(chunks)


def _hash_fd(fd: int) -> tuple[str, int]:
    """SHA-256 and size of the file from its position on, in chunks (one ``os.read`` returns at
    most ~2 GiB on Linux: a larger file read at once was hashed truncated)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
