"""``ov-assets backup [--reason R] [--list]`` and ``ov-assets restore KEY --yes``: the
``data_general`` schema dumped to the bucket and brought back (``ov_assets.objects.backups``).

Other commands that do bulk work call ``backup_before`` first (cleanup here; the history load)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def command_resources() -> Iterator[Any]:
    """The definitions' ``postgres`` and ``object_store`` resources initialized as in a run
    (secrets resolved), as the other commands open them."""
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env

    res = resources_from_env()
    with dg.build_resources({k: res[k] for k in ("postgres", "object_store")}) as built:
        yield built


def backup_before(res: Any, reason: str, skip: bool) -> None:
    """Take a backup before bulk work, with the command's resources (``command_resources()``);
    ``skip`` (the command's ``--no-backup``) says so instead. A failed backup stops the command."""
    from ov_assets.objects.backups import backup_schema

    if skip:
        print(f"no backup before {reason} (--no-backup)")
        return
    record = backup_schema(
        res.postgres.conninfo(), res.object_store.open(), reason, base_path=res.object_store.base_path
    )
    print(record.describe())


def cmd_backup(args: argparse.Namespace) -> int:
    """Dump ``data_general`` to ``{S3_BASE_PATH}/backups/`` (verified), or ``--list`` them."""
    from ov_assets.objects.backups import list_backups

    with command_resources() as res:
        store = res.object_store.open()
        if args.list:
            found = list_backups(store, res.object_store.base_path)
            for b in found:
                print(f"{b.key}  {b.size} bytes  taken {b.taken}  reason {b.reason}")
            folder = res.object_store.base_path.strip("/") + "/backups"  # a key's prefix: no trailing "/"
            print(f"{len(found)} backups in {store.url(folder)}/")
            return 0
        backup_before(res, args.reason, skip=False)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Replace ``data_general`` by the backup ``KEY`` (after verifying its checksum); needs --yes."""
    from ov_assets.objects.backups import restore_schema

    with command_resources() as res:
        store = res.object_store.open()
        if not args.yes:
            print(
                f"restore would REPLACE every table of data_general in {res.postgres.target} by the backup "
                f"{store.url(args.key)}: rows written since are lost. Stop the schedules and sensors, take a "
                "backup of the present state (ov-assets backup --reason pre-restore), then rerun with --yes."
            )
            return 1
        result = restore_schema(res.postgres.conninfo(), store, args.key, expected_sha256=args.sha256 or None)
    print(f"restored data_general from {store.url(result.key)} ({result.size} bytes, sha256 {result.sha256})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="pg_dump of data_general to {S3_BASE_PATH}/backups/ (or --list them)")
    p.add_argument("--reason", default="manual", help="a-z, 0-9, '-': part of the backup's name (default: manual)")
    p.add_argument("--list", action="store_true", help="list the backups in the bucket; take none")
    p.set_defaults(fn=cmd_backup)
    p = sub.add_parser("restore", help="replace data_general by a backup of the bucket (needs --yes)")
    p.add_argument("key", help="the backup's key, as `ov-assets backup --list` prints it")
    p.add_argument("--yes", action="store_true", help="really replace the schema")
    p.add_argument("--sha256", default="", help="the SHA-256 printed when the backup was taken (checked too)")
    p.set_defaults(fn=cmd_restore)
