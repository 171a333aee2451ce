"""The heartbeat (issue 17): when the daemon or the whole host stops, nothing runs, so nothing
fails, so no alert of ours is sent. A healthchecks-style service (healthchecks.io, Uptime Kuma's
push monitor, Better Stack heartbeats, ...) alerts *outside* the system when its URL stops
being called: the daemon GETs ``OV_HEARTBEAT_URL`` every ``OV_HEARTBEAT_INTERVAL_SECONDS``
(default 300), from this sensor. Sensors run only in a live daemon, so the pings stop with it.

Set the service's period to the interval and its grace to a few intervals. The URL holds the
check's secret token: it is never logged (errors name the exception class only).
"""

from __future__ import annotations

import urllib.request

import dagster as dg

from ov_assets import settings

TIMEOUT_S = 10.0


def ping(url: str, timeout_s: float = TIMEOUT_S) -> int:
    """GET ``url``; its HTTP status (an error status raises ``urllib.error.HTTPError``)."""
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "ov-assets-heartbeat"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()
        return int(response.status)


@dg.sensor(
    name="heartbeat",
    minimum_interval_seconds=settings.heartbeat_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="GETs OV_HEARTBEAT_URL every OV_HEARTBEAT_INTERVAL_SECONDS (dead-man's switch: its absence "
    "alerts outside the system when the daemon or the host stops).",
)
def heartbeat(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    url = settings.heartbeat_url()
    if not url:
        return dg.SkipReason("OV_HEARTBEAT_URL not set: no heartbeat")
    try:
        status = ping(url)
    except Exception as exc:  # noqa: BLE001 - the URL may be in the text; the class says enough
        # A failed tick: tick_failure_alerts reports it (once a day), and the missing ping
        # alerts on the service's side too.
        raise RuntimeError(f"heartbeat not delivered: {type(exc).__name__}") from None
    return dg.SkipReason(f"heartbeat sent (HTTP {status})")
