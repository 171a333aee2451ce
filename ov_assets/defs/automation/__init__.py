"""Automation (issue 7): schedules (``schedules``), the landing sensor (``sensors``, logic in
``landing_runs``), run-failure alerts (``alerts``) and the run tags that keep one writer per
partition (``concurrency``)."""

from ov_assets.defs.automation.alerts import all_alert_sensors
from ov_assets.defs.automation.schedules import all_schedules
from ov_assets.defs.automation.sensors import all_sensors

__all__ = ["all_alert_sensors", "all_schedules", "all_sensors"]
