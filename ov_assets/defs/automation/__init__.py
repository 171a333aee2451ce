"""Automation (issue 7): schedules (``schedules``), the landing sensor (``sensors``, logic in
``landing_runs``), run-failure alerts (``alerts``) and the run tags that keep one writer per
partition (``concurrency``). Issue 17: check, tick and slow-run alerts (``check_alerts``,
``tick_alerts``), the heartbeat (``heartbeat``) and the daily summary (``daily_summary``)."""

from ov_assets.defs.automation import alerts
from ov_assets.defs.automation.check_alerts import check_failure_alerts
from ov_assets.defs.automation.daily_summary import daily_summary_job, daily_summary_schedule, ov_daily_summary
from ov_assets.defs.automation.heartbeat import heartbeat
from ov_assets.defs.automation.schedules import all_schedules
from ov_assets.defs.automation.sensors import all_sensors
from ov_assets.defs.automation.tick_alerts import slow_run_alerts, tick_failure_alerts

all_alert_sensors = [*alerts.all_alert_sensors, check_failure_alerts, tick_failure_alerts, slow_run_alerts, heartbeat]
monitoring_assets = [ov_daily_summary]
monitoring_jobs = [daily_summary_job]
monitoring_schedules = [daily_summary_schedule]

__all__ = [
    "all_alert_sensors",
    "all_schedules",
    "all_sensors",
    "monitoring_assets",
    "monitoring_jobs",
    "monitoring_schedules",
]
