"""Benchmark of the ``pqr_records`` code path (issue 3).

    python bench/records.py --n 100000

Generates N single-record files (one empresa, spread over days, ~1,000 per day) in a temporary
landing folder and measures, on the same files, alternating the three, median of ``--repeat``:

- io_floor: read every file's bytes, one thread, nothing else;
- ours:     the real ``pqr_records`` path: a fresh ``LandingIndex.refresh`` (scan, read, hash,
            decode, validate, canonicalise, hash_registro) and ``partition_frame`` for every
            partition (winners marked by polars);
- naive:    a plain per-record Python loop applying the same rules the way the old system did
            (json.load per file, a dict per record, ftfy on every text, strptime, regexes,
            winners in Python dicts).

Prints a table and, last, one JSON line.

Measured on the project's 2-core VM (AMD EPYC, 23 GB RAM, ext4). Its speed moves a lot
through a day (the same naive loop took 22 s at one moment and 28 s an hour later; the I/O
floor measured 18,000 to 97,000 files/s), so every run is kept here, newest first.

Issue 19 (2026-12-03: phones decided by phonenumbers, e-mails by email-validator, each through
a one-regex fast path on the libraries' own rules): ``--only io_floor --only ours``, before
(9bc6f63) and after (7fc45ce), alternating, on a VM shared with five test suites (load average
7-11, so the floor itself moved from 62k to 17k files/s within 15 minutes):

    before 07:39 {"io_floor_per_s": 62154, "ours_per_s": 7254}   after 07:43 {"io_floor_per_s": 50312, "ours_per_s": 4201}
    before 07:49 {"io_floor_per_s": 32653, "ours_per_s": 5217}   after 07:53 {"io_floor_per_s": 16610, "ours_per_s": 2313}

Later, load average 4-6, same alternation (before / after, records/s):

    08:16 8141 / 08:18 17458    08:19 17741 / 08:20 24306    08:23 11509 / 08:25 12038    08:27 16664 / 08:27 17208

Each "after" is at or above the "before" just ahead of it; neither reached 25k on the shared VM.
Those runs measure the other suites more than the rules. CPU per record of ``records.evaluate_parts``
alone (one process, 20,000 generated files, best of 5, alternating): before 17.0-18.1 us, after
18.8-19.9 us: ~+1.3 us on the ~46 us a record costs in a worker (~3%), i.e. ~24.4k records/s
where 25.1k was measured and ~27.0k where 27.8k was.

Fourth round, 2026-11-22 14:25, a fast moment of the VM, ``--only io_floor --only ours --only
python_min`` (``python_min``: two worker processes that open, read, hash and parse each file
with orjson and write one 4-column index row holding its values, and nothing else: the least any
Python design of ours does per file):

    io_floor 97,245/s, ours 27,811/s (0.29x), python_min 90,109/s (0.93x)

A lean Python pipeline keeps up with the floor; ours spends ~30 us more per record on the rules,
the canonical values, the frames and the wider index row (4 secondary indexes). Within 2x of a
97k/s floor leaves ~13 us per record for all of that, on top of ``python_min``'s ~22 us of CPU:
out of reach while the per-record rules run in the interpreter.

Third round, 2026-11-22 afternoon (a fast path for the usual record, ``records.evaluate_parts``,
with the rules in one place, ``contract.check_values``; one character-class scan for the
mojibake/NFC/whitespace questions; winners by two polars windows instead of a sort and a join;
a full refresh finishes its partitions without reading the index back; partitions handed out as
zero-copy slices), ``--n 100000``, median of 3, page cache dropped first:

    12:32 {"records": 100000, "io_floor_per_s": 60739, "ours_per_s": 22478, "naive_per_s": 4468, "peak_rss_mb": 858}  (fast path only)
    12:45 {"records": 100000, "io_floor_per_s": 76596, "ours_per_s": 25104, "naive_per_s": 4393, "peak_rss_mb": 837}
    13:25 {"records": 100000, "io_floor_per_s": 53632, "ours_per_s": 19737, "naive_per_s": 3626, "peak_rss_mb": 736}

(the 13:25 run on a slower moment of the VM: the naive loop took 27.6 s against 22.4 s at
12:45). ``--n 1000000 --only io_floor --only ours --repeat 1``:

    13:29 {"records": 1000000, "io_floor_per_s": 9430, "ours_per_s": 3549, "naive_per_s": 0, "peak_rss_mb": 1632}

(at that size the run is I/O-bound on this VM, and the VM was slow then: the same io_floor took
87 s at 13:00 and 106 s here; main-process CPU 50 s, of which most for the partitions beyond the
fresh cache, which come from the index)

Against the goals: ours >= 3x naive: met (5.4-5.7x). >= 20,000 records/s: met at 12:45 (25.1k),
just under at 13:25 (19.7k). Within 2x of the I/O floor: NOT met (0.33-0.37x: on this VM the
floor reads a cached file in 11-19 us, ours spends ~46 us of CPU per record in a worker). 1M
records under 2 GiB: met (peak 1,632 MB of the 2,048).

Where the time goes now, per record, CPU in a worker (single-process measure, warm cache):
open + fstat + read + close 6.7 us, parse the name 1.3, SHA-256 0.8, ``evaluate_parts`` ~20
(orjson 3.0, BOM/NUL/key-count checks 1.2, ``canonical_fast`` 7, ``check_values`` 6, extraction
time 1.3), outcome blob 1.1, SQLite insert 7.1 (the blob 1.5 of it), frame columns 3.9, pickling
2.2: ~46 us (was ~53). The main process: ~0.6 s per 100,000 during the refresh (listing,
collecting), ~0.4 s after it (was ~1.0). Both workers and the main process keep the 2 cores
~90% busy during a refresh, so only less CPU per record makes it faster. What is left to try:
the per-record rules vectorized in polars (orjson for the structure, then one plan over a batch's
values: canonical checks, fecha, limits, warnings), which needs workers started by forkserver
(polars must never run in a forked child of a process running polars) and SHA-256 of the
values outside Python; the frame built from the stored blobs by polars instead of in the workers.

Earlier rounds, same day: before this round {"records": 100000, "io_floor_per_s": 32748,
"ours_per_s": 12650, "naive_per_s": 3040, "peak_rss_mb": 852} (11:33) and {"io_floor_per_s":
17893, "ours_per_s": 14319, "naive_per_s": 2755} (slow disk); before workers wrote their own
index rows {"io_floor_per_s": 58590, "ours_per_s": 11754, "naive_per_s": 3044} (09:56). 1M peak
RSS: 3.4 GB (first version), 2,479 MB, 2,174 MB, then 2,064 MB before the chunk fix of this
round (the last chunk of fresh partitions took every fresh partition again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

import orjson

from ov_assets.core.contract import BUSINESS_FIELDS, FIELD_LIMITS, FIRST_DAY, KNOWN_KEYS
from ov_assets.core.file_names import landing_dir, record_file_name
from ov_assets.devkit.generator import fake_pqr
from ov_assets.landing.index import LandingIndex, partition_frame

EMPRESA = "afinia"
PER_DAY = 1000


def generate(data_dir: Path, n: int) -> tuple[list[str], list[dt.date]]:
    """The files, and their paths as plain strings (a million ``Path`` objects would weigh
    ~200 MB more in this process, counted in the peak RSS the bench reports for ours)."""
    folder = landing_dir(data_dir, EMPRESA)
    folder.mkdir(parents=True, exist_ok=True)
    first = dt.date(2024, 1, 1)
    paths: list[str] = []
    days: list[dt.date] = []
    for i in range(n):
        day = first + dt.timedelta(days=i // PER_DAY)
        if not days or days[-1] != day:
            days.append(day)
        rec = fake_pqr(EMPRESA, day, i % PER_DAY + 1, seed=7)
        ts = f"{day:%Y%m%d}_{10 + i % 10:02d}{i % 60:02d}00"
        doc = dict(
            rec,
            record_number=i,
            sgc_number=rec["numero_reclamo_sgc"],
            extraction_timestamp=ts,
            page_url=f"https://replica.invalid/#/Detail/{i}",
            page_title="Detalle PQR",
        )
        name = record_file_name(rec["numero_reclamo_sgc"] or f"PQR_{i}_{ts}", ts)
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, json.dumps(doc, ensure_ascii=False, indent=1).encode())
        os.close(fd)
        paths.append(path)
    return paths, days


def run_io_floor(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += len(f.read())
    return len(paths)


_MIN_DB: Any = None  # in a worker of run_python_min: its connection


def _min_batch(db_path: str, paths: list[str]) -> int:
    """read + SHA-256 + orjson + one index row per file, nothing else (no rule, no frame)."""
    global _MIN_DB
    if _MIN_DB is None:
        _MIN_DB = sqlite3.connect(db_path, timeout=60, isolation_level=None)
        _MIN_DB.execute("PRAGMA journal_mode=WAL")
        _MIN_DB.execute("PRAGMA synchronous=NORMAL")
    rows = []
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            data = os.read(fd, os.fstat(fd).st_size + 1)
        finally:
            os.close(fd)
        obj = orjson.loads(data)
        rows.append(
            (os.path.basename(p), len(data), hashlib.sha256(data).hexdigest(), orjson.dumps(list(obj.values())))
        )
    _MIN_DB.execute("BEGIN IMMEDIATE")
    _MIN_DB.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?)", rows)
    _MIN_DB.execute("COMMIT")
    return len(rows)


def run_python_min(paths: list[str], work: Path) -> int:
    """The least any Python design of ``ours`` does per file, on both cores: two worker
    processes that open and read each file, hash it, parse it with orjson and write one index
    row holding its values, and nothing else (no rule, no canonical form, no frame). Not one of
    the issue's measures: the ceiling ours can approach while its per-file work stays in Python."""
    import multiprocessing

    db_path = os.fspath(work / "min.sqlite3")
    if os.path.exists(db_path):
        os.remove(db_path)
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE files (name TEXT PRIMARY KEY, size INTEGER, sha256 TEXT, outcome BLOB)")
    batches = [paths[i : i + 1000] for i in range(0, len(paths), 1000)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return sum(pool.starmap(_min_batch, [(db_path, b) for b in batches]))


def run_ours(data_dir: Path, days: list[dt.date], today: dt.date) -> int:
    shutil.rmtree(data_dir / "state", ignore_errors=True)
    index = LandingIndex(data_dir)
    index.refresh(EMPRESA, today)
    rows = 0
    for day in days:
        rows += partition_frame(index, EMPRESA, day, today).height
    return rows


# --- the naive loop: the same rules, written the way the old system did ----------------------

_N_NIC = re.compile(r"^\d{5,12}$")
_N_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_N_PHONE = re.compile(r"^(\+?57)?(3\d{9}|60\d{8})$")
_N_DOC = re.compile(r"^\d{3,15}(-\d)?$")
_N_FORMATS = (
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
)


def run_naive(paths: list[str], today: dt.date) -> int:
    import ftfy

    best: dict[str, dict] = {}
    for p in paths:
        try:
            with open(p, encoding="utf-8-sig") as f:
                obj = json.load(f)
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        rec: dict = {}
        warnings = []
        for k in BUSINESS_FIELDS:
            v = obj.get(k)
            s = "" if v is None else str(v)
            fixed = ftfy.fix_encoding(s)
            if fixed != s:
                warnings.append("text_repaired")
            rec[k] = " ".join(unicodedata.normalize("NFC", fixed).split())
        if not rec["numero_radicado"] or not rec["fecha"] or not rec["estado_solicitud"]:
            continue
        fecha = None
        for fmt in _N_FORMATS:
            try:
                fecha = dt.datetime.strptime(rec["fecha"], fmt)
                break
            except ValueError:
                pass
        if fecha is None or not (FIRST_DAY <= fecha.date() <= today):
            continue
        rec["fecha"] = fecha.strftime("%Y-%m-%dT%H:%M:%S")
        if any(len(rec[k]) > n for k, n in FIELD_LIMITS.items()):
            continue
        if rec["nic"] and not _N_NIC.match(rec["nic"]):
            warnings.append("nic_invalid")
        if rec["correo_electronico"] and not _N_EMAIL.match(rec["correo_electronico"]):
            warnings.append("email_invalid")
        for k in ("telefono", "celular"):
            if rec[k] and not _N_PHONE.match(re.sub(r"[\s\-().]", "", rec[k])):
                warnings.append(k + "_invalid")
        if rec["documento_identidad"] and not _N_DOC.match(rec["documento_identidad"]):
            warnings.append("documento_invalid")
        if any(k not in KNOWN_KEYS and not k.startswith("tabla_") for k in obj):
            warnings.append("unknown_keys")
        rec["hash_registro"] = hashlib.sha256("\x1f".join(rec[k] for k in BUSINESS_FIELDS).encode()).hexdigest()
        rec["warnings"] = warnings
        rec["file_name"] = os.path.basename(p)
        with open(p, "rb") as f:
            rec["file_sha256"] = hashlib.sha256(f.read()).hexdigest()
        ts = obj.get("extraction_timestamp")
        rec["fecha_extraccion"] = dt.datetime.strptime(ts, "%Y%m%d_%H%M%S") if ts else None
        cur = best.get(rec["numero_radicado"])
        if cur is None or (rec["fecha_extraccion"], rec["file_name"]) > (cur["fecha_extraccion"], cur["file_name"]):
            best[rec["numero_radicado"]] = rec
    return len(paths)


class PeakRss:
    """Peak resident memory of this process plus its worker processes (sampled), in MB."""

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        while not self._stop.wait(0.05):
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak = max(self.peak, total / 2**20)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of record files (default 100000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measure (median), default 3")
    ap.add_argument(
        "--only",
        choices=("io_floor", "ours", "naive", "python_min"),
        action="append",
        help="measure only these (profiling; python_min is measured only when asked)",
    )
    ap.add_argument("--dir", help="work directory (default: a temporary one, deleted)")
    args = ap.parse_args(argv)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ov-bench-"))
    data_dir = base / "data"
    today = dt.date(2026, 1, 1) if dt.date.today() < dt.date(2026, 1, 1) else dt.date.today()
    try:
        t0 = time.perf_counter()
        paths, days = generate(data_dir, args.n)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.n} files over {len(days)} partitions in {gen_s:.1f}s ({base})", file=sys.stderr)
        measures = {
            "io_floor": lambda: run_io_floor(paths),
            "ours": lambda: run_ours(data_dir, days, today),
            "naive": lambda: run_naive(paths, today),
            "python_min": lambda: run_python_min(paths, base),
        }
        wanted = args.only or ["io_floor", "ours", "naive"]
        times: dict[str, list[float]] = {k: [] for k in wanted}
        cpu: dict[str, list[float]] = {k: [] for k in wanted}
        with PeakRss() as rss:
            for rep in range(args.repeat):
                for name in wanted:
                    t, c = time.perf_counter(), time.process_time()
                    count = measures[name]()
                    elapsed, used = time.perf_counter() - t, time.process_time() - c
                    if name == "ours" and count != args.n:
                        raise SystemExit(f"ours produced {count} rows for {args.n} files")
                    times[name].append(elapsed)
                    cpu[name].append(used)
                    print(
                        f"run {rep + 1} {name:9s} {elapsed:7.2f}s  {args.n / elapsed:10,.0f} records/s"
                        f"  (main-process CPU {used:.2f}s)",
                        file=sys.stderr,
                    )
        rates = {k: args.n / statistics.median(v) for k, v in times.items()}
        peak = rss.peak
        load = os.getloadavg()[0]
        print(f"{'measure':10s} {'median s':>9s} {'records/s':>12s} {'vs io_floor':>12s} {'main CPU s':>11s}")
        for k, v in times.items():
            ratio = f"{rates[k] / rates['io_floor']:.2f}x" if "io_floor" in rates else "-"
            print(
                f"{k:10s} {statistics.median(v):9.2f} {rates[k]:12,.0f} {ratio:>12s} {statistics.median(cpu[k]):11.2f}"
            )
        if "ours" in rates and "naive" in rates:
            print(f"ours / naive: {rates['ours'] / rates['naive']:.1f}x")
        print(
            f"peak RSS (this process + workers): {peak:.0f} MB; cpus: {os.cpu_count()}; "
            f"load average at the end: {load:.1f}"
        )
        print(
            json.dumps(
                {
                    "records": args.n,
                    "io_floor_per_s": round(rates.get("io_floor", 0)),
                    "ours_per_s": round(rates.get("ours", 0)),
                    "naive_per_s": round(rates.get("naive", 0)),
                    "peak_rss_mb": round(peak),
                }
            )
        )
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
