"""deploy/dagster.yaml: a DagsterInstance built from it keeps runs, events and schedules in
PostgreSQL (dagster-postgres, embedded PostgreSQL 18 here) and materializes a partition."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg

from ov_assets.defs.assets import pqr_records, pqr_table, raw_pqr_files
from ov_assets.defs.partitions import partition_key
from ov_assets.devkit.servers import postgres_env
from ov_assets_tests.loadkit import days_back
from ov_assets_tests.support import sqlalchemy_url

DEPLOY_YAML = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"


def test_production_instance_yaml_materializes_a_partition(pg_server, pg_conninfo18, data_dir, tmp_path, monkeypatch):
    from ov_assets.defs.resources import PortalResource, resources_from_env
    from ov_assets.devkit.generator import write_day

    dagster_db = pg_server.create_database(prefix="dagster")
    try:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", sqlalchemy_url(pg_server.conninfo(dagster_db)))
        monkeypatch.setenv("DAGSTER_COMPUTE_LOG_DIR", str(tmp_path / "compute_logs"))
        for k, v in postgres_env(pg_conninfo18).items():
            monkeypatch.setenv(k, v)
        day = days_back(1)[0]
        gen = write_day(data_dir, "afinia", day, n=5)
        key = partition_key(day, "afinia")

        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            result = dg.materialize(
                [raw_pqr_files, pqr_records, pqr_table],
                partition_key=key,
                instance=instance,
                resources={**resources_from_env(), "portal": PortalResource(extract=False)},
            )
            assert result.success
            mats = instance.fetch_materializations(dg.AssetKey("pqr_table"), limit=10).records
            assert [m.partition_key for m in mats] == [key]
            assert mats[0].asset_materialization.metadata["db_inserted"].value == len(gen.radicados)
            assert instance.get_run_by_id(result.run_id) is not None

        with pg_server.connect(dagster_db) as conn:
            (runs,) = conn.execute("SELECT count(*) FROM runs").fetchone()
            (events,) = conn.execute("SELECT count(*) FROM event_logs").fetchone()
            assert runs == 1 and events > 10
            assert conn.execute("SELECT to_regclass('public.instigators')").fetchone()[0] is not None
        with psycopg.connect(**pg_conninfo18) as conn:
            (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
            assert rows == len(gen.radicados)
    finally:
        pg_server.drop_database(dagster_db)


def test_run_queue_drains_every_second_and_keeps_the_partition_limits(tmp_path: Path) -> None:
    """The landing sensor's latency (issue 20): a queued run waits at most ~1 s for the queue
    daemon (Dagster's default is 5 s), and the per-partition tag limits still hold."""
    import yaml

    config = yaml.safe_load(DEPLOY_YAML.read_text())
    overrides = {k: config[k] for k in ("run_coordinator", "concurrency")}
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides=overrides) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.dequeue_interval_seconds == 1
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
    for key in ("dagster/partition", "ov/partition"):
        assert limits[key]["limit"] == 1 and limits[key]["value"] == {"applyLimitPerUniqueValue": True}
