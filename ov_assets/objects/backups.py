"""Backups of the ``data_general`` schema to the bucket, and their restore (issue 16, master
plan §2.3): taken before bulk work (the layout migration, a cleanup, a history load), so that a
mistake of that work can be undone.

A backup is ``pg_dump --format=custom --schema=data_general``, written to an owner-only (0600)
file, hashed, stored under ``{S3_BASE_PATH}/backups/{YYYYMMDDTHHMMSSZ}_{reason}.dump`` like every
object (SSE, the SHA-256 sent with the put and in the ``sha256`` metadata, never over another
object) and verified in the bucket (S3's full-object checksum, or the bytes read back); the local
file is then deleted (it is deleted on failure too: it holds personal data and is made again in
seconds). A restore downloads to an owner-only file, refuses bytes whose SHA-256 is not the one
recorded at upload (and, when S3 has one, S3's own), and runs ``pg_restore --clean --if-exists
--single-transaction --exit-on-error``: all of the schema comes back, or nothing changes.

``pg_dump`` must be of the server's major version or newer (it refuses an older one, and an
older one could not read the catalog anyway); ``pg_restore`` must be at least the version that
wrote the archive. Both are checked before anything runs. The password reaches them only through
``PGPASSWORD`` in their environment, never their command line; what they print is reduced to
its first error line, without quoted values (a restore's error may quote a row).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ov_assets import settings
from ov_assets.core.checkpoints import checkpoint
from ov_assets.errors import ConfigurationError, OperatorError, translate_aws_error, translate_pg_error
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import (
    CHUNK_SIZE,
    LocalObjectStore,
    ObjectExists,
    ObjectStore,
    sha256_file,
    verify_object,
)
from ov_assets.warehouse import migrations

SCHEMA = "data_general"
FOLDER = "backups"
CONTENT_TYPE = "application/vnd.postgresql.custom-dump"
_REASON = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# libpq parameters handed to pg_dump/pg_restore (the password goes through PGPASSWORD; our
# session ``options`` such as statement_timeout are for the pipeline's own connections).
_LIBPQ_KEYS = ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout")


class BackupError(OperatorError):
    """A backup or restore could not be done; the message says what to do."""


@dataclass(frozen=True)
class BackupRecord:
    """One stored, verified backup: where it is and what proves its bytes."""

    key: str
    url: str
    sha256: str
    size: int
    reason: str
    created_at: dt.datetime
    pg_dump_version: str
    server_version: str

    def describe(self) -> str:
        text = f"backup {self.url} ({self.size} bytes, sha256 {self.sha256}, reason {self.reason})"
        dumped, server = self.pg_dump_version.split(".")[0], self.server_version.split(".")[0]
        if dumped != server:
            text += (
                f"; note: pg_dump {dumped} is newer than the server ({server}): its pg_restore may set parameters "
                f"PostgreSQL {server} does not know; set OV_PG_DUMP to a PostgreSQL {server} pg_dump"
            )
        return text


@dataclass(frozen=True)
class BackupListing:
    key: str
    size: int
    taken: str  # the time stamp of its name (UTC)
    reason: str


@dataclass(frozen=True)
class RestoreResult:
    key: str
    sha256: str
    size: int
    pg_restore_version: str
    # Migrations applied after the backup was taken: forgotten, applied again by the next run.
    reapply: list[str]


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


def _target(conninfo: Mapping[str, Any]) -> str:
    return f"{conninfo.get('host', '')}:{conninfo.get('port', '')}/{conninfo.get('dbname', '')}"


def server_version(conninfo: Mapping[str, Any]) -> tuple[int, str]:
    """(major, version text) of the server, e.g. (18, '18.6')."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            number = conn.info.server_version
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise translate_pg_error(exc, _target(conninfo)) from None
    return number // 10000, str(row[0]).split()[0] if row else str(number)


def _latest_migration(conninfo: Mapping[str, Any]) -> str:
    """The last migration applied (``public.schema_migrations`` lives outside the dumped schema)."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            return max(migrations.applied(conn), default="")
    except psycopg.Error as exc:
        raise translate_pg_error(exc, _target(conninfo)) from None


def _forget_later_migrations(conninfo: Mapping[str, Any], latest: str) -> list[str]:
    """After a restore: migrations applied since the backup are no longer in the schema; their
    rows go, so that the next connection applies them again (``migrations.ensure_current``)."""
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            if not migrations.applied(conn):
                return []
            rows = conn.execute(
                "DELETE FROM public.schema_migrations WHERE version > %s RETURNING version", (latest,)
            ).fetchall()
    except psycopg.Error as exc:
        raise translate_pg_error(exc, _target(conninfo)) from None
    return sorted(r[0] for r in rows)


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


def _libpq(conninfo: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The connection string without the password, and the child's environment holding it."""
    kept = {k: conninfo[k] for k in _LIBPQ_KEYS if conninfo.get(k) not in (None, "")}
    kept["application_name"] = "ov-assets-backup"
    password = conninfo.get("password")
    return make_conninfo(**kept), settings.child_environment({"PGPASSWORD": str(password) if password else None})


