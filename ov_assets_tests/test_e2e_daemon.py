"""End to end with the daemon: ``dagster dev`` (webserver + daemon) from the repo root, the
landing sensor on by default, files dropped into the landing folder reach PostgreSQL and the
object store with no manual action (issue 7, acceptance 4)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg.rows import dict_row

from ov_assets.core.contract import PERSONAL_FIELDS
from ov_assets.devkit.servers import graphql
from ov_assets_tests.support import event_log_text, leaked, personal_search_terms

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ov_bench_latency", ROOT / "bench" / "latency.py")
latency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency)

_SENSORS = """
query { sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "ov_assets"}) {
  ... on Sensors { results { name sensorState { status } } } } }
"""


def test_dropped_files_reach_postgres_and_the_store(pg_conninfo18: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "dagster-dev.log"
    with latency.pipeline_under_daemon(pg_conninfo18, tmp_path, log_path=log) as (data_dir, base):
        # Every sensor is on without anyone turning it on: the landing sensor and the alerts.
        states = {s["name"]: s["sensorState"]["status"]
                  for s in graphql(base, _SENSORS)["sensorsOrError"]["results"]}
        assert states == dict.fromkeys(("landing_sensor", "run_failure_alerts", "check_failure_alerts",
                                        "tick_failure_alerts", "slow_run_alerts", "heartbeat"), "RUNNING")

        radicados, files = latency.drop(data_dir, days_back=0, n=3)
        seconds = latency.wait_for(pg_conninfo18, data_dir, radicados, files, timeout=240)
        more, more_files = latency.drop(data_dir, days_back=1, n=2)
        latency.wait_for(pg_conninfo18, data_dir, more, more_files, timeout=240)
        print(f"first drop reached PostgreSQL and the store in {seconds:.1f}s")

    with psycopg.connect(**pg_conninfo18) as conn:
        runs = conn.execute("SELECT count(DISTINCT run_id) FROM data_general.ov_load_audit").fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM data_general.s3_files_registry "
                               "WHERE upload_status = 'uploaded' AND s3_bucket = 'local'").fetchone()[0]
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
    assert leaked(text, terms) == []
