"""Import of an old landing folder (issue 16): ``ov_assets.landing.import_old.import_landing``.

    python bench/import_landing.py [--days 10] [--per-day 100]

Writes ``--days`` x ``--per-day`` generated PQRs of Afinia (JSON, PDF, some attachments and
second versions) into a scratch folder under their old names (``pqr_data_{sgc}_{ts}.json``),
then imports it twice into a fresh data folder: the first run copies everything (one owner-only
temporary, fsync and create-exclusive link per file), the second finds everything already there.
Prints one JSON line: {"files": N, "first_s": ..., "first_files_per_s": ..., "again_s": ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

from ov_assets.devkit import generator
from ov_assets.landing.import_old import import_landing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ov-bench-import-"))
    try:
        old = work / "old"
        old.mkdir()
        for i in range(args.days):
            gen = generator.write_day(
                work / "scratch", "afinia", dt.date(2025, 9, 1) + dt.timedelta(days=i), n=args.per_day, broken=False
            )
            for path in gen.files:
                name = path.name
                if name.endswith(".json") and "_data_" in name:
                    sgc, ts = name[: -len(".json")].split("_data_")
                    name = f"pqr_data_{sgc}_{ts}.json"
                shutil.copy2(path, old / name)
        files = sum(1 for _ in old.iterdir())
        start = time.perf_counter()
        first = import_landing(old, work / "data", "afinia")
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        again = import_landing(old, work / "data", "afinia")
        again_s = time.perf_counter() - start
        assert len(first.taken) == files and len(again.already) == files, (first.lines(), again.lines())
        print(
            json.dumps(
                {
                    "files": files,
                    "first_s": round(first_s, 2),
                    "first_files_per_s": round(files / first_s, 1),
                    "again_s": round(again_s, 2),
                    "again_files_per_s": round(files / again_s, 1),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