def _first_error(stderr: bytes) -> str:
    """The first error line of pg_dump/pg_restore, without quoted values (a failed restore's
    message may quote a row) and without DETAIL/CONTEXT lines."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error:" in ln] or lines[:1]
    if not errors:
        return "no message"
    text = re.sub(r"\"[^\"]*\"|'[^']*'", "…", errors[0])
    return text[:300]


def _run(tool: Path, args: list[str], conninfo: Mapping[str, Any], stdout: int | None = None) -> None:
    dsn, env = _libpq(conninfo)
    try:
        proc = subprocess.run(
            [str(tool), *args, f"--dbname={dsn}"],
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
    except OSError as exc:
        raise BackupError(f"{tool} cannot be run ({type(exc).__name__}): fix OV_PG_DUMP or PATH") from None
    if proc.returncode == 0:
        return
    message = _first_error(proc.stderr)
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
    elif "no matching schemas" in lowered:
        hint = f"the database has no {SCHEMA} schema: check POSTGRES_DB, or run `ov-assets migrate` first"
    elif "depend on it" in lowered or "depends on" in lowered:
        hint = (
            f"the {SCHEMA} schema holds objects the backup does not (made after it): the restore changed "
            "nothing; drop those objects, or restore into a fresh database"
        )
    raise BackupError(f"{tool.name} failed for {_target(conninfo)} (exit {proc.returncode}): {message}; {hint}")


@contextmanager
def _private_file(work_dir: Path | None, suffix: str) -> Iterator[tuple[Path, int]]:
    """A new owner-only (0600) file in an owner-only folder, deleted when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix="ov-backup-", dir=work_dir))  # 0700
    path = folder / f"schema{suffix}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        yield path, fd
    finally:
        with suppress(OSError):  # (closed already: nothing to do)
            os.close(fd)
        path.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def backup_prefix(base_path: str) -> str:
    return f"{base_path.strip('/')}/{FOLDER}/" if base_path.strip("/") else f"{FOLDER}/"


def _reason(reason: str) -> str:
    if not _REASON.fullmatch(reason):
        raise ConfigurationError(
            f"backup reason {reason[:50]!r}: use 1-40 characters of a-z, 0-9 and '-', e.g. 'manual', 'cleanup'"
        )
    return reason


def backup_schema(
    conninfo: Mapping[str, Any],
    store: ObjectStore,
    reason: str,
    *,
    base_path: str = "oficina-virtual",
    tools: PgTools | None = None,
    work_dir: Path | None = None,
) -> BackupRecord:
    """Dump ``data_general`` and store it verified in ``store`` under ``{base_path}/backups/``;
    what bulk work calls first. ``conninfo``: psycopg keyword arguments (the password included:
    it reaches pg_dump through its environment only). ``tools``: default ``PgTools.find`` with
    ``OV_PG_DUMP``. Raises ``BackupError`` (or the store's operator errors), having stored nothing
    or an object nobody should trust: the key is named when it was stored but not verified."""
    reason = _reason(reason)
    tools = tools or PgTools.find(settings.pg_dump_path())
    dump_version, server = check_pg_dump(tools.pg_dump, conninfo)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with _private_file(work_dir, ".dump") as (path, fd):
        _run(tools.pg_dump, ["--format=custom", f"--schema={SCHEMA}", "--no-password"], conninfo, stdout=fd)
        os.fsync(fd)
        checkpoint("backup_dumped")  # (tests look at the local file here)
        size = path.stat().st_size
        sha256 = sha256_file(path)
        metadata = {
            "ov-backup-reason": reason,
            "ov-backup-schema": SCHEMA,
            "ov-pg-dump-version": dump_version,
            "ov-server-version": server,
            "ov-migration": _latest_migration(conninfo),
        }
        stamp = created.strftime("%Y%m%dT%H%M%SZ")
        for attempt in range(1, 100):  # two backups of one reason in one second: the second is _2
            key = f"{backup_prefix(base_path)}{stamp}_{reason}{'' if attempt == 1 else f'_{attempt}'}.dump"
            try:
                store.put(key, path, sha256, CONTENT_TYPE, metadata, only_if_absent=True)
                break
            except ObjectExists:
                continue
        else:
            raise BackupError(f"no free backup key under {backup_prefix(base_path)} for {stamp}_{reason}")
        problem = verify_object(store, key, size, sha256)
        if problem is not None:
            raise BackupError(
                f"backup {store.url(key)} failed its verification after upload ({problem}): do not rely on it; "
                "take the backup again (ov-assets backup)"
            )
    return BackupRecord(key, store.url(key), sha256, size, reason, created, dump_version, server)


