"""Deduplication shared by the check and tick alerts: one message per problem and day, and one
"recovered" when it ends. The state lives in the sensor's own cursor (JSON), so it survives
daemon restarts with the instance's storage and needs no table of its own."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from ov_assets.core.contract import BOGOTA
from ov_assets.defs.automation.alerts import AlertSettings, TextMessage, send_or_log

# An open problem not seen again for this long is forgotten (keeps the cursor small); if it
# passes later it gets no "recovered".
FORGET_AFTER_DAYS = 60
MAX_PENDING = 200  # undelivered messages kept for the next tick (oldest dropped beyond)


def bogota_day(timestamp: float) -> dt.date:
    """The Bogotá day of a UNIX timestamp: "one alert per day" is the operators' day."""
    return dt.datetime.fromtimestamp(timestamp, BOGOTA).date()


@dataclass
class Episodes:
    """Open problems by key -> the Bogotá day each last alerted (ISO)."""

    open: dict[str, str] = field(default_factory=dict)

    def failing(self, key: str, day: dt.date) -> bool:
        """A failure of ``key`` on ``day``: True when it must alert (new, or last alerted on an
        earlier day)."""
        last = self.open.get(key)
        if last is not None and last >= day.isoformat():
            return False
        self.open[key] = day.isoformat()
        return True

    def passing(self, key: str) -> str | None:
        """A success of ``key``: the day it last alerted when it was open (send "recovered")."""
        return self.open.pop(key, None)

    def prune(self, today: dt.date) -> None:
        oldest = (today - dt.timedelta(days=FORGET_AFTER_DAYS)).isoformat()
        self.open = {k: d for k, d in self.open.items() if d >= oldest}


def send_all(
    log: logging.Logger | dg.DagsterLogManager,
    pending: Iterable[dict[str, str]],
    messages: Iterable[TextMessage],
    config: AlertSettings,
) -> list[dict[str, str]]:
    """Send what earlier ticks could not deliver, then ``messages``; returns what is still
    undelivered (kept in the cursor: the state moves on, the message is not lost or repeated).
    The first failure stops the sending: the channel is down."""
    queue = [TextMessage(p["subject"], p["body"]) for p in pending] + list(messages)
    for i, message in enumerate(queue):
        if not send_or_log(log, message, config):
            left = [{"subject": m.subject, "body": m.body} for m in queue[i:]]
            if len(left) > MAX_PENDING:
                log.error(f"{len(left) - MAX_PENDING} undelivered alerts dropped")
            return left[-MAX_PENDING:]
    return []
