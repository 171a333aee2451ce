"""The single ``dg.Definitions`` of ov-assets: assets, checks, jobs, schedules, sensors and
resources (configured from the environment, CONTRACT §8)."""

from __future__ import annotations

import dagster as dg

from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.automation import (
    all_alert_sensors,
    all_schedules,
    all_sensors,
    monitoring_assets,
    monitoring_jobs,
    monitoring_schedules,
)
from ov_assets.defs.checks.tablewide import all_checks
from ov_assets.defs.jobs import all_jobs, layout_migration_jobs
from ov_assets.defs.resources import resources_from_env

defs = dg.Definitions(
    assets=[*pqr_assets, *monitoring_assets],
    asset_checks=all_checks,
    jobs=[*all_jobs, *layout_migration_jobs, *monitoring_jobs],
    schedules=[*all_schedules, *monitoring_schedules],
    sensors=[*all_sensors, *all_alert_sensors],
    resources=resources_from_env(),
    # One process per run (implicit asset jobs too: ``dagster asset materialize``, the UI's
    # Materialize): the steps form a chain, each already parallel inside (upload threads, index
    # workers), so a process per step only paid the definitions' import again for each of them.
    executor=dg.in_process_executor,
)
