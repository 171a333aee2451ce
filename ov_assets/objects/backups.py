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
wrote the archive. Both are checked before anything runs (``warehouse.pg_client``, which also
keeps the password out of their command line).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_assets import settings
from ov_assets.core.checkpoints import checkpoint
from ov_assets.errors import ConfigurationError, translate_aws_error
from ov_assets.fs import private_dir
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import (
    CHUNK_SIZE,
    LocalObjectStore,
    ObjectExists,
    ObjectStore,
    sha256_file,
    verify_object,
)
from ov_assets.warehouse import pg_client
from ov_assets.warehouse.pg_client import SCHEMA, BackupError, PgTools

__all__ = ["BackupError", "BackupRecord", "PgTools", "backup_schema", "list_backups", "restore_schema"]

FOLDER = "backups"
CONTENT_TYPE = "application/vnd.postgresql.custom-dump"
_REASON = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


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


@contextmanager
def _private_file(work_dir: Path | None, suffix: str) -> Iterator[tuple[Path, int]]:
    """A new owner-only (0600) file in an owner-only folder, deleted when the block ends; under
    ``work_dir``, else ``$OV_DATA_DIR/tmp`` (the data disk, not a small /tmp)."""
    parent = work_dir or private_dir(Path(settings.data_dir()).resolve() / "tmp")
    folder = Path(tempfile.mkdtemp(prefix="ov-backup-", dir=parent))  # 0700
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
    dump_version, server = pg_client.check_pg_dump(tools.pg_dump, conninfo)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with _private_file(work_dir, ".dump") as (path, fd):
        pg_client.run(tools.pg_dump, ["--format=custom", f"--schema={SCHEMA}", "--no-password"], conninfo, stdout=fd)
        os.fsync(fd)
        checkpoint("backup_dumped")  # (tests look at the local file here)
        size = path.stat().st_size
        sha256 = sha256_file(path)
        metadata = {
            "ov-backup-reason": reason,
            "ov-backup-schema": SCHEMA,
            "ov-pg-dump-version": dump_version,
            "ov-server-version": server,
            "ov-migration": pg_client.latest_migration(conninfo),
            "ov-dictionary": pg_client.dictionary_applied(conninfo),  # its comments are in the dump
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
    restore_major, restore_version = pg_client.tool_version(tools.pg_restore)
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
        pg_client.run(
            tools.pg_restore,
            ["--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-password", str(path)],
            conninfo,
        )
    forgotten = (
        pg_client.forget_later_migrations(
            conninfo, (head.metadata or {}).get("ov-migration", ""), (head.metadata or {}).get("ov-dictionary", "")
        )
        if "ov-migration" in (head.metadata or {})
        else []
    )
    return RestoreResult(key, got, size, restore_version, forgotten)
