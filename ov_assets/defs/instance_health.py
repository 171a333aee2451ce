"""``ov-assets doctor``'s Dagster lines: the instance at DAGSTER_HOME (its storage answers) and
the daemon (every daemon the instance needs has beaten recently: schedules, sensors, backfills
and the run queue run only while it does)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dagster as dg

from ov_assets.core.health import Health, first_line

HEARTBEAT_MAX_AGE_S = 300  # daemons beat every ~30 s; five minutes without one is a stopped daemon
START_DAEMON = "start it with this DAGSTER_HOME (`dagster-daemon run`; deploy/ has its service unit)"


def _scrubbed(exc: BaseException) -> str:
    """An error of the instance's storage, one line, with any password of a database URL cut."""
    return first_line(re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", f"{type(exc).__name__}: {exc}"), 300)


def instance_health(home: Path, environment: str = "development", now: float | None = None) -> list[Health]:
    """The instance at ``home`` (DAGSTER_HOME, else the data folder's ``dagster_home``): its
    storage (PostgreSQL in production, as deploy/dagster.yaml has it), then its daemons' heartbeats."""
    if not home.is_dir():
        return [
            Health(
                "dagster instance",
                False,
                f"{home} does not exist: set DAGSTER_HOME to the instance folder (with dagster.yaml; "
                "deploy/dagster.yaml for production)",
            )
        ]
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
            storage = type(instance.run_storage).__name__
            required = list(instance.get_required_daemon_types())
            beats = instance.get_daemon_heartbeats()
    except Exception as exc:  # noqa: BLE001 - said as one line naming what to check
        return [
            Health(
                "dagster instance",
                False,
                f"{home}: storage does not answer ({_scrubbed(exc)}): check dagster.yaml's storage settings "
                "and that its database is reachable",
            )
        ]
    if environment == "production" and "Postgres" not in storage:
        out = [
            Health(
                "dagster instance",
                False,
                f"{home}: {storage} answers, but production keeps runs, events and schedules in PostgreSQL: "
                "install deploy/dagster.yaml as its dagster.yaml (DAGSTER_POSTGRES_URL set)",
            )
        ]
    else:
        out = [Health("dagster instance", True, f"{home}: {storage} answers")]
    now = time.time() if now is None else now
    stale, erring, ages = [], [], []
    for daemon in required:
        beat = beats.get(daemon)
        if beat is None:
            stale.append(f"{daemon} (never)")
            continue
        age = now - beat.timestamp
        ages.append(age)
        if age > HEARTBEAT_MAX_AGE_S:
            stale.append(f"{daemon} ({age / 60:.0f} min ago)")
        if beat.errors:
            erring.append(f"{daemon} ({len(beat.errors)})")
    if len(stale) == len(required) and not beats:
        out.append(Health("dagster daemon", False, f"no daemon has ever run on this instance: {START_DAEMON}"))
    elif stale:
        out.append(Health("dagster daemon", False, f"no recent heartbeat from {', '.join(stale)}: {START_DAEMON}"))
    elif erring:
        out.append(
            Health(
                "dagster daemon",
                False,
                f"running, but reporting errors: {', '.join(erring)}: read them in the UI (Deployment > Daemons) "
                "or the daemon's log",
            )
        )
    else:
        out.append(
            Health(
                "dagster daemon",
                True,
                f"{len(required)} daemons beating, the oldest heartbeat {max(ages, default=0):.0f} s ago",
            )
        )
    return out
