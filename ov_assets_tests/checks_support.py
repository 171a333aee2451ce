"""Helpers for the asset-check tests: resources on real servers, runs, check outcomes by partition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_aws.s3 import S3Resource

from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.resources import (
    LandingResource,
    ObjectStoreResource,
    PartitionedFrameIOManager,
    PortalResource,
    PostgresResource,
)

DAY_A = dt.date(2025, 10, 8)
DAY_B = dt.date(2025, 10, 9)


def make_resources(conninfo: dict[str, Any], data_dir: Path, bucket: str = "", endpoint: str = "") -> dict[str, Any]:
    pg = PostgresResource(
        host=str(conninfo["host"]),
        port=int(conninfo["port"]),
        user=str(conninfo["user"]),
        password=str(conninfo.get("password") or ""),
        dbname=str(conninfo["dbname"]),
        data_dir=str(data_dir),
    )
    s3 = S3Resource(endpoint_url=endpoint or None, region_name="us-east-1")
    return {
        "landing": LandingResource(data_dir=str(data_dir)),
        "postgres": pg,
        "object_store": ObjectStoreResource(bucket=bucket, s3=s3, data_dir=str(data_dir)),
        "frames_io_manager": PartitionedFrameIOManager(data_dir=str(data_dir)),
        "portal": PortalResource(extract=False, data_dir=str(data_dir)),
    }


def key(day: dt.date, empresa: str) -> str:
    return f"{day.isoformat()}|{empresa}"


def materialize(
    resources: dict[str, Any],
    partition: str,
    assets: list | None = None,
    selection: Any = None,
    instance: dg.DagsterInstance | None = None,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets or pqr_assets,
        resources=resources,
        partition_key=partition,
        selection=selection,
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def materialize_range(
    resources: dict[str, Any], start: str, end: str, selection: Any = None, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """One run over a range of partitions (what a backfill chunk does)."""
    return dg.materialize(
        pqr_assets,
        resources=resources,
        selection=selection,
        instance=instance,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
    )


def outcomes(result: dg.ExecuteInProcessResult, asset: str | None = None) -> dict[tuple[str, str | None], bool]:
    """(check name, partition) -> passed, from the run's check evaluation events. Single-partition
    results carry the run's partition; a range run's summary has partition None."""
    out: dict[tuple[str, str | None], bool] = {}
    for ev in result.get_asset_check_evaluations():
        if asset and ev.asset_key.to_user_string() != asset:
            continue
        part = ev.partition
        if part is None and result.dagster_run.tags.get("dagster/partition"):
            part = result.dagster_run.tags["dagster/partition"]
        out[(ev.check_name, part)] = ev.passed
    return out


def evaluation(result: dg.ExecuteInProcessResult, check_name: str, partition: str | None = None) -> Any:
    found = [
        ev
        for ev in result.get_asset_check_evaluations()
        if ev.check_name == check_name and (partition is None or ev.partition in (partition, None))
    ]
    assert found, (
        f"no evaluation of {check_name} ({partition}) in {[e.check_name for e in result.get_asset_check_evaluations()]}"
    )
    return found[-1] if partition is None else next((e for e in found if e.partition == partition), found[-1])


def meta(ev: Any, name: str) -> Any:
    value = ev.metadata[name]
    return getattr(value, "value", value)


def connect(conninfo: dict[str, Any]) -> psycopg.Connection:
    return psycopg.connect(**conninfo, autocommit=True)


def run_checks(
    checks: Iterable[Any],
    resources: dict[str, Any],
    partition: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """Run standalone asset checks alone (nothing is materialized)."""
    checks = list(checks)
    job = dg.define_asset_job(
        "checks_only", selection=dg.AssetSelection.checks(*checks), partitions_def=_partitions_of(checks)
    )
    defs = dg.Definitions(assets=pqr_assets, asset_checks=checks, jobs=[job], resources=resources)
    return defs.resolve_job_def("checks_only").execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False
    )


def _partitions_of(checks: list[Any]) -> Any:
    for c in checks:
        pd = getattr(c, "partitions_def", None)
        if pd is not None:
            return pd
    return None


def write_newer_version(
    data_dir: Path, gen: Any, index: int = 0, estado: str = "Finalizado", minutes_later: int = 900
) -> dict[str, Any]:
    """A later extraction of one generated PQR with a changed status (an update: a history row
    once loaded)."""
    from ov_assets.core.file_names import landing_dir
    from ov_assets.devkit.generator import write_record_files

    record = dict(gen.records[index], estado_solicitud=estado, comentarios="Actualizado por prueba.")
    filed = dt.datetime.strptime(record["fecha"], "%Y/%m/%d %H:%M")
    write_record_files(
        landing_dir(data_dir, gen.empresa), record, filed + dt.timedelta(minutes=minutes_later), 100 + index
    )
    return record
