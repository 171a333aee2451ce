"""Upload benchmark (issue 5): ours vs ``aws s3 sync`` vs sequential ``put_object``.

    python bench/upload.py [--n 5000] [--rounds 3] [--workers 16] [--awscli .venv-awscli/bin/aws]

Writes N files (JSON ~2 KB, PDFs ~50 KB, a few ~20 MB attachments), starts ``moto_server`` as
its own process on loopback and an embedded PostgreSQL (for our registry), then, alternating
the three methods ``--rounds`` times on the same files, each into a fresh bucket:

- ours: ``archive.archive_objects`` (registry rows, bounded pool, conditional puts with SHA-256
  checksums, every answer verified, multipart above 16 MB), registry truncated between rounds;
- awscli: ``aws s3 sync`` of the same tree (awscli from PyPI, its own venv; default settings:
  10 concurrent requests);
- sequential: ``put_object`` of one file at a time (the old system's way).

Every round is checked afterwards: the bucket holds every key. Prints a table of the medians,
then one JSON line: {"objects": N, "ours_per_s": ..., "awscli_per_s": ..., "sequential_per_s": ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import psycopg  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402

from ov_assets.defs.resources import ObjectStoreResource  # noqa: E402
from ov_assets.devkit.servers import free_port, start_embedded_pg18, stop_embedded, wait_for_port  # noqa: E402
from ov_assets.objects.archive import PlannedObject, archive_objects  # noqa: E402
from ov_assets.warehouse import migrations  # noqa: E402

REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}


def make_files(src: Path, n: int, big: int, seed: int = 7) -> list[PlannedObject]:
    """N files laid out as their keys under ``src`` (so ``aws s3 sync`` sends the same keys)."""
    rng = random.Random(seed)
    day = dt.date(2025, 10, 8)
    objects = []
    n_big = min(big, n)
    for i in range(n):
        radicado = f"20251008{i:07d}"
        if i < n_big:
            name, size, ftype = f"RE{i:013d}_adjunto_20251008_093221.jpg", 20 << 20, "attachment"
        elif i % 2 == 0:
            name, size, ftype = f"RE{i:013d}_data_20251008_093221.json", rng.randint(1500, 2500), "json"
        else:
            name, size, ftype = f"RE{i:013d}_20251008_093221.pdf", rng.randint(40_000, 60_000), "pdf"
        key = f"oficina-virtual/afinia/2025/10/08/RE{i:013d}/{name}"
        path = src / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        objects.append(
            PlannedObject(
                "afinia", radicado, f"RE{i:013d}", day, ftype, name, size, hashlib.sha256(data).hexdigest(), path, key
            )
        )
    return objects


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        # Own session, signals reset (a background shell may start it with SIGINT ignored).
        self.moto = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            restore_signals=True,
            preexec_fn=lambda: (
                signal.signal(signal.SIGINT, signal.SIG_DFL),
                signal.signal(signal.SIGTERM, signal.SIG_DFL),
            ),
        )
        wait_for_port("127.0.0.1", self.port)
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self.pg = start_embedded_pg18(work)
        self.dbname = self.pg.create_database()
        self.conninfo = self.pg.conninfo(self.dbname)
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            migrations.apply_all(conn)
        self.round = 0

    def close(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.moto.pid, sig)
                self.moto.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        stop_embedded(self.pg)

    def fresh_bucket(self, method: str) -> str:
        self.round += 1
        name = f"bench-{method}-{self.round}"
        self.client.create_bucket(Bucket=name)
        return name

    def drop_bucket(self, bucket: str, expected: set[str]) -> None:
        keys: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys |= {o["Key"] for o in page.get("Contents", [])}
        missing = expected - keys
        if missing:
            raise SystemExit(f"{bucket}: {len(missing)} objects missing, e.g. {sorted(missing)[:3]}")
        items = [{"Key": k} for k in keys]
        for i in range(0, len(items), 1000):
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": items[i : i + 1000], "Quiet": True})
        self.client.delete_bucket(Bucket=bucket)

    def ours(self, bucket: str, objects: list[PlannedObject]) -> float:
        res = ObjectStoreResource(
            bucket=bucket,
            data_dir=str(self.work),
            max_workers=self.args.workers,
            s3=S3Resource(
                endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench"
            ),
        )
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            conn.execute("TRUNCATE data_general.s3_files_registry")
            start = time.perf_counter()
            store = res.open()
            counts, _ = archive_objects(conn, store, objects, self.args.workers)
            elapsed = time.perf_counter() - start
            (verified,) = conn.execute(
                "SELECT count(*) FROM data_general.s3_files_registry WHERE upload_status = 'uploaded'"
            ).fetchone()
        if counts.s3_uploaded != len(objects) or verified != len(objects):
            raise SystemExit(f"ours: {counts}")
        return elapsed

    def awscli(self, bucket: str, src: Path) -> float:
        env = {**os.environ, **CREDS, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        start = time.perf_counter()
        subprocess.run(
            [
                self.args.awscli,
                "s3",
                "sync",
                str(src),
                f"s3://{bucket}/",
                "--endpoint-url",
                self.endpoint,
                "--only-show-errors",
                "--no-progress",
            ],
            check=True,
            env=env,
        )
        return time.perf_counter() - start

    def sequential(self, bucket: str, objects: list[PlannedObject]) -> float:
        start = time.perf_counter()
        for o in objects:
            with o.path.open("rb") as fh:
                self.client.put_object(Bucket=bucket, Key=o.key, Body=fh)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--big", type=int, default=3, help="how many ~20 MB attachments among the N")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--awscli",
        default=os.environ.get("OV_BENCH_AWSCLI", ".venv-awscli/bin/aws"),
        help="awscli from PyPI in its own venv",
    )
    args = parser.parse_args()
    if not Path(args.awscli).exists():
        raise SystemExit(
            f"awscli not found at {args.awscli}: python -m venv .venv-awscli && "
            ".venv-awscli/bin/pip install awscli (or --awscli PATH)"
        )
    os.environ.update(CREDS)
    work = Path(tempfile.mkdtemp(prefix="ov-bench-"))
    bench = None
    try:
        src = work / "src"
        objects = make_files(src, args.n, args.big)
        total_mb = sum(o.size for o in objects) / 2**20
        bench = Bench(args, work)
        keys = {o.key for o in objects}
        times: dict[str, list[float]] = {"ours": [], "awscli": [], "sequential": []}
        for r in range(args.rounds):
            for method in times:
                bucket = bench.fresh_bucket(method)
                if method == "ours":
                    t = bench.ours(bucket, objects)
                elif method == "awscli":
                    t = bench.awscli(bucket, src)
                else:
                    t = bench.sequential(bucket, objects)
                bench.drop_bucket(bucket, keys)
                times[method].append(t)
                print(f"round {r + 1} {method:10} {t:8.2f} s  {len(objects) / t:8.1f} objects/s", file=sys.stderr)
        med = {m: statistics.median(ts) for m, ts in times.items()}
        print(f"\n{len(objects)} objects, {total_mb:.0f} MB, moto_server on 127.0.0.1, median of {args.rounds}")
        print("| method | median s | objects/s | MB/s | runs (s) |")
        print("|---|---|---|---|---|")
        labels = {
            "ours": f"ours ({args.workers} workers, SHA-256 verified)",
            "awscli": "aws s3 sync",
            "sequential": "sequential put_object",
        }
        for m, t in med.items():
            print(
                f"| {labels[m]} | {t:.2f} | {len(objects) / t:.1f} | {total_mb / t:.1f} | "
                f"{', '.join(f'{x:.2f}' for x in times[m])} |"
            )
        print(
            json.dumps(
                {
                    "objects": len(objects),
                    "ours_per_s": round(len(objects) / med["ours"], 1),
                    "awscli_per_s": round(len(objects) / med["awscli"], 1),
                    "sequential_per_s": round(len(objects) / med["sequential"], 1),
                }
            )
        )
        return 0
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
