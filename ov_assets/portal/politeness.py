"""Politeness per portal: ``OV_SCRAPER_MAX_PER_MIN`` rate-limited requests per minute to one
portal, together, across every process, run and step that scrapes it (schedules, sensors, UI
launches, backfills).

The limit is shared through the pipeline's PostgreSQL (embedded in development, RDS in
production): one row per portal in ``data_general.portal_request_slots`` holds the next free
slot; a request takes one by advancing it atomically (the row lock orders concurrent takers),
then sleeps until it, measured on the database's clock so the hosts' clocks never matter.
A scrape keeps one connection for its slots (on RDS a connection is a TLS handshake, too dear
for every detail page): opened at its start, opened again once when lost, closed at its end.

Only where no database is configured (the standalone scraper command, benchmarks) the old
in-process limiter is used, and a warning says that it holds for that process alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from contextlib import AbstractContextManager, ExitStack
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg

from ov_assets.errors import OperatorError, is_connection_lost, translate_pg_error

log = logging.getLogger("ov_assets.portal.politeness")

_TAKE_SLOT = """
INSERT INTO data_general.portal_request_slots AS s (portal, next_slot)
VALUES (%(portal)s, clock_timestamp() + %(step)s)
ON CONFLICT (portal) DO UPDATE
    SET next_slot = greatest(s.next_slot, clock_timestamp()) + %(step)s, updated_at = now()
RETURNING extract(epoch FROM s.next_slot - %(step)s - clock_timestamp())::float8
"""


class SlotStore(Protocol):
    """Where the slots live: ``PostgresResource`` (its ``connect`` retries while the server is
    unreachable and applies pending migrations; ``target`` names the server without
    credentials)."""

    @property
    def target(self) -> str: ...

    def connect(self, migrate: bool = True) -> AbstractContextManager[psycopg.Connection]: ...


class PolitenessUnavailable(OperatorError):
    """The shared limit cannot be kept: the database that holds it is unreachable."""


class RateLimiter(Protocol):
    async def wait(self) -> None: ...

    def close(self) -> None:
        """Release what the limiter holds (a database connection); the scrape is over."""


class NoLimit:
    """OV_SCRAPER_MAX_PER_MIN=0: no politeness limit (benchmarks)."""

    async def wait(self) -> None:
        return None

    def close(self) -> None:
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

    def close(self) -> None:
        return None


class SharedRateLimiter:
    """``per_min`` requests per minute to ``portal``, counted with every other limiter of the
    same portal on the same database, through one connection of its own (the scrape's workers
    take turns on it; the row lock orders them with the other limiters anyway)."""

    def __init__(self, store: SlotStore, portal: str, per_min: float) -> None:
        self.store, self.portal = store, portal
        self.step = dt.timedelta(seconds=60.0 / per_min)
        self._lock = threading.Lock()  # the workers' threads share the connection
        self._held: ExitStack | None = None
        self._conn: psycopg.Connection | None = None
        self._closed = False

    def _fail(self, exc: BaseException) -> PolitenessUnavailable:
        # Our operator errors name the server and what to do; psycopg's own first line is added
        # to the server's name (our queries hold a URL and a time, no personal data).
        if isinstance(exc, psycopg.Error) and not is_connection_lost(exc):  # that text is the loader's
            exc = translate_pg_error(exc, self.store.target)
        said = (
            str(exc)
            if isinstance(exc, OperatorError)
            else (f"PostgreSQL {self.store.target}: {(str(exc) or type(exc).__name__).splitlines()[0]}")
        )
        return PolitenessUnavailable(
            f"the per-portal request limit (OV_SCRAPER_MAX_PER_MIN) is kept in PostgreSQL, which failed: "
            f"{said.rstrip('.')}. Without it concurrent runs could overload the portal, so the extraction "
            "stops: fix the database connection (POSTGRES_*) or what the message says, and run again"
        )

    def _drop(self) -> None:
        held, self._held, self._conn = self._held, None, None
        if held is not None:
            try:
                held.close()
            except (OperatorError, psycopg.Error) as exc:  # a lost connection closes as it can
                log.info("politeness: closing the slots connection: %s", type(exc).__name__)

    def _execute(self, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        """``query`` on the limiter's connection, opened when there is none; a held connection
        found lost (restart, failover, idle timeout) is replaced once, a fresh one is not."""
        with self._lock:
            if self._closed:
                raise PolitenessUnavailable("the per-portal request limit was closed: its scrape is over")
            while True:
                fresh = self._conn is None
                try:
                    if self._conn is None:
                        held = ExitStack()
                        self._conn = held.enter_context(self.store.connect(migrate=True))
                        self._held = held
                    return self._conn.execute(query, params).fetchone()
                except (OperatorError, psycopg.Error) as exc:
                    lost = is_connection_lost(exc) or (self._conn is not None and self._conn.broken)
                    self._drop()
                    if fresh or not lost:
                        raise self._fail(exc) from None
                    log.warning(
                        "politeness: the slots connection to PostgreSQL %s was lost (%s); connecting again",
                        self.store.target,
                        type(exc).__name__,
                    )

    def check(self) -> None:
        """Fail before any portal request when the database (or its slots table) is not there."""
        self._execute("SELECT 1 FROM data_general.portal_request_slots LIMIT 0")

    def take_slot(self) -> float:
        """Reserve the portal's next free slot; the seconds to wait for it (<= 0: now)."""
        (delay,) = self._execute(_TAKE_SLOT, {"portal": self.portal, "step": self.step}) or (0.0,)
        return float(delay)

    def close(self) -> None:
        """Close the connection (after a slot being taken in a worker's thread, if any)."""
        with self._lock:
            self._closed = True
            self._drop()

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
        log.warning(
            "OV_SCRAPER_MAX_PER_MIN=%g holds for this process only: no database is configured to "
            "share it with other runs of the same portal",
            per_min,
        )
        return LocalRateLimiter(per_min)
    limiter = SharedRateLimiter(store, portal_key(base_url), per_min)
    limiter.check()  # on failure nothing is held: the connection is closed
    return limiter
