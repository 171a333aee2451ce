"""The PostgreSQL client programs the backups run (``pg_dump``, ``pg_restore``): which ones
(``OV_PG_DUMP``, else PATH), whether their version fits the server, and running them with the
password in their environment only (``PGPASSWORD``, never the command line) and their output
reduced to one error line without quoted values (a failed restore may quote a row).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ov_assets import settings
from ov_assets.errors import ConfigurationError, OperatorError, translate_pg_error
from ov_assets.warehouse import migrations
from ov_assets.warehouse.tables import SCHEMA

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# libpq parameters handed to pg_dump/pg_restore (the password goes through PGPASSWORD; the
# pipeline's ``options``, a statement_timeout, would cut a long dump).
_LIBPQ_KEYS = ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout")


class BackupError(OperatorError):
    """A backup or restore could not be done; the message says what to do."""


@dataclass(frozen=True)
class PgTools:
    """pg_dump and pg_restore to use: ``OV_PG_DUMP`` (pg_restore beside it), else PATH."""

    pg_dump: Path
    pg_restore: Path

    @classmethod
    def find(cls, configured: str = "") -> PgTools:
        if configured:
            path = Path(configured)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ConfigurationError(
                    f"OV_PG_DUMP={configured} is not an executable pg_dump: point it at the pg_dump of the "
                    "server's major version (Debian/Ubuntu: /usr/lib/postgresql/N/bin/pg_dump)"
                )
            return cls(path, path.with_name("pg_restore"))
        found = shutil.which("pg_dump")
        if not found:
            raise BackupError(
                "pg_dump not found (OV_PG_DUMP unset, none on PATH): install the PostgreSQL client of the "
                "server's major version or newer (Debian/Ubuntu: apt-get install postgresql-client-N) and put "
                "it on PATH or set OV_PG_DUMP to its pg_dump; or skip the backup (--no-backup) knowingly"
            )
        restore = shutil.which("pg_restore")
        return cls(Path(found), Path(restore) if restore else Path(found).with_name("pg_restore"))


def tool_version(tool: Path) -> tuple[int, str]:
    """(major, version text) of a PostgreSQL client program, from ``--version``."""
    try:
        out = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except OSError as exc:
        raise BackupError(
            f"{tool} cannot be run ({type(exc).__name__}): install the PostgreSQL client programs "
            "(pg_dump and pg_restore side by side) or fix OV_PG_DUMP"
        ) from None
    m = _VERSION.search(out)
    if not m:
        raise BackupError(f"{tool} --version says {out[:80]!r}, not a PostgreSQL client: fix OV_PG_DUMP or PATH")
    return int(m.group(1)), m.group(0).split()[-1]


def target(conninfo: Mapping[str, Any]) -> str:
    return f"{conninfo.get('host', '')}:{conninfo.get('port', '')}/{conninfo.get('dbname', '')}"


def server_version(conninfo: Mapping[str, Any]) -> tuple[int, str]:
    """(major, version text) of the server, e.g. (18, '18.6')."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            number = conn.info.server_version
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise translate_pg_error(exc, target(conninfo)) from None
    return number // 10000, str(row[0]).split()[0] if row else str(number)


def latest_migration(conninfo: Mapping[str, Any]) -> str:
    """The last migration file applied (``public.schema_migrations`` lives outside the dumped
    schema); the dictionary step's row is not a file."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            return max(filter(migrations.is_versioned, migrations.applied(conn)), default="")
    except psycopg.Error as exc:
        raise translate_pg_error(exc, target(conninfo)) from None


def dictionary_applied(conninfo: Mapping[str, Any]) -> str:
    """The checksum of the data dictionary's comments last applied ("" when none): a backup
    records it, since the comments are in the dump and the record is not."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            return str(migrations.applied(conn).get(migrations.DICTIONARY, ("",))[0])
    except psycopg.Error as exc:
        raise translate_pg_error(exc, target(conninfo)) from None


def forget_later_migrations(conninfo: Mapping[str, Any], latest: str, dictionary: str = "") -> list[str]:
    """After a restore: migrations applied since the backup are no longer in the schema; their
    rows go, so that the next connection applies them again (``migrations.ensure_current``). So
    does the dictionary step's, unless the restored comments are the ones it records (nothing
    forgotten and ``dictionary``, the backup's checksum, equal to it)."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            done = migrations.applied(conn)
            if not done:
                return []
            rows = conn.execute(
                "DELETE FROM public.schema_migrations WHERE version > %s AND version <> %s RETURNING version",
                (latest, migrations.DICTIONARY),
            ).fetchall()
            forgotten = [r[0] for r in rows]
            recorded = done.get(migrations.DICTIONARY)
            if recorded is not None and (forgotten or recorded[0] != dictionary):
                conn.execute("DELETE FROM public.schema_migrations WHERE version = %s", (migrations.DICTIONARY,))
                forgotten.append(migrations.DICTIONARY)
    except psycopg.Error as exc:
        raise translate_pg_error(exc, target(conninfo)) from None
    return sorted(forgotten)


def check_pg_dump(tool: Path, conninfo: Mapping[str, Any]) -> tuple[str, str]:
    """(pg_dump version, server version), or ``BackupError`` saying what to install when the
    pg_dump is older than the server."""
    major, version = tool_version(tool)
    server_major, server = server_version(conninfo)
    if major < server_major:
        raise BackupError(
            f"{tool} is pg_dump {version}, older than the server (PostgreSQL {server}): pg_dump must be of the "
            f"server's major version or newer. Install the PostgreSQL {server_major} client (Debian/Ubuntu, "
            f"from apt.postgresql.org: apt-get install postgresql-client-{server_major}) and set "
            f"OV_PG_DUMP=/usr/lib/postgresql/{server_major}/bin/pg_dump"
        )
    return version, server


def libpq(conninfo: Mapping[str, Any], application: str = "ov-assets-backup") -> tuple[str, dict[str, str]]:
    """The connection string without the password, and the child's environment holding it."""
    kept = {k: conninfo[k] for k in _LIBPQ_KEYS if conninfo.get(k) not in (None, "")}
    kept["application_name"] = application
    password = conninfo.get("password")
    return make_conninfo(**kept), settings.child_environment({"PGPASSWORD": str(password) if password else None})


