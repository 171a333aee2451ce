"""A run's cost end to end, through the operator's commands (issue 20).

    .venv/bin/python bench/e2e.py [--rounds 3] [--records 10000] [--days 10] [--per-day 10000]
                                  [--history-only | --skip-history]

One embedded PostgreSQL 18 (Unix socket) and one ``moto_server`` process (S3 over HTTP), each
measure in its own database, data folder and DAGSTER_HOME (telemetry off, Dagster's default
storage). Wall time of whole commands, process start to exit, as an operator pays it:

(a) empty:   ``dagster asset materialize -m ov_assets.definitions --select 'pqr_records*'
             --partition D|afinia`` for a day without files (the landing folder holds another
             day's), next to the same command on ``bench/trivial_project.py`` (the four asset
             keys, the same partitions, resources on the same servers, Dagster's defaults);
(b) no-op:   the same command for a partition of ``--records`` records whose objects are in
             the bucket already (moto), nothing changed since, next to (a);
(c) history: ``--days`` days x ``--per-day`` records of afinia, files -> PostgreSQL in one
             command, ``ov-assets backfill --from --to --empresa afinia --files-only
             --tables-only --no-backup``, next to dlt loading the same JSON files
             (``write_disposition="merge"`` on ``numero_radicado``, as bench/load.py) into an
             empty dataset; then the objects of the newest ``--objects-days`` days, the same
             command without ``--tables-only`` (moto; ``--history-store local`` for the local
             store): its ``pqr_s3_objects`` step's objects per second, to set beside
             ``bench/upload.py``'s.

(a) and (b) alternate ours, the baseline and the no-op rerun in each of ``--rounds`` rounds
(medians); (c) alternates ours and dlt, each round on a fresh database (``--history-rounds``).
Warm-up runs first (migrations, the landing index, the first upload of (b)'s objects, timed and
shown). Sensor latency is ``bench/latency.py``. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, LiteralString

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_assets import settings  # noqa: E402
from ov_assets.devkit import generator  # noqa: E402
from ov_assets.devkit.servers import (  # noqa: E402
    PgServer,
    free_port,
    postgres_env,
    start_embedded_pg18,
    stop_embedded,
    wait_for_port,
)

BIN = Path(sys.executable).parent
EMPRESA = "afinia"
EMPTY_DAY = dt.date(2024, 1, 1)
FULL_DAY = dt.date(2024, 2, 1)
HISTORY_FIRST = dt.date(2024, 3, 1)
REGION = "us-east-1"


def partition(day: dt.date) -> str:
    return f"{day.isoformat()}|{EMPRESA}"


class Moto:
    """``moto_server`` as its own process (not sharing the bench's GIL), one bucket per name."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = (workdir / "moto.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=self.log
        )
        wait_for_port("127.0.0.1", self.port, timeout=60)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def bucket(self, name: str) -> str:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
        )
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class Setup:
    """A database, a data folder and a DAGSTER_HOME, and the environment that points at them."""

    def __init__(self, work: Path, name: str, pg: PgServer, moto: Moto | None) -> None:
        self.dir = work / name
        self.data = self.dir / "data"
        self.home = self.dir / "dagster_home"
        self.data.mkdir(parents=True, mode=0o700)
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.db = pg.create_database(f"ov_e2e_{name}")
        self.conninfo = pg.conninfo(self.db)
        env: dict[str, str | None] = {
            **postgres_env(self.conninfo),
            "OV_DATA_DIR": str(self.data),
            "DAGSTER_HOME": str(self.home),
            "OV_ENV": None,
            "AWS_S3_BUCKET_NAME": None,
            "AWS_ENDPOINT_URL": None,
        }
        if moto is not None:
            env |= {
                "AWS_S3_BUCKET_NAME": moto.bucket(f"ov-e2e-{name}".replace("_", "-")),
                "AWS_ENDPOINT_URL": moto.endpoint,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
            }
        self.env = settings.child_environment(env)
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self._n = 0

    def run(self, label: str, argv: list[str]) -> float:
        """Seconds from the command's start to its exit; a failure stops the bench, naming its log."""
        self._n += 1
        log = self.logs / f"{self._n:03d}-{label}.log"
        with log.open("wb") as out:
            start = time.perf_counter()
            code = subprocess.run(argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT).returncode
            elapsed = time.perf_counter() - start
        if code != 0:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            raise SystemExit(f"{label} failed (exit {code}); log {log}:\n" + "\n".join(tail))
        return elapsed


