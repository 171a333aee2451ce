"""``ov-assets import-landing``: the old system's landing folders copied into ours (issue 16).

The old extractor left flat folders of Windows-era files: ``pqr_data_{sgc}_{ts}.json`` (cp1252
or UTF-8), PDFs and attachments, under ``data/downloads/{empresa}/oficina_virtual/processed/``
or wherever they were copied since. Every regular file found under the given folder (never
through a symbolic link, file or folder) is

- **named as it was** when the name is one the pipeline knows (``core.file_names.parse_name``)
  and safe as a single file name: UTF-8, no ``/`` or ``\\``, no NUL or control character, not
  hidden (a leading dot), at most ``MAX_NAME_BYTES``. A name is untrusted text, never a path:
  anything else is refused and reported;
- **put in the landing folder of its empresa** (CONTRACT §2): the one given (``--empresa``), else
  a folder of its path named after an empresa, else, for a record, the portal its ``page_url``
  names (decoded with the pipeline's own ``core.records``), else, for a PDF or attachment, the
  empresa of the record that links it. A record whose JSON names the other empresa's portal is
  refused (``empresa_mismatch``), and a file whose empresa cannot be decided is refused too;
- **written atomically and never over another file**: a unique owner-only temporary, then a
  create-exclusive hard link (``fs.link_exclusive``), its modification time kept (the retention
  counts from it). The same name with the same bytes is already there; with other bytes it is
  refused (``conflict``) and both stay as they are. Record files go last, so a reader that sees a
  record sees its files.

Files the pipeline will reject (undecodable, invalid JSON, a bad ``fecha``) are copied all the
same: the pipeline keeps them as rejects with their reason, as it does any landing file; the
report names the records whose day (the partition of their ``fecha``) could not be read.
The report holds counts, file names (SGCs and time stamps) and partitions, never a record's
content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ov_assets.core.contract import EMPRESAS
from ov_assets.core.file_names import FILE_RECORD, TEMPORARY_ENDINGS, landing_dir, parse_name
from ov_assets.core.records import decode_bytes, evaluate_file
from ov_assets.errors import OperatorError
from ov_assets.fs import (
    NameTaken,
    NotARegularFile,
    holds_bytes,
    link_exclusive,
    open_landing,
    private_dir,
    write_temporary,
)

# Room for the names made from a landing name: a writer's temporary (``.{name}.{pid}-{hex}.part``)
# and a replaced file's version in the bucket (``{name}~{16 hex}``), within 255 bytes.
MAX_NAME_BYTES = 200
# The production portals (CONTRACT §9); the configured ones are added by the caller.
PORTAL_HOSTS = {"caribemar.facture.co": "afinia", "caribesol.facture.co": "aire"}
_FOLDER_EMPRESAS = {"afinia": "afinia", "aire": "aire", "air-e": "aire"}

# Why a file was refused (the report's words).
UNSAFE_NAME = "unsafe_name"  # a path separator (``../x``, ``..\\x``), NUL, a control character
NAME_NOT_UTF8 = "name_not_utf8"
NAME_TOO_LONG = "name_too_long"
UNKNOWN_NAME = "unknown_name"  # not a landing file name (Thumbs.db, notes.txt, .hidden...)
SYMLINK = "symlink"
NOT_A_REGULAR_FILE = "not_a_regular_file"
UNREADABLE = "unreadable"
CONFLICT = "conflict"  # the landing folder (or an earlier file of this import) holds other bytes
CHANGED = "changed_during_import"  # a record rewritten between its examination and its copy
EMPRESA_UNDECIDABLE = "empresa_undecidable"
EMPRESA_MISMATCH = "empresa_mismatch"


def shown(name: str) -> str:
    """A file name fit for a terminal: non-printable characters and undecodable bytes escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)[:160]


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a landing file name, or None. Untrusted text, never a path."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return NAME_NOT_UTF8
    if "/" in name or "\\" in name or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return UNSAFE_NAME  # a path (POSIX or Windows), NUL, a control or invisible format character
    if not name or name.strip() != name:
        return UNSAFE_NAME  # (Windows drops trailing spaces: not the name it was)
    if len(encoded) > MAX_NAME_BYTES:
        return NAME_TOO_LONG
    if name.startswith(".") or name.endswith(TEMPORARY_ENDINGS) or parse_name(name) is None:
        return UNKNOWN_NAME  # hidden, being written, or no landing file's name
    return None