def _list_keys(store: ObjectStore, prefix: str) -> list[tuple[str, int]]:
    if isinstance(store, LocalObjectStore):
        root = store.root.resolve()
        folder = root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            (p.relative_to(root).as_posix(), p.stat().st_size)
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )
    if not isinstance(store, S3ObjectStore):
        raise BackupError(f"backups need the bucket or the local store, not {type(store).__name__}")
    client, out = store.client, []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
            out += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
    except Exception as exc:
        raise translate_aws_error(exc, store.bucket, store.region) from exc
    return sorted(out)


def list_backups(store: ObjectStore, base_path: str = "oficina-virtual") -> list[BackupListing]:
    """The backups under ``{base_path}/backups/``, oldest first."""
    out = []
    for key, size in _list_keys(store, backup_prefix(base_path)):
        name = key.rsplit("/", 1)[-1]
        if not name.endswith(".dump"):
            continue
        taken, _, reason = name[: -len(".dump")].partition("_")
        out.append(BackupListing(key, size, taken, reason))
    return out


def _download(store: ObjectStore, key: str, fd: int) -> str:
    """Write the object's bytes to ``fd``; their SHA-256."""
    digest = hashlib.sha256()
    with os.fdopen(os.dup(fd), "wb") as out:
        if isinstance(store, LocalObjectStore):
            with (store.root / key).open("rb") as fh:  # (the key was checked above)
                while chunk := fh.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
        elif isinstance(store, S3ObjectStore):
            try:
                body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
                for chunk in iter(lambda: body.read(CHUNK_SIZE), b""):
                    digest.update(chunk)
                    out.write(chunk)
            except Exception as exc:
                raise translate_aws_error(exc, store.bucket, store.region) from exc
        else:
            raise BackupError(f"backups need the bucket or the local store, not {type(store).__name__}")
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def restore_schema(
    conninfo: Mapping[str, Any],
    store: ObjectStore,
    key: str,
    *,
    expected_sha256: str | None = None,
    tools: PgTools | None = None,
    work_dir: Path | None = None,
) -> RestoreResult:
    """Bring ``data_general`` back to the backup at ``key``: download, verify, ``pg_restore
    --clean --if-exists`` in one transaction. Refuses (``BackupError``, nothing changed) a
    backup whose bytes are not the ones recorded at upload, or ``expected_sha256`` when given."""
    if not key.endswith(".dump") or key.startswith("/") or ".." in key.split("/"):
        raise BackupError(f"{key[:120]!r} is no backup key: copy one from `ov-assets backup --list`")
    head = store.head(key)
    if head is None:
        raise BackupError(f"no backup at {store.url(key)}: list them with `ov-assets backup --list`")
    recorded = (head.metadata or {}).get("sha256")
    if not recorded:
        raise BackupError(f"{store.url(key)} carries no sha256 metadata: not an ov-assets backup, not restored")
    tools = tools or PgTools.find(settings.pg_dump_path())
    restore_major, restore_version = tool_version(tools.pg_restore)
    dumped_by = (head.metadata or {}).get("ov-pg-dump-version", "")
    if dumped_by and int(dumped_by.split(".")[0]) > restore_major:
        raise BackupError(
            f"{tools.pg_restore} is pg_restore {restore_version}, older than the pg_dump {dumped_by} that wrote "
            f"the backup: install that PostgreSQL client and set OV_PG_DUMP to its pg_dump (pg_restore beside it)"
        )
    with _private_file(work_dir, ".dump") as (path, fd):
        got = _download(store, key, fd)
        size = path.stat().st_size
        wanted = {recorded.lower()}
        if head.verified and head.sha256:
            wanted.add(head.sha256.lower())  # S3's own checksum of what it stored
        if expected_sha256:
            wanted.add(expected_sha256.strip().lower())
        if wanted != {got} or size != head.size:
            raise BackupError(
                f"backup {store.url(key)} is corrupt: its bytes (sha256 {got}, {size} bytes) are not the ones "
                f"recorded at upload ({', '.join(sorted(wanted - {got})) or 'size differs'}); nothing was restored. "
                "Restore another backup (ov-assets backup --list)"
            )
        _run(
            tools.pg_restore,
            ["--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-password", str(path)],
            conninfo,
        )
    forgotten = (
        _forget_later_migrations(conninfo, (head.metadata or {}).get("ov-migration", ""))
        if "ov-migration" in (head.metadata or {})
        else []
    )
    return RestoreResult(key, got, size, restore_version, forgotten)
