"""The single ``dg.Definitions`` of ov-assets: assets, checks, jobs, schedules, sensors and
resources (configured from the environment, CONTRACT §8)."""

from __future__ import annotations

import dagster as dg

from ov_assets.assets import pqr_assets
from ov_assets.automation import all_alert_sensors, all_schedules, all_sensors
from ov_assets.checks import all_checks
from ov_assets.jobs import all_jobs
from ov_assets.layout_migration import layout_migration_jobs
from ov_assets.resources import resources_from_env

defs = dg.Definitions(
    assets=pqr_assets,
    asset_checks=all_checks,
    jobs=[*all_jobs, *layout_migration_jobs],
    schedules=all_schedules,
    sensors=[*all_sensors, *all_alert_sensors],
    resources=resources_from_env(),
)
