"""What issue 19 adds to a load: the ``ov_quality_daily`` upsert (inside the load's transaction)
and the near-duplicate refresh of each partition (after it).

    python bench/near_duplicates.py [--days 60] [--per-partition 180] [--customers 3000] [--repeat 3]

One empresa, ``--days`` days of ``--per-partition`` PQRs each (the listing quoted in CONTRACT §9
is ~180 per empresa and day), NICs drawn from ``--customers`` accounts (so a NIC files again
within the window: ~``days * per_partition / customers`` PQRs per NIC) and complaint texts from
the generator's seven bodies (so many candidates are near-duplicates: a worst case for scoring).
On an embedded PostgreSQL 18 (a temporary folder), median of ``--repeat`` rounds:

- load_ms / load_no_quality_ms: ``loading.load_partitions`` of a 14-partition run (a backfill
  chunk) into a table already holding the other days, with and without ``record_quality``;
- quality_ms: ``record_quality`` of that run alone (its own transaction, same statements);
- refresh_ms: ``near_duplicates.refresh_partition`` of one day in the middle (window 30 days
  both ways): its two indexed reads, rapidfuzz scoring, the delete/upsert of its pairs;
- candidates / pairs: what that refresh compared and found.

Measured 2026-12-03 on the project's 2-core VM while other engineers' test suites ran (load
average 10-17, so absolute times are 1.5-2x a quiet machine's), median of 5:

    {"rows": 10800, "load_no_quality_ms": 108.5, "load_ms": 120.0, "refresh_ms": 47.2, ...}  (load 10)
    {"rows": 10800, "quality_ms": 14.2, "refresh_ms": 65.2, "candidates": 619, "pairs": 95}  (load 17)
    --per-partition 500 --customers 8000:
    {"rows": 30000, "quality_ms": 18.6, "refresh_ms": 236.3, "candidates": 1819, "pairs": 283}

The quality rows cost ~1 ms per partition inside the load (two statements for the whole run);
the near-duplicate refresh ~0.3-0.5 ms per PQR of the day in this worst case (every text alike
to many others), most of it rapidfuzz and folding the candidates' texts.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import polars as pl
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import EMPRESA, Server, migrated, prepare

from ov_assets.core.contract import BUSINESS_FIELDS, hash_registro
from ov_assets.devkit.generator import BODIES, MESES
from ov_assets.warehouse import loading, quality
from ov_assets.warehouse import near_duplicates as wnd


def corpus(days: int, per_partition: int, customers: int) -> pl.DataFrame:
    """``prepare``'s records with NICs from a pool of accounts and the generator's bodies."""
    frame = prepare(days * per_partition, per_partition)
    rng = random.Random(19)
    nics = [str(1_000_000 + rng.randrange(customers)) for _ in range(frame.height)]
    texts = [rng.choice(BODIES).format(mes=rng.choice(MESES), dia=rng.randint(1, 28)) for _ in range(frame.height)]
    frame = frame.with_columns(pl.Series("nic", nics), pl.Series("cuerpo_reclamacion", texts))
    hashes = [hash_registro(r) for r in frame.select(BUSINESS_FIELDS).iter_rows(named=True)]
    return frame.with_columns(pl.Series("hash_registro", hashes))


def one_round(server: Server, frame: pl.DataFrame) -> dict[str, float]:
    days = sorted(frame["partition_date"].unique().to_list())
    mid = len(days) // 2
    chunk = days[mid - 7 : mid + 7]
    rest = [d for d in days if d not in chunk]
    out: dict[str, float] = {}
    for label, with_quality in (("load_no_quality_ms", False), ("load_ms", True)):
        ci = migrated(server)
        try:
            with psycopg.connect(**ci, autocommit=True) as conn:
                loading.load_partitions(conn, [(EMPRESA, d) for d in rest], frame, "bench-rest")
                saved = loading.record_quality
                if not with_quality:
                    loading.record_quality = lambda *a, **k: None  # type: ignore[assignment]
                try:
                    t0 = time.perf_counter()
                    loading.load_partitions(conn, [(EMPRESA, d) for d in chunk], frame, "bench-chunk")
                    out[label] = (time.perf_counter() - t0) * 1000
                finally:
                    loading.record_quality = saved
                if with_quality:
                    assert len(quality.read_quality(conn, [(EMPRESA, d) for d in days])) == len(days)
                    keys = [(EMPRESA, d) for d in chunk]
                    t0 = time.perf_counter()
                    with conn.transaction():  # the same statements again, alone
                        quality.record_quality(conn, keys, frame)
                    out["quality_ms"] = (time.perf_counter() - t0) * 1000
                    t0 = time.perf_counter()
                    counts = wnd.refresh_partition(conn, EMPRESA, days[mid], 80.0, 30)
                    out["refresh_ms"] = (time.perf_counter() - t0) * 1000
                    out["candidates"] = counts.candidates
                    out["pairs"] = counts.pairs
                    out["compared"] = counts.compared
        finally:
            server.drop(ci)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--per-partition", type=int, default=180)
    p.add_argument("--customers", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    frame = corpus(args.days, args.per_partition, args.customers)
    server = Server(None)
    try:
        rounds = [one_round(server, frame) for _ in range(args.repeat)]
    finally:
        server.close()
    med = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}
    print(f"{server.label}; {args.days} days x {args.per_partition} PQRs, {args.customers} accounts")
    for k, v in med.items():
        print(f"  {k:22} {v}")
    print(json.dumps({"rows": frame.height, "run_partitions": 14, **med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