def portal_empresa(page_url: object, hosts: Mapping[str, str]) -> str | None:
    """The empresa whose portal ``page_url`` points at, when it is one we know."""
    if not isinstance(page_url, str) or not page_url:
        return None
    try:
        host = (urlparse(page_url.strip()).hostname or "").lower()
    except ValueError:
        return None
    return hosts.get(host)


@dataclass
class _Found:
    rel: str  # the path under the imported folder (for messages)
    name: str
    folder: Path
    hint: str | None  # the empresa a folder of its path names
    kind: str | None = None
    link_key: str | None = None
    sha256: str | None = None  # of a record's bytes as examined (every file is read again to copy)
    json_empresa: str | None = None
    day: dt.date | None = None
    referenced: tuple[str, ...] = ()
    empresa: str | None = None


@dataclass
class ImportReport:
    """What an import took, found already there and refused (names, never contents)."""

    taken: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    day_undecidable: list[str] = field(default_factory=list)  # records copied whose fecha was unreadable
    partitions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (day, empresa) -> records
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refuse(self, reason: str, rel: str) -> None:
        with self._lock:
            self.refused[reason].append(shown(rel))

    def copied(self, item: _Found, new: bool) -> None:
        with self._lock:
            (self.taken if new else self.already).append(shown(item.rel))
            if item.kind != FILE_RECORD or item.empresa is None:
                return
            if item.day is None:
                self.day_undecidable.append(shown(item.rel))
            else:
                self.partitions[(item.day.isoformat(), item.empresa)] += 1

    def lines(self) -> list[str]:
        out = [
            f"taken: {len(self.taken)} files",
            f"already present (same name, same bytes): {len(self.already)} files",
            f"refused: {sum(len(v) for v in self.refused.values())} files",
        ]
        for reason in sorted(self.refused):
            names = self.refused[reason]
            out.append(f"  refused {reason}: {len(names)}")
            out += [f"    {n}" for n in sorted(names)]
        if self.day_undecidable:
            out.append(
                f"records whose day could not be read (copied; the pipeline keeps them as rejects): "
                f"{len(self.day_undecidable)}"
            )
            out += [f"    {n}" for n in sorted(self.day_undecidable)]
        by_empresa: dict[str, list[str]] = defaultdict(list)
        for day, empresa in self.partitions:
            by_empresa[empresa].append(day)
        for empresa, days in sorted(by_empresa.items()):
            n = sum(self.partitions[(d, empresa)] for d in days)
            out.append(
                f"{empresa}: {n} record files over {len(days)} partitions, {min(days)} .. {max(days)} "
                "(materialize them, or let the landing sensor pick them up)"
            )
        return out


def _walk(root: Path, report: ImportReport) -> Iterator[_Found]:
    """Every regular file under ``root`` (folders walked without following links); links and
    special files are refused as they are met."""
    stack: list[tuple[Path, str, str | None]] = [(root, "", None)]
    while stack:
        folder, rel, hint = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            report.refuse(UNREADABLE, f"{rel or '.'} ({type(exc).__name__})")
            continue
        for entry in entries:
            path_rel = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                report.refuse(SYMLINK, path_rel)
            elif entry.is_dir(follow_symlinks=False):
                folder_hint = _FOLDER_EMPRESAS.get(entry.name.lower(), hint)
                stack.append((Path(entry.path), path_rel, folder_hint))
            elif entry.is_file(follow_symlinks=False):
                yield _Found(path_rel, entry.name, folder, hint)
            else:
                report.refuse(NOT_A_REGULAR_FILE, path_rel)


def _read(found: _Found) -> tuple[bytes, int]:
    """The file's bytes and modification time, opened relative to its folder, never through a
    link (a file swapped for one since the listing is refused by the kernel)."""
    with open_landing(found.folder / found.name) as (fh, st):
        return fh.read(), st.st_mtime_ns


def _examine(found: _Found, hosts: Mapping[str, str], today: dt.date) -> None:
    """A record's bytes, the empresa its JSON names and the day of its fecha."""
    data, _ = _read(found)
    found.sha256 = hashlib.sha256(data).hexdigest()
    decoded = decode_bytes(data)
    if not isinstance(decoded, tuple):
        return
    found.json_empresa = portal_empresa(decoded[0].get("page_url"), hosts)
    outcome = evaluate_file(found.name, data, found.sha256, today)
    found.day = outcome.fecha_day
    found.referenced = tuple(outcome.referenced)


