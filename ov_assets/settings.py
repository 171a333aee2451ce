"""CONTRACT §8: the environment, read in one place, turned into resource configuration.

Secrets become ``dg.EnvVar`` in ``ov_assets.defs.resources`` so the Dagster UI shows the
variable's name, never its value; this module imports nothing of Dagster. Unset variables fall back to the development defaults (embedded PostgreSQL, local
object store, replica portal); the resources themselves refuse those fallbacks when
``OV_ENV=production``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

from ov_assets.errors import ConfigurationError
from ov_assets.fs import private_dir


def env_str(name: str, default: str = "") -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    return int(value) if value else default


def env_flag(name: str) -> bool:
    """A yes/no variable: 1, true, yes or on (any case) mean yes."""
    return env_str(name).lower() in ("1", "true", "yes", "on")


def env_float(name: str, default: float) -> float:
    """A number; a value that is not one is refused naming the variable (never silently 0)."""
    value = env_str(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number (unset: {default})") from None


def child_environment(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment for a child process (a server, a command), with
    ``overrides`` laid over it (None removes a variable): the one place that copies it."""
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def retention_days(given: int | None = None) -> int:
    """How long landing files verified in the object store and the scraper's failure
    screenshots and traces are kept: ``given`` (a command's option, a job's config), else
    OV_RETENTION_DAYS (default 30); refused below one day, which would make every file old."""
    days = given if given is not None else env_int("OV_RETENTION_DAYS", 30)
    source = "the retention" if given is not None else "OV_RETENTION_DAYS"
    if days < 1:
        raise ConfigurationError(f"{source} must be at least 1 day, not {days}")
    return days


def data_dir() -> str:
    return env_str("OV_DATA_DIR", "./data")


def dagster_home(default: Path) -> Path:
    """DAGSTER_HOME (Dagster's own variable: where the instance records runs), else
    ``default``; the demo passes its data folder's ``dagster_home``."""
    return Path(env_str("DAGSTER_HOME") or default)


# --- limits and thresholds the checks, the landing index and the scraper read ----------------

DEFAULT_MAX_RECORD_BYTES = 8 << 20


def reject_rate_warn() -> float:
    """OV_REJECT_RATE_WARN: the rejected share of a partition above which ``reject_rate`` warns."""
    return env_float("OV_REJECT_RATE_WARN", 0.2)


def freshness_grace() -> dt.timedelta:
    """OV_FRESHNESS_GRACE_MINUTES: how late a load may be before ``load_freshness`` fails."""
    return dt.timedelta(minutes=env_float("OV_FRESHNESS_GRACE_MINUTES", 60))


def near_duplicate_similarity() -> float:
    """OV_NEAR_DUP_SIMILARITY: the text similarity (0-100, rapidfuzz token_sort_ratio of the folded
    complaints) from which two PQRs of one NIC or document are near-duplicates (default 80)."""
    value = env_float("OV_NEAR_DUP_SIMILARITY", 80.0)
    if not 0 < value <= 100:
        raise ConfigurationError(f"OV_NEAR_DUP_SIMILARITY={value} must be above 0 and at most 100 (unset: 80)")
    return value


def near_duplicate_days() -> int:
    """OV_NEAR_DUP_DAYS: how many days apart two filings may be and still be near-duplicates
    (default 30)."""
    raw = env_str("OV_NEAR_DUP_DAYS")
    try:
        value = int(raw) if raw else 30
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(f"OV_NEAR_DUP_DAYS={raw!r}: give a whole number of days, 0 or more (unset: 30)")
    return value


def max_record_bytes() -> int:
    """OV_MAX_RECORD_BYTES: the largest record file read (default 8 MiB; a real record is a
    few KB, free text included): a larger one is rejected ``record_too_large`` unread, so one
    file cannot take a worker's memory."""
    raw = env_str("OV_MAX_RECORD_BYTES")
    if not raw:
        return DEFAULT_MAX_RECORD_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1024:
        raise ConfigurationError(
            f"OV_MAX_RECORD_BYTES={raw!r}: give a number of bytes of at least 1024 (unset: {DEFAULT_MAX_RECORD_BYTES})"
        )
    return value


def index_workers() -> int:
    """OV_INDEX_WORKERS: worker processes of a large landing-index refresh; else the CPUs, at
    most 4 (a value that is not a number counts as unset)."""
    raw = env_str("OV_INDEX_WORKERS")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return max(1, min(os.cpu_count() or 1, 4))


def browser_path() -> str:
    """OV_BROWSER_PATH: the Chromium to drive; empty: Playwright's own, else /usr/bin/chromium."""
    return env_str("OV_BROWSER_PATH")


def private_data_dir() -> str:
    """OV_DATA_DIR made owner-only, and this process's umask made 077, before anything is
    written: everything under the data folder holds or leads to personal data, and the umask
    also covers what libraries write there on our behalf (Dagster's storage and compute logs,
    the embedded PostgreSQL's files, the browser's profile). The folder is created 0700 with
    its missing parents, and tightened when it exists wider and this user owns it (a folder
    shared on purpose by another user is left alone)."""
    os.umask(0o077)
    return str(private_dir(Path(data_dir())))


def environment() -> str:
    return env_str("OV_ENV", "development")


# --- alerts, heartbeat (issue 17) -------------------------------------------------------------


def alert_check_warnings() -> bool:
    """OV_ALERT_CHECK_WARNINGS: whether WARN-severity check failures alert too (``reject_rate``,
    ``portal_yielded_pqrs`` are WARN and are exactly what operators must hear of): yes unless
    0/false/no/off."""
    return env_str("OV_ALERT_CHECK_WARNINGS", "1").lower() not in ("0", "false", "no", "off")


def alert_interval_seconds() -> int:
    """OV_ALERT_INTERVAL_SECONDS: how often the check, tick and slow-run alert sensors look."""
    return max(1, env_int("OV_ALERT_INTERVAL_SECONDS", 30))


def alert_queued_minutes() -> int:
    """OV_ALERT_QUEUED_MINUTES: a run queued longer than this alerts (once)."""
    return max(1, env_int("OV_ALERT_QUEUED_MINUTES", 60))


def alert_running_minutes() -> int:
    """OV_ALERT_RUNNING_MINUTES: a run started longer ago than this alerts (once), well before
    run monitoring's ``max_runtime_seconds`` cancels it (deploy/dagster.yaml)."""
    return max(1, env_int("OV_ALERT_RUNNING_MINUTES", 240))


def heartbeat_url() -> str:
    """OV_HEARTBEAT_URL: a dead-man's-switch URL (healthchecks-style) the daemon GETs; unset: none."""
    return env_str("OV_HEARTBEAT_URL")


def heartbeat_interval_seconds() -> int:
    """OV_HEARTBEAT_INTERVAL_SECONDS: seconds between heartbeats (set the service's period to it
    and its grace to a few periods)."""
    return max(1, env_int("OV_HEARTBEAT_INTERVAL_SECONDS", 300))


# --- backups (issue 16) -----------------------------------------------------------------------


def pg_dump_path() -> str:
    """OV_PG_DUMP: the pg_dump backups run (pg_restore is taken from the same folder); empty:
    the one on PATH. It must be of the server's major version or newer."""
    return env_str("OV_PG_DUMP")