def first_error(stderr: bytes) -> str:
    """The first error line of pg_dump/pg_restore, without quoted values (a failed restore's
    message may quote a row) and without DETAIL/CONTEXT lines."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error:" in ln] or lines[:1]
    if not errors:
        return "no message"
    text = re.sub(r"\"[^\"]*\"|'[^']*'", "…", errors[0])
    return text[:300]


LOCK_TIMEOUT_MS = 60_000  # waiting this long for a table another session holds: cancelled, not hung


def _watch_locks(proc: subprocess.Popen[bytes], conninfo: Mapping[str, Any], application: str) -> bool:
    """Wait for ``proc``; cancel its backend when it waits ``LOCK_TIMEOUT_MS`` for a lock (the
    archive's own ``SET lock_timeout = 0`` would let it wait forever behind a run or a migration).
    True when it was cancelled so (a single-transaction restore then changed nothing). One
    connection for the whole watch, looking twice a second."""
    waiting_since: dict[int, float] = {}
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        while True:
            try:
                proc.wait(timeout=0.5)
                return False
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application,),
            ).fetchall()
            waiting_since = {pid: waiting_since.get(pid, now) for (pid,) in rows}
            late = [pid for pid, since in waiting_since.items() if now - since >= LOCK_TIMEOUT_MS / 1000]
            if late:
                for pid in late:
                    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
                proc.wait()
                return True


def run(tool: Path, args: list[str], conninfo: Mapping[str, Any], stdout: int | None = None) -> None:
    """Run ``tool`` against ``conninfo`` (``--dbname``); ``BackupError`` with a hint on failure."""
    application = f"ov-assets-backup-{uuid.uuid4().hex[:12]}"
    dsn, env = libpq(conninfo, application)
    try:
        proc = subprocess.Popen(
            [str(tool), *args, f"--dbname={dsn}"],
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise BackupError(f"{tool} cannot be run ({type(exc).__name__}): fix OV_PG_DUMP or PATH") from None
    try:
        assert proc.stderr is not None  # (stderr=PIPE)
        with ThreadPoolExecutor(max_workers=1) as reader:  # drained aside: a full pipe would block the tool
            stderr = reader.submit(proc.stderr.read)
            try:
                cancelled = _watch_locks(proc, conninfo, application)
            except psycopg.Error as exc:  # (the watch's own connection)
                proc.kill()
                raise translate_pg_error(exc, target(conninfo)) from None
            err = stderr.result()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if cancelled:
        raise BackupError(
            f"{tool.name} waited {LOCK_TIMEOUT_MS // 1000} s for a table of {SCHEMA} that another session holds (a run, a "
            "migration) and was cancelled; nothing was changed. Stop the schedules and sensors, wait for the runs "
            "to end, and run it again"
        )
    if proc.returncode == 0:
        return
    message = first_error(err)
    lowered = message.lower()
    hint = "see the message; nothing was stored or changed"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        hint = "check POSTGRES_USER and POSTGRES_PASSWORD"
    elif "permission denied" in lowered:
        hint = f"run it as the owner of the {SCHEMA} schema (the user `ov-assets migrate` runs as)"
    elif "version mismatch" in lowered:
        hint = "install the PostgreSQL client of the server's major version and set OV_PG_DUMP to its pg_dump"
    elif "unrecognized configuration parameter" in lowered:
        hint = (
            "this pg_restore is newer than the server and sets a parameter it does not know: restore with the "
            "client of the server's major version (OV_PG_DUMP; the backup must not be newer than it)"
        )
    elif "role" in lowered and "does not exist" in lowered:
        hint = "restoring into a new server: run `ov-assets migrate` there first (it creates the roles), then restore"
    elif "no matching schemas" in lowered:
        hint = f"the database has no {SCHEMA} schema: check POSTGRES_DB, or run `ov-assets migrate` first"
    elif "depend on it" in lowered or "depends on" in lowered:
        hint = (
            f"the {SCHEMA} schema holds objects the backup does not (made after it): the restore changed "
            "nothing; drop those objects, or restore into a fresh database"
        )
    raise BackupError(f"{tool.name} failed for {target(conninfo)} (exit {proc.returncode}): {message}; {hint}")
