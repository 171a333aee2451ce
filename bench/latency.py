"""File drop -> row-and-object latency with the daemon running (issue 7, acceptance 5).

Starts an embedded PostgreSQL 18 and ``dagster dev`` (webserver + daemon) from the repo root
with a temporary DAGSTER_HOME (run queue of deploy/dagster.yaml), OV_DATA_DIR and the local
object store; the landing sensor is on by default. Then, ``--drops`` times: writes a few new
PQRs (JSON + PDF + attachments) for today into the landing folder and measures the time until
every one of them has its row in PostgreSQL and all its objects registered ``uploaded`` and
present in the store. Then prints where the seconds went (``STAGES``, from the sensor's ticks
and each run's event log; the last drop's run event by event) and, last, one JSON line
``{"latency_s_p50": ..., "latency_s_max": ...}``. Goal: <= 60 s (issue 7), p50 <= 8 s (issue 20).

    .venv/bin/python bench/latency.py --drops 5 --per-drop 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import yaml  # noqa: E402

from ov_assets.core.contract import today_bogota  # noqa: E402
from ov_assets.devkit import generator  # noqa: E402
from ov_assets.devkit.servers import postgres_env, run_dagster_dev, start_embedded_pg18, stop_embedded  # noqa: E402


def dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME with the run queue of deploy/dagster.yaml (concurrency, run coordinator,
    monitoring); storage and compute logs stay Dagster's local defaults."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text()) or {}
    keep = ("concurrency", "run_queue", "run_coordinator", "run_monitoring", "telemetry")
    instance = {k: v for k, v in config.items() if k in keep}
    instance["telemetry"] = {"enabled": False}
    (path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    return path


@contextmanager
def pipeline_under_daemon(
    conninfo: dict[str, Any],
    workdir: Path,
    log_path: Path | None = None,
    extra_env: Mapping[str, str | None] | None = None,
) -> Iterator[tuple[Path, str]]:
    """``dagster dev`` running against ``conninfo`` with a fresh data dir; yields the data dir
    and the webserver's URL. ``extra_env`` is laid over the rest (e.g. a stand-in Slack)."""
    data_dir = workdir / "data"
    data_dir.mkdir(mode=0o700)
    env = {
        **postgres_env(conninfo),
        "OV_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home(workdir / "dagster_home")),
    }
    for name in ("AWS_S3_BUCKET_NAME", "OV_ENV", "OV_SLACK_WEBHOOK_URL", "OV_SMTP_HOST"):
        env[name] = None  # local object store, development, no alerts
    env |= dict(extra_env or {})
    with run_dagster_dev(ROOT, env, log_path=log_path) as base:
        yield data_dir, base


def drop(data_dir: Path, days_back: int, n: int, empresa: str = "afinia") -> tuple[set[str], int]:
    """Write ``n`` new PQRs filed ``days_back`` days ago (radicados embed the day, so each drop's
    PQRs are new); returns their radicados and the number of files."""
    day = today_bogota() - dt.timedelta(days=days_back)
    out = generator.write_day(data_dir, empresa, day, n=n, seed=days_back, versions=False, broken=False)
    return out.radicados, len(out.files)


def arrived(conninfo: dict[str, Any], data_dir: Path, empresa: str, radicados: set[str], files: int) -> bool:
    """Every radicado has its row and every one of its files is uploaded and in the store."""
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        (rows,) = conn.execute(
            f"SELECT count(*) FROM data_general.ov_{empresa} WHERE numero_radicado = ANY(%s)", (sorted(radicados),)
        ).fetchone()
        keys = conn.execute(
            "SELECT s3_key FROM data_general.s3_files_registry WHERE empresa = %s AND numero_radicado = ANY(%s) "
            "AND upload_status IN ('uploaded', 'pre_existing')",
            (empresa, sorted(radicados)),
        ).fetchall()
    if rows < len(radicados) or len(keys) < files:
        return False
    store = data_dir / "object_store"
    return all((store / k).is_file() for (k,) in keys)


