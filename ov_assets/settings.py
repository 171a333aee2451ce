"""CONTRACT §8: the environment, read in one place, turned into resource configuration.

Secrets become ``dg.EnvVar`` in ``ov_assets.defs.resources`` so the Dagster UI shows the
variable's name, never its value; this module imports nothing of Dagster. Unset variables fall back to the development defaults (embedded PostgreSQL, local
object store, replica portal); the resources themselves refuse those fallbacks when
``OV_ENV=production``.
"""

from __future__ import annotations

import os
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
