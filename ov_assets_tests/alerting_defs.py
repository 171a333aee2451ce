"""A code location for the daemon tests of issue 17: the project's heartbeat and tick-alert
sensors next to a sensor whose every tick fails with personal data in its error (as a bad
landing file's values could be)."""

import dagster as dg

from ov_assets.defs.automation.heartbeat import heartbeat
from ov_assets.defs.automation.tick_alerts import tick_failure_alerts

PERSONAL = "María José Pérez Ñáñez 1045678912 mjperez@example.com"


@dg.sensor(name="broken_sensor", minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def broken_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    raise ValueError(f"cannot parse {PERSONAL}")


defs = dg.Definitions(sensors=[heartbeat, tick_failure_alerts, broken_sensor])