def _decide(found: _Found, given: str | None, owners: Mapping[str, set[str]]) -> str | tuple[str]:
    """The file's empresa; a 1-tuple holding the refusal reason when there is none to trust."""
    said = given or found.hint
    if found.kind == FILE_RECORD:
        if said and found.json_empresa and found.json_empresa != said:
            return (EMPRESA_MISMATCH,)
        return said or found.json_empresa or (EMPRESA_UNDECIDABLE,)
    if said:
        return said
    candidates = owners.get(found.link_key or "", set()) | owners.get(found.name, set())
    return next(iter(candidates)) if len(candidates) == 1 else (EMPRESA_UNDECIDABLE,)


def import_landing(
    source: Path,
    data_dir: Path,
    empresa: str | None = None,
    today: dt.date | None = None,
    portal_hosts: Mapping[str, str] | None = None,
    workers: int = 8,
) -> ImportReport:
    """Copy the old landing folder ``source`` into ``data_dir``'s landing folders (module doc).
    ``portal_hosts``: host -> empresa of configured portals, besides the production ones;
    ``workers``: files copied at once (each copy waits for its fsync)."""
    from ov_assets.core.contract import today_bogota

    if empresa is not None and empresa not in EMPRESAS:
        raise ValueError(f"unknown empresa {empresa!r}")
    src, dst = source.resolve(), data_dir.resolve()
    if src == dst or dst in src.parents or src in dst.parents:
        raise OperatorError(
            f"{source} and the data folder {data_dir} overlap: give the old system's folder, not one inside "
            "OV_DATA_DIR (nor one holding it)"
        )
    today = today or today_bogota()
    hosts = {**PORTAL_HOSTS, **{h.lower(): e for h, e in (portal_hosts or {}).items()}}
    report = ImportReport()
    found: list[_Found] = []
    for item in _walk(source, report):
        problem = name_problem(item.name)
        if problem:
            report.refuse(problem, item.rel)
            continue
        parsed = parse_name(item.name)
        assert parsed is not None  # name_problem refuses names parse_name does not know
        item.kind, item.link_key = parsed.kind, parsed.link_key
        if item.kind == FILE_RECORD:
            try:
                _examine(item, hosts, today)
            except NotARegularFile:
                report.refuse(SYMLINK, item.rel)
                continue
            except OSError as exc:
                report.refuse(UNREADABLE, f"{item.rel} ({type(exc).__name__})")
                continue
        found.append(item)

    owners: dict[str, set[str]] = defaultdict(set)  # link key or referenced name -> empresas of its records
    records = [f for f in found if f.kind == FILE_RECORD]
    for rec in records:
        decided = _decide(rec, empresa, owners)
        if isinstance(decided, str):
            rec.empresa = decided
            for key in (rec.link_key, *rec.referenced):
                if key:
                    owners[key].add(decided)
    for item in found:
        decided = item.empresa if item.empresa else _decide(item, empresa, owners)
        if isinstance(decided, tuple):
            report.refuse(decided[0], item.rel)
        else:
            item.empresa = decided
    # Attachments and PDFs first, records after all of them: a reader that sees a record sees
    # its files. (Two files of one name race safely: the create-exclusive link decides.)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ov-import") as pool:
        for phase in (False, True):
            batch = sorted((f for f in found if f.empresa and (f.kind == FILE_RECORD) == phase), key=lambda f: f.rel)
            list(pool.map(lambda f: _copy(f, data_dir, report), batch))
    return report


def _copy(item: _Found, data_dir: Path, report: ImportReport) -> None:
    assert item.empresa is not None
    try:
        data, mtime_ns = _read(item)
    except NotARegularFile:
        report.refuse(SYMLINK, item.rel)
        return
    except OSError as exc:
        report.refuse(UNREADABLE, f"{item.rel} ({type(exc).__name__})")
        return
    if item.sha256 is not None and hashlib.sha256(data).hexdigest() != item.sha256:
        report.refuse(CHANGED, item.rel)  # its empresa and day were decided from other bytes
        return
    folder = private_dir(landing_dir(data_dir, item.empresa))
    target = folder / item.name
    try:
        if os.path.lexists(target):  # (a rerun: compare, write nothing)
            if not holds_bytes(target, data):
                raise NameTaken(target.name)
            new = False
        else:
            new = link_exclusive(write_temporary(target, data, mtime_ns), target, data)
    except NameTaken:
        report.refuse(CONFLICT, item.rel)
        return
    except OSError as exc:  # every file would fail alike: stop, saying what to fix
        raise OperatorError(
            f"cannot write {target.name} into {folder} ({type(exc).__name__}): the landing folder must be on a "
            "local file system that supports hard links, with room, writable by this user"
        ) from None
    report.copied(item, new)
