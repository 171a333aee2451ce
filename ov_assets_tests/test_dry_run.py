"""``pqr_table``'s dry run through Dagster: the run succeeds, reports the counts a load would
write as an observation, writes nothing, materializes nothing and skips the steps downstream.
Also a real run with the table's checks left out of the selection (the asset is subsettable)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from ov_assets.defs.assets import pqr_assets
from ov_assets.devkit import generator
from ov_assets_tests.loadkit import migrate, snapshot
from ov_assets_tests.support import pipeline_resources

DAY = dt.date(2025, 10, 8)
KEY = "2025-10-08|afinia"
DRY = {"ops": {"pqr_table": {"config": {"dry_run": True}}}}
COUNTS = ("db_inserted", "db_updated", "db_duplicates", "db_skipped_older", "rejected", "records_valid")


def _materialize(
    resources: dict[str, Any], selection: Any, run_config: dict[str, Any] | None = None, **kw: Any
) -> dg.ExecuteInProcessResult:
    """One run of ``selection``: of the partition KEY unless ``kw`` says otherwise (range tags)."""
    result = dg.materialize(
        pqr_assets,
        resources=resources,
        selection=selection,
        run_config=run_config or {},
        raise_on_error=False,
        **({"partition_key": KEY} | kw),
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _written(conninfo: dict[str, Any]) -> dict[str, Any]:
    """Every row a load, its quality row, the near-duplicate refresh or the archive would write."""
    out: dict[str, Any] = dict(snapshot(conninfo))
    with psycopg.connect(**conninfo) as conn:
        for table in ("ov_load_audit", "ov_quality_daily", "ov_near_duplicates", "s3_files_registry"):
            out[table] = conn.execute(f"SELECT count(*) FROM data_general.{table}").fetchall()
    return out


def _steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.get_step_success_events() if e.step_key}


def test_dry_run_observes_counts_writes_nothing_and_skips_downstream(
    pg_conninfo18: dict[str, Any], data_dir: Path
) -> None:
    gen = generator.write_day(data_dir, "afinia", DAY, n=12)
    migrate(pg_conninfo18)  # a dry run never migrates: it must change nothing at all
    resources = pipeline_resources(pg_conninfo18, data_dir)
    selection = ["pqr_records", "pqr_table", "pqr_quality_daily", "pqr_s3_objects"]
    before = _written(pg_conninfo18)

    dry = _materialize(resources, selection, DRY)

    assert _written(pg_conninfo18) == before
    assert dry.asset_materializations_for_node("pqr_table") == []
    assert not [e for e in dry.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("pqr_table")]
    assert not dry.asset_materializations_for_node("pqr_s3_objects")
    assert not dry.asset_materializations_for_node("pqr_quality_daily")
    assert {"pqr_s3_objects", "pqr_quality_daily"}.isdisjoint(_steps(dry))
    (obs,) = dry.asset_observations_for_node("pqr_table")
    assert obs.partition == KEY and obs.metadata["dry_run"].value is True
    latest = {r["numero_radicado"] for r in gen.records}
    assert obs.metadata["db_inserted"].value == len(latest) > 0
    assert obs.metadata["rejected"].value == len(gen.broken) > 0

    # The real load writes what the dry run announced.
    real = _materialize(resources, selection)
    (mat,) = real.asset_materializations_for_node("pqr_table")
    assert mat.metadata["dry_run"].value is False
    assert {c: mat.metadata[c].value for c in COUNTS} == {c: obs.metadata[c].value for c in COUNTS}
    assert {"pqr_s3_objects", "pqr_quality_daily"} <= _steps(real)
    assert {e.asset_key for e in real.get_asset_check_evaluations()} >= {dg.AssetKey("pqr_table")}

    # A dry run after the load reports every row unchanged and still writes nothing.
    loaded = _written(pg_conninfo18)
    again = _materialize(resources, selection, DRY)
    assert _written(pg_conninfo18) == loaded
    (obs,) = again.asset_observations_for_node("pqr_table")
    assert (obs.metadata["db_inserted"].value, obs.metadata["db_duplicates"].value) == (0, len(latest))


def test_dry_run_of_a_range_observes_each_partition_with_its_own_counts(
    pg_conninfo18: dict[str, Any], data_dir: Path
) -> None:
    gens = {empresa: generator.write_day(data_dir, empresa, DAY, n=n) for empresa, n in (("afinia", 9), ("aire", 4))}
    migrate(pg_conninfo18)
    resources = pipeline_resources(pg_conninfo18, data_dir)
    before = _written(pg_conninfo18)

    # one run over both partitions of the day (what a backfill chunk does)
    tags = {"dagster/asset_partition_range_start": KEY, "dagster/asset_partition_range_end": "2025-10-08|aire"}
    result = _materialize(resources, ["pqr_records", "pqr_table", "pqr_s3_objects"], DRY, partition_key=None, tags=tags)

    assert _written(pg_conninfo18) == before
    assert result.asset_materializations_for_node("pqr_table") == []
    assert "pqr_s3_objects" not in _steps(result)
    inserted = {o.partition: o.metadata["db_inserted"].value for o in result.asset_observations_for_node("pqr_table")}
    assert inserted == {f"2025-10-08|{e}": len({r["numero_radicado"] for r in g.records}) for e, g in gens.items()}


def test_real_run_without_the_table_checks_loads_and_evaluates_none(
    pg_conninfo18: dict[str, Any], data_dir: Path
) -> None:
    gen = generator.write_day(data_dir, "afinia", DAY, n=6)
    resources = pipeline_resources(pg_conninfo18, data_dir)
    # pqr_records is not subsettable: it runs with its checks; pqr_table runs without its own
    selection = dg.AssetSelection.assets("pqr_records") | dg.AssetSelection.assets("pqr_table").without_checks()

    result = _materialize(resources, selection)

    (mat,) = result.asset_materializations_for_node("pqr_table")
    assert mat.metadata["db_inserted"].value == len({r["numero_radicado"] for r in gen.records})
    assert not [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("pqr_table")]