def materialize(module: list[str], day: dt.date) -> list[str]:
    return [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        *module,
        "--select",
        "pqr_records*",
        "--partition",
        partition(day),
    ]


OURS = ["-m", "ov_assets.definitions"]
TRIVIAL = ["-f", str(ROOT / "bench" / "trivial_project.py")]


def import_seconds(module: str, rounds: int) -> float:
    """Median wall time of a fresh interpreter importing ``module`` (warnings off)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-W", "ignore", "-c", f"import {module}"], cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- (c) history -----------------------------------------------------------------------------


def history_days(first: dt.date, days: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(days)]


def backfill_available() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "ov_assets.cli", "backfill", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--tables-only" in out.stdout


def fresh_history(setup: Setup, pg: PgServer) -> None:
    """A new database and no derived state (index, frames, reports, stored objects, runs): the
    landing files stay, as for a first load of the history."""
    pg.drop_database(setup.db)
    setup.db = pg.create_database("ov_e2e_history")
    setup.conninfo = pg.conninfo(setup.db)
    setup.env |= postgres_env(setup.conninfo)
    for name in ("state", "assets", "processed", "object_store", "object_store.meta", "dagster_home"):
        shutil.rmtree(setup.data / name, ignore_errors=True)
    shutil.rmtree(setup.home, ignore_errors=True)
    setup.home.mkdir()
    (setup.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def dlt_credentials(ci: dict[str, Any]) -> str:
    """A URL dlt accepts (it insists on a password; the embedded server trusts local users);
    a Unix socket goes in the query string, as in bench/load.py."""
    from urllib.parse import quote

    pw = f":{quote(str(ci.get('password') or 'trust'), safe='')}"
    host = str(ci["host"])
    if host.startswith("/"):
        return f"postgresql://{ci['user']}{pw}@localhost:{ci['port']}/{ci['dbname']}?host={quote(host, safe='/')}"
    return f"postgresql://{ci['user']}{pw}@{host}:{ci['port']}/{ci['dbname']}"


def dlt_load(conninfo: dict[str, Any], landing: Path, workdir: Path) -> float:
    """dlt as its documentation loads JSON records into PostgreSQL: the files read and parsed,
    one resource merged on ``numero_radicado``; seconds including the reading."""
    import dlt
    import orjson

    def records() -> Any:
        for path in sorted(landing.glob("*_data_*.json")):
            yield orjson.loads(path.read_bytes())

    pipeline = dlt.pipeline(
        pipeline_name=f"e2e_{time.monotonic_ns()}",
        pipelines_dir=str(workdir),
        destination=dlt.destinations.postgres(credentials=dlt_credentials(conninfo)),
        dataset_name="dlt_e2e",
    )
    resource = dlt.resource(records(), name="ov_afinia", write_disposition="merge", primary_key="numero_radicado")
    start = time.perf_counter()
    pipeline.run(resource)
    return time.perf_counter() - start


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--records", type=int, default=10_000, help="records of the no-op rerun's partition")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--per-day", type=int, default=10_000)
    p.add_argument("--history-rounds", type=int, default=3)
    p.add_argument("--history-store", choices=("local", "moto"), default="moto")
    p.add_argument("--objects-days", type=int, default=1, help="newest days of (c) whose objects are stored")
    p.add_argument("--skip-history", action="store_true")
    p.add_argument("--history-only", action="store_true", help="only (c), the history load next to dlt")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ov-e2e-"))
    pg = start_embedded_pg18(work)
    moto = Moto(work)
    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str]] = []
    try:
        if args.history_only:
            history(args, work, pg, moto, results, rows)
            return report(rows, results)
        ours, trivial = Setup(work, "ours", pg, moto), Setup(work, "trivial", pg, moto)
        t = time.perf_counter()
        made = generator.write_day(ours.data, EMPRESA, FULL_DAY, n=args.records, seed=20, versions=False, broken=False)
        print(f"generated {args.records} records ({len(made.files)} files) in {time.perf_counter() - t:.1f}s")

        # Warm-up: migrations, the landing index, and the first upload of the partition's objects.
        first = ours.run("first", materialize(OURS, FULL_DAY))
        trivial.run("trivial-warm", materialize(TRIVIAL, EMPTY_DAY))
        ours.run("empty-warm", materialize(OURS, EMPTY_DAY))
        print(f"first materialization of {args.records} records with objects: {first:.1f}s")

        runs: dict[str, list[float]] = {"ours_empty": [], "trivial_empty": [], "ours_noop": []}
        for i in range(args.rounds):
            runs["ours_empty"].append(ours.run(f"empty-{i}", materialize(OURS, EMPTY_DAY)))
            runs["trivial_empty"].append(trivial.run(f"trivial-{i}", materialize(TRIVIAL, EMPTY_DAY)))
            runs["ours_noop"].append(ours.run(f"noop-{i}", materialize(OURS, FULL_DAY)))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()))
        med = {k: statistics.median(v) for k, v in runs.items()}
        imports = {m: import_seconds(m, args.rounds) for m in ("dagster", "ov_assets.definitions")}
        results |= {
            "ours_empty_s": round(med["ours_empty"], 2),
            "trivial_empty_s": round(med["trivial_empty"], 2),
            "empty_ratio": round(med["ours_empty"] / med["trivial_empty"], 2),
            "noop_records": args.records,
            "first_upload_s": round(first, 1),
            "ours_noop_s": round(med["ours_noop"], 2),
            "noop_over_empty": round(med["ours_noop"] / med["ours_empty"], 2),
            "import_dagster_s": round(imports["dagster"], 2),
            "import_definitions_s": round(imports["ov_assets.definitions"], 2),
        }

        def show(v: list[float]) -> str:
            return ", ".join(f"{x:.1f}" for x in v)

        rows += [
            ("(a) empty partition, ours (`pqr_records*`)", f"{med['ours_empty']:.2f}", show(runs["ours_empty"])),
            (
                "(a) empty partition, trivial Dagster project",
                f"{med['trivial_empty']:.2f}",
                show(runs["trivial_empty"]),
            ),
            (
                f"(b) no-op rerun, {args.records:,} records with objects",
                f"{med['ours_noop']:.2f}",
                show(runs["ours_noop"]),
            ),
            (f"(b) first materialization of those {args.records:,} records", f"{first:.2f}", "warm-up"),
            ("`import dagster`", f"{imports['dagster']:.2f}", ""),
            ("`import ov_assets.definitions`", f"{imports['ov_assets.definitions']:.2f}", ""),
        ]

        if not args.skip_history:
            history(args, work, pg, moto, results, rows)
    finally:
        moto.stop()
        stop_embedded(pg)
        shutil.rmtree(work, ignore_errors=True)
    return report(rows, results)


def report(rows: list[tuple[str, str, str]], results: dict[str, Any]) -> int:
    """The table, then the JSON line."""
    if not rows:
        return 0
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'measure'.ljust(width)} | median s | runs (s) |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for name, value, runs_s in rows:
        print(f"| {name.ljust(width)} | {value} | {runs_s} |")
    print()
    print(json.dumps(results))
    return 0


def history(
    args: argparse.Namespace,
    work: Path,
    pg: PgServer,
    moto: Moto,
    results: dict[str, Any],
    rows: list[tuple[str, str, str]],
) -> None:
    """(c): the days in one command, next to dlt on the same files; then the objects."""
    if not backfill_available():
        print("(c) skipped: this checkout has no `ov-assets backfill --tables-only`")
        return
    setup = Setup(work, "history", pg, moto if args.history_store == "moto" else None)
    days = history_days(HISTORY_FIRST, args.days)
    t = time.perf_counter()
    for i, day in enumerate(days):
        generator.write_day(setup.data, EMPRESA, day, n=args.per_day, seed=100 + i, versions=False, broken=False)
    total = args.days * args.per_day
    print(f"generated {args.days} days x {args.per_day} records in {time.perf_counter() - t:.1f}s")

    def backfill(first: dt.date, *extra: str) -> list[str]:
        return [
            str(BIN / "ov-assets"),
            "backfill",
            "--from",
            first.isoformat(),
            "--to",
            days[-1].isoformat(),
            "--empresa",
            EMPRESA,
            "--files-only",
            "--no-backup",
            *extra,
        ]

    landing = setup.data / "downloads" / EMPRESA / "oficina_virtual" / "processed"
    ours_s: list[float] = []
    dlt_s: list[float] = []
    for i in range(args.history_rounds):
        fresh_history(setup, pg)
        ours_s.append(setup.run(f"backfill-{i}", backfill(days[0], "--tables-only")))
        dlt_db = pg.create_database("ov_e2e_dlt")
        try:
            dlt_s.append(dlt_load(pg.conninfo(dlt_db), landing, work / f"dlt-{i}"))
        finally:
            pg.drop_database(dlt_db)
        print(f"history round {i + 1}: ours {ours_s[-1]:.1f}s, dlt {dlt_s[-1]:.1f}s")
    loaded = _count(setup.conninfo, "SELECT count(*) FROM data_general.ov_afinia")
    assert loaded == total, f"the backfill loaded {loaded} rows, not {total}"
    steps = step_seconds(setup.home)
    to_pg = steps.get("pqr_records", 0.0) + steps.get("pqr_table", 0.0)
    ours_rate, dlt_rate = total / statistics.median(ours_s), total / statistics.median(dlt_s)

    # the objects of the newest days: the same load without --tables-only
    first = days[-args.objects_days]
    objects_s = setup.run("objects", backfill(first))
    stored = _count(
        setup.conninfo, "SELECT count(*) FROM data_general.s3_files_registry WHERE upload_status = 'uploaded'"
    )
    object_step = step_seconds(setup.home).get("pqr_s3_objects", 0.0)
    results |= {
        "history_records": total,
        "history_ours_per_s": round(ours_rate),
        "history_dlt_per_s": round(dlt_rate),
        "history_ratio": round(ours_rate / dlt_rate, 2),
        # the last round's runs, step by step: files -> PostgreSQL
        "history_steps_to_pg_s": round(to_pg, 1),
        "history_outside_steps_s": round(ours_s[-1] - sum(steps.values()), 1),
        "objects_store": args.history_store,
        "objects_days": args.objects_days,
        "objects_stored": stored,
        "objects_command_s": round(objects_s, 1),
        "objects_step_s": round(object_step, 1),
        "objects_step_per_s": round(stored / object_step) if object_step else None,
    }
    show: Callable[[list[float]], str] = lambda v: ", ".join(f"{x:.1f}" for x in v)  # noqa: E731
    rows += [
        (
            f"(c) {args.days} days x {args.per_day:,} records, `ov-assets backfill --files-only --tables-only`",
            f"{statistics.median(ours_s):.2f}",
            f"{show(ours_s)} ({ours_rate:,.0f} records/s)",
        ),
        (
            "(c) of which steps `pqr_records` + `pqr_table` (files -> PostgreSQL), last round",
            f"{to_pg:.2f}",
            f"{total / to_pg:,.0f} records/s" if to_pg else "",
        ),
        (
            "(c) of which outside any step (command start, landing index, run start/end), last round",
            f"{ours_s[-1] - sum(steps.values()):.2f}",
            "",
        ),
        (
            "(c) dlt, merge on numero_radicado, the same JSON files",
            f"{statistics.median(dlt_s):.2f}",
            f"{show(dlt_s)} ({dlt_rate:,.0f} records/s)",
        ),
        (
            f"(c) objects of the newest {args.objects_days} day(s), the same command without `--tables-only` "
            f"({args.history_store})",
            f"{objects_s:.2f}",
            f"{stored:,} objects; step `pqr_s3_objects` {object_step:.1f} s"
            + (f" ({stored / object_step:,.0f} objects/s)" if object_step else ""),
        ),
    ]


def step_seconds(home: Path) -> dict[str, float]:
    """Seconds per step, summed over the runs recorded in ``home`` (the backfill's runs)."""
    import dagster as dg

    out: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for stat in instance.get_run_step_stats(run.run_id):
                if stat.start_time and stat.end_time:
                    out[stat.step_key] = out.get(stat.step_key, 0.0) + stat.end_time - stat.start_time
    return out


def _count(conninfo: dict[str, Any], query: LiteralString) -> int:
    import psycopg

    with psycopg.connect(**conninfo) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    sys.exit(main())
