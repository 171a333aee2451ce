"""PQRs per minute extracted from the local replica portal, which behaves like the real one
(CONTRACT §9: script-driven login, 500 ms datepicker debounce, rows after their XHR): one page at
a time vs the default concurrency (OV_SCRAPER_CONCURRENCY's default, 4).

    .venv/bin/python bench/scrape.py [--per-day 60] [--rounds 3] [--parallel 4] [--faults]

The politeness limit is lifted (the replica is local). Serial (concurrency 1) and parallel runs
alternate on the same day's data, each into a fresh landing folder (so every PQR is written:
detail, attachments, PDF, JSON); the figure is the median of the rounds, wall time of the whole
``scrape_day`` (browser start and login included). ``--faults``: 10% of the XHRs answer HTTP 500
and sessions expire every 60 s, as on a busy day. Prints a table, then one JSON line.
The old scraper did about 6-7 PQRs per minute; the goal is >= 130 PQRs per minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ov_assets import settings
from ov_assets.devkit.servers import free_port
from ov_assets.portal.scraper import ScraperConfig, scrape_day

USER, PASSWORD = "bench", "bench-not-a-secret"
REPO = Path(__file__).resolve().parents[1]


def start_replica(per_day: int) -> tuple[subprocess.Popen, str]:
    """The replica in its own process, so it does not share the scraper's GIL."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ov_assets.devkit.replica",
            "--port",
            str(port),
            "--per-day",
            str(per_day),
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # "replica portal: ..." once it listens
    base = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(f"{base}/afinia/login").read()
    return proc, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-day", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=ScraperConfig.__dataclass_fields__["concurrency"].default)
    ap.add_argument("--faults", action="store_true", help="10%% HTTP 500s and a session expiry every 60 s")
    ap.add_argument("--empresa", default="afinia")
    ap.add_argument("--trace", action="store_true", help="record a Playwright trace as production does")
    args = ap.parse_args()
    day = dt.date(2025, 10, 8)
    rates: dict[str, list[float]] = {"serial": [], "parallel": []}
    rows = []
    proc, base = start_replica(args.per_day)
    if args.faults:
        spec = json.dumps({"fail_rate": 0.1, "session_ttl_s": 60.0}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{base}/__admin/faults", spec, method="POST")).read()
    try:
        tmp = tempfile.TemporaryDirectory(prefix="ov-bench-")
        root = Path(tmp.name)
        for r in range(args.rounds):
            order = ("serial", "parallel") if r % 2 == 0 else ("parallel", "serial")
            for mode in order:
                cfg = ScraperConfig(
                    args.empresa,
                    f"{base}/{args.empresa}",
                    USER,
                    PASSWORD,
                    browser_path=settings.browser_path() or None,
                    concurrency=1 if mode == "serial" else args.parallel,
                    max_per_min=None,
                    trace=args.trace,
                )
                res = scrape_day(cfg, day, root / f"{mode}-{r}", set(), root / "artifacts")
                if res.failed or res.written != args.per_day:
                    raise SystemExit(f"{mode} round {r}: written {res.written}, failed {res.failed}")
                rate = res.written / res.seconds * 60
                rates[mode].append(rate)
                rows.append((r + 1, mode, cfg.concurrency, res.written, res.seconds, rate))
        tmp.cleanup()
    finally:
        proc.terminate()
        proc.wait()
    print(f"{'round':>5} {'mode':>8} {'pages':>5} {'PQRs':>5} {'seconds':>8} {'PQRs/min':>9}")
    for r, mode, conc, n, secs, rate in rows:
        print(f"{r:>5} {mode:>8} {conc:>5} {n:>5} {secs:>8.2f} {rate:>9.1f}")
    serial, parallel = statistics.median(rates["serial"]), statistics.median(rates["parallel"])
    print(
        f"median: serial {serial:.1f}/min, parallel {parallel:.1f}/min "
        f"({parallel / 6.5:.0f}x the old scraper's ~6.5/min)"
    )
    print(
        json.dumps(
            {
                "serial_per_min": round(serial, 1),
                "parallel_per_min": round(parallel, 1),
                "concurrency": args.parallel,
                "faults": args.faults,
                "goal_per_min": 130,
                "goal_met": parallel >= 130,
            }
        )
    )


if __name__ == "__main__":
    main()
