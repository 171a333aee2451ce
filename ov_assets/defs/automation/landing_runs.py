"""Which partitions new landing files call for: the landing sensor's logic, without Dagster.

The landing index (``landing_index.LandingIndex``) is shared: the sensor, the schedules and the
assets all refresh it, so "new in *my* refresh" is not "new": a run's refresh may index a file
before the sensor sees it. The sensor therefore reads the index's own record of *when* each
file version was indexed (``indexed_at``) and keeps, in its cursor, the versions it already
dispatched:

- every tick refreshes both empresas with a stability cutoff (a file modified less than
  ``STABLE_SECONDS`` ago is not opened yet: a growing file waits);
- it reads the file versions indexed since ``cursor.since - WINDOW`` (``WINDOW`` covers a
  concurrent refresh that started before the last tick and committed after it);
- versions already dispatched (their identity ``empresa|name|size|mtime`` is in the cursor)
  and versions still unstable are skipped; the rest are routed to partitions: a record file by
  its ``fecha`` (CONTRACT §5), a PDF or attachment by its record (same ``{sgc}_{ts}``, or named
  in the record);
- one run request per partition, ``run_key = "{partition}:{digest}"`` with the digest of its
  new versions (names, sizes, mtimes): a later batch for the same partition gets a new key.

Cost per tick: the new files opened once and one indexed query; never a rescan of the folder's
contents. A folder's listing (a stat per file: ~0.3 s for 20,000 files) is skipped while the
folder is unchanged since the last listing (same device, inode and modification time: a file
created, renamed in or removed changes it) and that listing left no growing file behind; a file
rewritten in place under its name leaves the folder's time alone, so a folder is listed at least
every ``RELIST`` anyway. An idle tick therefore costs a stat per empresa, whatever the folder
holds. The cursor holds only the identities of the versions indexed within the last ``WINDOW``
and the folders' states.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ov_assets.core.contract import BOGOTA, EMPRESAS, FIRST_DAY
from ov_assets.errors import OperatorError
from ov_assets.landing.index import LandingIndex

# Our writers (the scraper, the import of old files) give a file its name only when it is
# complete (create-exclusive link), so the cutoff guards only hand copies: a file being copied
# has a modification time of now; a copy that stalls longer is indexed again when it changes
# (new size/mtime: a new version and a new run). Every second of it is latency: a file younger
# than this at a tick waits for the next one, 5 s later (issue 20: p50 <= 8 s).
STABLE_SECONDS = 1
WINDOW = dt.timedelta(minutes=15)
RELIST = dt.timedelta(seconds=60)
# A folder's time is taken as a state only once it is this old: a file created in the same tick
# of the file system's coarse clock as the last change would leave the time as it was.
SETTLED_NS = 1_000_000_000
CURSOR_VERSION = 1


def valid_day(day: dt.date | None, today: dt.date) -> bool:
    """A day that is a partition of ``pqr_partitions`` (today's exists: end_offset=1)."""
    return day is not None and FIRST_DAY <= day <= today


@dataclass(frozen=True)
class _Version:
    empresa: str
    name: str
    size: int
    mtime_ns: int
    kind: str
    link_key: str | None
    partition_date: dt.date | None
    refs: tuple[str, ...]
    indexed_at: str

    @property
    def identity(self) -> str:
        raw = f"{self.empresa}|{self.name}|{self.size}|{self.mtime_ns}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _connect(index: LandingIndex) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{index.path}?mode=ro", uri=True, timeout=60)


# (an indexed range: the index's ``files_indexed_at``)
SINCE_SQL = (
    "SELECT empresa, name, size, mtime_ns, kind, link_key, partition_date, refs, indexed_at "
    "FROM files WHERE indexed_at >= ?"
)


def _indexed_since(index: LandingIndex, since: str) -> list[_Version]:
    with _connect(index) as db:
        rows = db.execute(SINCE_SQL, (since,)).fetchall()
    return [
        _Version(e, n, s, m, k, lk, dt.date.fromisoformat(p) if p else None, tuple(json.loads(r or "[]")), at)
        for e, n, s, m, k, lk, p, r, at in rows
    ]


