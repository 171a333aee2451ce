"""End to end with the daemon: ``dagster dev`` (webserver + daemon) from the repo root, the
landing sensor on by default, files dropped into the landing folder reach PostgreSQL and the
object store with no manual action (issue 7, acceptance 4). Then an object is deleted from the
store and ``reconciliation_checks_job`` launched for its partition: the failing check reaches a
stand-in Slack within two alert-sensor intervals of the run (issue 17, acceptance 2)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg.rows import dict_row

from ov_assets.core.contract import PERSONAL_FIELDS
from ov_assets.defs.checks.tablewide import partition_tags
from ov_assets.devkit.servers import graphql
from ov_assets_tests.support import event_log_text, leaked, personal_search_terms

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ov_bench_latency", ROOT / "bench" / "latency.py")
latency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency)

ALERT_INTERVAL = 10  # OV_ALERT_INTERVAL_SECONDS of the check, tick and slow-run alert sensors

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook

_LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on Error { message } } }
"""
_RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
_UNFINISHED = (
    "query { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) "
    "{ ... on Runs { results { runId } } } }"
)

_SENSORS = """
query { sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "ov_assets"}) {
  ... on Sensors { results { name sensorState { status } } } } }
"""


def launch_checks(base: str, partition: str) -> str:
    """Launch ``reconciliation_checks_job`` for one partition through the webserver's GraphQL."""
    params = {
        "selector": {
            "repositoryLocationName": "ov_assets",
            "repositoryName": "__repository__",
            "jobName": "reconciliation_checks_job",
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in partition_tags(partition).items()]},
    }
    launched = graphql(base, _LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_run(base: str, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(base, _RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(0.25)
    raise TimeoutError(f"run {run_id} not finished after {timeout}s")


def wait_for_idle(base: str, timeout: float) -> None:
    """Until no run is queued or in progress (the landing runs evaluate their checks after the
    rows and objects are in)."""
    deadline = time.monotonic() + timeout
    while graphql(base, _UNFINISHED)["runsOrError"]["results"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still unfinished after {timeout}s")
        time.sleep(0.25)


def test_dropped_files_reach_postgres_and_the_store(pg_conninfo18: dict[str, Any], tmp_path: Path, webhook) -> None:
    url, receiver = webhook
    log = tmp_path / "dagster-dev.log"
    alerting = {"OV_SLACK_WEBHOOK_URL": url, "OV_ALERT_INTERVAL_SECONDS": str(ALERT_INTERVAL)}
    with latency.pipeline_under_daemon(pg_conninfo18, tmp_path, log_path=log, extra_env=alerting) as (data_dir, base):
        # Every sensor is on without anyone turning it on: the landing sensor and the alerts.
        states = {s["name"]: s["sensorState"]["status"] for s in graphql(base, _SENSORS)["sensorsOrError"]["results"]}
        assert states == dict.fromkeys(
            (
                "landing_sensor",
                "run_failure_alerts",
                "check_failure_alerts",
                "tick_failure_alerts",
                "slow_run_alerts",
                "heartbeat",
            ),
            "RUNNING",
        )

        radicados, files = latency.drop(data_dir, days_back=0, n=3)
        seconds = latency.wait_for(pg_conninfo18, data_dir, radicados, files, timeout=240)
        more, more_files = latency.drop(data_dir, days_back=1, n=2)
        latency.wait_for(pg_conninfo18, data_dir, more, more_files, timeout=240)
        print(f"first drop reached PostgreSQL and the store in {seconds:.1f}s")

        # A stored object goes missing: the reconciliation check of its partition fails (ERROR)
        # and the check-failure sensor tells the stand-in Slack within two of its intervals.
        wait_for_idle(base, timeout=180)
        with psycopg.connect(**pg_conninfo18) as conn:
            s3_key, day = conn.execute(
                "SELECT s3_key, metadata->>'partition_date' FROM data_general.s3_files_registry "
                "WHERE empresa = 'afinia' AND file_type = 'pdf' ORDER BY s3_key LIMIT 1"
            ).fetchone()
        (data_dir / "object_store" / s3_key).unlink()
        partition = f"{day}|afinia"
        expected = f"[ov-assets] check failed (ERROR): registry_matches_bucket on pqr_s3_objects [{partition}]"
        run_id = launch_checks(base, partition)
        assert wait_for_run(base, run_id, timeout=180) == "SUCCESS"  # a failing check does not fail its run
        finished = time.monotonic()
        while not (alerts := [t for t in receiver.texts() if t.startswith(expected)]):
            assert time.monotonic() - finished < 2 * ALERT_INTERVAL, (
                f"no check alert within {2 * ALERT_INTERVAL}s of the run; received: {receiver.texts()}"
            )
            time.sleep(0.2)
        print(f"check alert in Slack {time.monotonic() - finished:.1f}s after its run ended")
        [alert] = alerts
        assert f"run id: {run_id}" in alert and "mismatched: 1" in alert

    with psycopg.connect(**pg_conninfo18) as conn:
        runs = conn.execute("SELECT count(DISTINCT run_id) FROM data_general.ov_load_audit").fetchone()[0]
        objects = conn.execute(
            "SELECT count(*) FROM data_general.s3_files_registry "
            "WHERE upload_status = 'uploaded' AND s3_bucket = 'local'"
        ).fetchone()[0]
    assert runs >= 2  # one sensor run per affected partition
    assert objects == files + more_files
    assert len(list((data_dir / "object_store").rglob("*.json"))) == len(radicados) + len(more)

    # No personal value of these PQRs in the daemon's and webserver's output, in the runs'
    # event logs (metadata included) or in their compute logs.
    columns = ", ".join(PERSONAL_FIELDS)
    with psycopg.connect(**pg_conninfo18, row_factory=dict_row) as conn:
        people = conn.execute(f"SELECT {columns} FROM data_general.ov_afinia").fetchall()
    terms = personal_search_terms(people)
    assert len(people) == len(radicados) + len(more)
    assert any(not w.isascii() for p in people for w in p["nombres_apellidos"].split())  # accented names searched
    home = tmp_path / "dagster_home"
    text = log.read_text(errors="replace")
    text += "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.suffix in (".out", ".err", ".log"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        text += event_log_text(instance)
    assert "pqr_table" in text and "landing_sensor" in text  # the search looks at real output
    text += "\n".join(receiver.texts())  # and in every alert sent
    assert leaked(text, terms) == []
