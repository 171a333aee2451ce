"""Politeness per portal: ``OV_SCRAPER_MAX_PER_MIN`` rate-limited requests per minute to one
portal, together, across every process, run and step that scrapes it (schedules, sensors, UI
launches, backfills).

The limit is shared through the pipeline's PostgreSQL (embedded in development, RDS in
production): one row per portal in ``data_general.portal_request_slots`` holds the next free
slot; a request takes one by advancing it atomically (the row lock orders concurrent takers),
then sleeps until it, measured on the database's clock so the hosts' clocks never matter.

Only where no database is configured (the standalone scraper command, benchmarks) the old
in-process limiter is used, and a warning says that it holds for that process alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import psycopg

from ov_assets.errors import OperatorError

log = logging.getLogger("ov_assets.portal.politeness")
T = TypeVar("T")

_TAKE_SLOT = """
INSERT INTO data_general.portal_request_slots AS s (portal, next_slot)
VALUES (%(portal)s, clock_timestamp() + %(step)s)
ON CONFLICT (portal) DO UPDATE
    SET next_slot = greatest(s.next_slot, clock_timestamp()) + %(step)s, updated_at = now()
RETURNING extract(epoch FROM s.next_slot - %(step)s - clock_timestamp())::float8
"""


class SlotStore(Protocol):
    """Where the slots live: ``PostgresResource`` (its ``run`` retries transient failures and
    applies pending migrations; ``target`` names the server without credentials)."""

    @property
    def target(self) -> str: ...

    def run(self, fn: Callable[[psycopg.Connection], T], migrate: bool = True) -> T: ...


class PolitenessUnavailable(OperatorError):
    """The shared limit cannot be kept: the database that holds it is unreachable."""


class RateLimiter(Protocol):
    async def wait(self) -> None: ...


class NoLimit:
    """OV_SCRAPER_MAX_PER_MIN=0: no politeness limit (benchmarks)."""

    async def wait(self) -> None:
        return None


class LocalRateLimiter:
    """``per_min`` requests per minute for the requests of this process only."""

    def __init__(self, per_min: float) -> None:
        self.interval = 60.0 / per_min
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)  # politeness, not a wait for the page


class SharedRateLimiter:
    """``per_min`` requests per minute to ``portal``, counted with every other limiter of the
    same portal on the same database."""

    def __init__(self, store: SlotStore, portal: str, per_min: float) -> None:
        self.store, self.portal = store, portal
        self.step = dt.timedelta(seconds=60.0 / per_min)

    def _fail(self, exc: BaseException) -> PolitenessUnavailable:
        # Our operator errors name the server and what to do; psycopg's own first line is added
        # to the server's name (our queries hold a URL and a time, no personal data).
        said = str(exc) if isinstance(exc, OperatorError) else (
            f"PostgreSQL {self.store.target}: {(str(exc) or type(exc).__name__).splitlines()[0]}")
        return PolitenessUnavailable(
            f"the per-portal request limit (OV_SCRAPER_MAX_PER_MIN) is kept in PostgreSQL, which failed: "
            f"{said.rstrip('.')}. Without it concurrent runs could overload the portal, so the extraction "
            "stops: fix the database connection (POSTGRES_*) or what the message says, and run again"
        )

    def check(self) -> None:
        """Fail before any portal request when the database (or its slots table) is not there."""
        try:
            self.store.run(lambda conn: conn.execute("SELECT 1 FROM data_general.portal_request_slots LIMIT 0"))
        except (OperatorError, psycopg.Error) as exc:
            raise self._fail(exc) from None

    def take_slot(self) -> float:
        """Reserve the portal's next free slot; the seconds to wait for it (<= 0: now)."""
        try:
            (delay,) = self.store.run(
                lambda conn: conn.execute(_TAKE_SLOT, {"portal": self.portal, "step": self.step}).fetchone())
        except (OperatorError, psycopg.Error) as exc:
            raise self._fail(exc) from None
        return delay

    async def wait(self) -> None:
        delay = await asyncio.to_thread(self.take_slot)
        if delay > 0:
            await asyncio.sleep(delay)  # politeness, not a wait for the page


def portal_key(base_url: str) -> str:
    """The portal a URL names: scheme, host, port and path, lowercased host, no credentials or
    trailing slash (``https://u:p@Host/x/`` and ``https://host/x`` are one portal)."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def limiter_for(base_url: str, per_min: float | None, store: SlotStore | None) -> RateLimiter:
    """The limiter of one scrape: none when the limit is off; shared through ``store`` (checked
    now, so an unreachable database fails before the portal is touched); in-process only when
    no database is configured, with a warning."""
    if not per_min:
        return NoLimit()
    if store is None:
        log.warning("OV_SCRAPER_MAX_PER_MIN=%g holds for this process only: no database is configured to "
                    "share it with other runs of the same portal", per_min)
        return LocalRateLimiter(per_min)
    limiter = SharedRateLimiter(store, portal_key(base_url), per_min)
    limiter.check()
    return limiter