def indexed_partitions_since(index: LandingIndex, since: dt.datetime) -> set[tuple[str, dt.date]]:
    """(empresa, day) of the files indexed at or after ``since`` (record files directly, other
    files through their record)."""
    versions = _indexed_since(index, since.astimezone(dt.UTC).isoformat())
    routed = _route(index, versions)
    return {(v.empresa, day) for v, day in routed.items() if day is not None}


def _route(index: LandingIndex, versions: list[_Version]) -> dict[_Version, dt.date | None]:
    """The partition day of each version (None: not routable yet, e.g. a PDF before its JSON)."""
    out: dict[_Version, dt.date | None] = {}
    pending: dict[str, list[_Version]] = defaultdict(list)
    batch_link: dict[tuple[str, str], dt.date] = {}
    batch_refs: dict[tuple[str, str], dt.date] = {}
    for v in versions:
        if v.kind == "json":
            out[v] = v.partition_date
            if v.partition_date:
                if v.link_key:
                    batch_link[(v.empresa, v.link_key)] = v.partition_date
                for r in v.refs:
                    batch_refs[(v.empresa, r)] = v.partition_date
    for v in versions:
        if v.kind == "json":
            continue
        day = (batch_link.get((v.empresa, v.link_key)) if v.link_key else None) or batch_refs.get((v.empresa, v.name))
        if day is not None:
            out[v] = day
        else:
            pending[v.empresa].append(v)
    if pending:
        with _connect(index) as db:
            for empresa, items in pending.items():
                links = sorted({v.link_key for v in items if v.link_key})
                by_link = (
                    dict(
                        db.execute(
                            "SELECT link_key, max(partition_date) FROM files WHERE empresa = ? AND kind = 'json' "
                            "AND partition_date IS NOT NULL AND link_key IN (SELECT value FROM json_each(?)) "
                            "GROUP BY link_key",
                            (empresa, json.dumps(links)),
                        ).fetchall()
                    )
                    if links
                    else {}
                )
                names = sorted({v.name for v in items if not (v.link_key and v.link_key in by_link)})
                by_ref = (
                    dict(
                        db.execute(
                            "SELECT r.value, max(f.partition_date) FROM files f, json_each(f.refs) r "
                            "WHERE f.empresa = ? AND f.kind = 'json' AND f.refs != '[]' AND f.partition_date IS NOT NULL "
                            "AND r.value IN (SELECT value FROM json_each(?)) GROUP BY r.value",
                            (empresa, json.dumps(names)),
                        ).fetchall()
                    )
                    if names
                    else {}
                )
                for v in items:
                    day = by_link.get(v.link_key) if v.link_key else None
                    day = day or by_ref.get(v.name)
                    out[v] = dt.date.fromisoformat(day) if day else None
    return out


@dataclass
class LandingPlan:
    """What one sensor tick asks for."""

    runs: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # partition -> (run_key, names)
    cursor: str = ""
    waiting: int = 0  # versions not stable yet
    unroutable: int = 0  # PDFs/attachments whose record is not indexed yet
    out_of_range: list[str] = field(default_factory=list)  # partitions that do not exist
    failed: dict[str, str] = field(default_factory=dict)  # empresa -> why its folder could not be indexed
    listed: list[str] = field(default_factory=list)  # empresas whose folder this tick listed


def describe_refresh_error(exc: Exception) -> str:
    """What to tell the operator about a refresh that failed: our operator errors say what to
    fix; anything else by its class only (a message could quote a file's content)."""
    if isinstance(exc, OperatorError):
        return str(exc)
    return (
        f"unexpected {type(exc).__name__} while indexing its landing folder (a defect: report it); retried every tick"
    )


def _load_cursor(raw: str | None) -> tuple[str | None, dict[str, list[str]]]:
    if not raw:
        return None, {}
    try:
        data = json.loads(raw)
        if data.get("v") != CURSOR_VERSION:
            return None, {}
        return data.get("since"), {k: list(v) for k, v in data.get("sent", {}).items()}
    except (ValueError, AttributeError):
        return None, {}