def wait_for(
    conninfo: dict[str, Any], data_dir: Path, radicados: set[str], files: int, timeout: float, empresa: str = "afinia"
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if arrived(conninfo, data_dir, empresa, radicados, files):
                return time.monotonic() - started
        except psycopg.errors.UndefinedTable:
            pass  # the first run has not migrated the schema yet
        time.sleep(0.25)
    raise TimeoutError(f"{len(radicados)} PQRs not in PostgreSQL and the store after {timeout}s")


STAGES = (
    ("tick", "drop -> start of the sensor tick that requested its run (file rest + daemon loop)"),
    ("submitted", "tick start -> RUN_ENQUEUED (sensor evaluation, run created)"),
    ("queued", "RUN_ENQUEUED -> RUN_STARTING (run queue daemon)"),
    ("worker", "RUN_STARTING -> RUN_START (run worker process: Python, Dagster, definitions)"),
    ("steps", "RUN_START -> rows and objects seen by this script (0.25 s poll)"),
)


def breakdown(home: Path, drops: list[tuple[str, float, float]]) -> list[dict[str, float]]:
    """Per drop (partition key, drop time, arrival time; epoch seconds): the seconds of each
    stage of ``STAGES``, from the instance's sensor ticks and the run's event log. Also prints
    the event timeline of the last drop's run (seconds after the drop)."""
    import dagster as dg
    from dagster._core.events import DagsterEventType as E

    with dg.DagsterInstance.from_config(str(home)) as instance:
        ticks = []
        for state in instance.all_instigator_state():
            if state.name == "landing_sensor":
                ticks += instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
        out = []
        for key, dropped, seen in drops:
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": key}))
            if not runs:
                continue
            record = min(runs, key=lambda r: r.create_timestamp.timestamp())
            run_id = record.dagster_run.run_id
            at = {}
            timeline = []
            for entry in instance.all_logs(run_id):
                if entry.dagster_event is not None:
                    at.setdefault(entry.dagster_event.event_type, entry.timestamp)
                    kind = entry.dagster_event.event_type.name
                    if kind.startswith(("RUN_", "STEP_START", "STEP_SUCCESS")):
                        timeline.append(
                            f"{kind}{' ' + (entry.step_key or '') if entry.step_key else ''} "
                            f"+{entry.timestamp - dropped:.1f}"
                        )
            tick = next((t.timestamp for t in ticks if run_id in t.run_ids), record.create_timestamp.timestamp())
            out.append(
                {
                    "tick": tick - dropped,
                    "submitted": at[E.RUN_ENQUEUED] - tick,
                    "queued": at[E.RUN_STARTING] - at[E.RUN_ENQUEUED],
                    "worker": at[E.RUN_START] - at[E.RUN_STARTING],
                    "steps": seen - at[E.RUN_START],
                }
            )
        if drops and timeline:
            print(
                "last drop: sensor ticks at "
                + ", ".join(
                    f"{t.timestamp - dropped:+.1f}"
                    for t in sorted(ticks, key=lambda t: t.timestamp)
                    if -10 < t.timestamp - dropped <= tick - dropped
                )
                + f" (this run's: {tick - dropped:+.1f}); then "
                + "; ".join(timeline)
                + f"; seen +{seen - dropped:.1f}"
            )
    return out


def print_breakdown(rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    print(f"{'stage':<10} {'p50 s':>6} {'max s':>6}  what")
    for name, what in STAGES:
        values = [r[name] for r in rows]
        print(f"{name:<10} {statistics.median(values):6.1f} {max(values):6.1f}  {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drops", type=int, default=5)
    parser.add_argument("--per-drop", type=int, default=3)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between drops")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    pg = start_embedded_pg18()
    latencies = []
    stamps: list[tuple[str, float, float]] = []
    rows: list[dict[str, float]] = []
    try:
        dbname = pg.create_database("ov_bench")
        conninfo = pg.conninfo(dbname)
        with tempfile.TemporaryDirectory(prefix="ov-latency-") as tmp:
            log = Path(tmp) / "dagster-dev.log"
            t0 = time.monotonic()
            with pipeline_under_daemon(conninfo, Path(tmp), log_path=log) as (data_dir, _url):
                print(f"dagster dev up in {time.monotonic() - t0:.1f}s", flush=True)
                for i in range(args.drops):
                    dropped = time.time()
                    radicados, files = drop(data_dir, days_back=i, n=args.per_drop)
                    latency = wait_for(conninfo, data_dir, radicados, files, args.timeout)
                    latencies.append(latency)
                    key = f"{today_bogota() - dt.timedelta(days=i)}|afinia"
                    stamps.append((key, dropped, dropped + latency))
                    print(f"drop {i + 1}: {len(radicados)} PQRs, {files} files -> {latency:.1f}s", flush=True)
                    time.sleep(args.pause)
                rows = breakdown(Path(tmp) / "dagster_home", stamps)
    finally:
        stop_embedded(pg)
    print_breakdown(rows)
    print(
        json.dumps({"latency_s_p50": round(statistics.median(latencies), 1), "latency_s_max": round(max(latencies), 1)})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