def _folder_state(folder: str) -> list[int] | None:
    """(device, inode, modification time) of a folder settled for ``SETTLED_NS``; None if it is
    missing or changed too recently to vouch for what a listing now sees."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_mtime_ns > time.time_ns() - SETTLED_NS:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns]


def _load_folders(raw: str | None) -> dict[str, dict[str, object]]:
    try:
        folders = json.loads(raw).get("folders", {}) if raw else {}
    except (ValueError, AttributeError):
        return {}
    return folders if isinstance(folders, dict) else {}


def _refresh(
    index: LandingIndex,
    empresa: str,
    today: dt.date,
    stable_before_ns: int,
    tick_start: dt.datetime,
    last: object,
    plan: LandingPlan,
) -> dict[str, object] | None:
    """List and index the empresa's folder unless it is unchanged since the last listing (see
    the module); returns the folder's state to keep in the cursor, None to list it next tick."""
    folder = str(index.folder(empresa))
    state = _folder_state(folder)
    if state is not None and isinstance(last, dict) and last.get("state") == state:
        try:
            listed = dt.datetime.fromisoformat(str(last.get("listed")))
        except ValueError:
            listed = None
        if listed is not None and listed.tzinfo is not None and tick_start - listed < RELIST:
            return last
    plan.listed.append(empresa)
    try:
        result = index.refresh(empresa, today, stable_before_ns=stable_before_ns)
    except Exception as exc:  # noqa: BLE001 - one empresa's folder never stops the other's runs
        plan.failed[empresa] = describe_refresh_error(exc)
        return None
    if state is None or result.unstable:
        return None  # a growing file: list again next tick
    return {"state": state, "listed": tick_start.isoformat()}


def plan_landing_runs(
    index: LandingIndex, cursor: str | None, now: dt.datetime | None = None, empresas: tuple[str, ...] = EMPRESAS
) -> LandingPlan:
    """Refresh the index and decide one run per partition with new, stable files."""
    now = now or dt.datetime.now(dt.UTC)
    tick_start = now.astimezone(dt.UTC)
    stable_before_ns = int((tick_start.timestamp() - STABLE_SECONDS) * 1e9)
    today = tick_start.astimezone(BOGOTA).date()
    plan = LandingPlan()
    last_folders = _load_folders(cursor)
    folders: dict[str, dict[str, object]] = {}
    for empresa in empresas:
        kept = _refresh(index, empresa, today, stable_before_ns, tick_start, last_folders.get(empresa), plan)
        if kept is not None:
            folders[empresa] = kept

    since, sent_by_time = _load_cursor(cursor)
    lower = ((dt.datetime.fromisoformat(since) if since else tick_start) - WINDOW).isoformat()
    sent = {ident for idents in sent_by_time.values() for ident in idents}
    versions = [v for v in _indexed_since(index, lower) if v.empresa in empresas]
    fresh = [v for v in versions if v.identity not in sent]
    stable = [v for v in fresh if v.mtime_ns <= stable_before_ns]
    plan.waiting = len(fresh) - len(stable)
    routed = _route(index, stable)
    groups: dict[str, list[_Version]] = defaultdict(list)
    dispatched: list[_Version] = []
    for v, day in routed.items():
        if day is None:
            plan.unroutable += 1
            continue
        dispatched.append(v)
        key = f"{day.isoformat()}|{v.empresa}"
        if not valid_day(day, today):
            plan.out_of_range.append(key)
            continue
        groups[key].append(v)
    for key, items in sorted(groups.items()):
        lines = sorted(f"{v.name}\x1f{v.size}\x1f{v.mtime_ns}" for v in items)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
        plan.runs[key] = (f"{key}:{digest}", [v.name for v in sorted(items, key=lambda v: v.name)])
    plan.out_of_range = sorted(set(plan.out_of_range))

    # Remember what was dispatched while it can still show up in a later window.
    keep_after = (tick_start - WINDOW).isoformat()
    new_sent: dict[str, list[str]] = {at: ids for at, ids in sent_by_time.items() if at >= keep_after}
    for v in dispatched:
        new_sent.setdefault(v.indexed_at, []).append(v.identity)
    plan.cursor = json.dumps(
        {"v": CURSOR_VERSION, "since": tick_start.isoformat(), "sent": new_sent, "folders": folders},
        separators=(",", ":"),
    )
    return plan
