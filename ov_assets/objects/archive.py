"""Archiving a partition's files to object storage, with a registry that never lies
(CONTRACT §6-§7).

For every valid version's JSON, PDF and attachments: registered and verified -> nothing to do;
else a conditional put (``If-None-Match: *``) with a SHA-256 checksum, encryption and metadata,
verified from S3's answer -> ``uploaded``; when the key is taken, S3's own SHA-256 of the object
decides: the same -> ``uploaded`` when it is our own put of this registry row (a put whose answer
was lost, a run killed after its put: the object's ``registry_id`` metadata is the row's id),
else ``pre_existing``; different bytes -> ``error`` (never overwritten). Rows are written
``pending`` before any upload, so a killed run leaves work that the next run (or the hourly
retry) finishes. The table row's ``archivos_s3_urls`` lists the winning version's objects.

A registry row describes the bytes of one object and is never re-pointed at other bytes once
they are stored: a landing file replaced by other bytes under the same name (by hand) is a new
version, stored under its own key (``versioned_key``: the name with ``~`` and 16 hex digits of
its SHA-256 before the extension), with a row of its own. Every outcome is written only if the
row still describes the bytes it is about (``file_hash``), so a concurrent run cannot leave a
row ``uploaded`` with a hash the bucket does not hold.

Objects the old system stored (adopted by ``ov-assets migrate``, ``warehouse.adoption``: their
rows carry ``metadata.adopted_from``) are never stored twice: a landing file whose planned key
does not already describe its bytes, and whose name and SHA-256 an adopted ``uploaded`` /
``pre_existing`` row holds, is that object. ``current_keys`` returns the adopted key, so nothing
is uploaded, the table row's ``archivos_s3_urls`` points at the old key, and the adopted row,
when its PQR was unresolved, is linked to this file's radicado (``link_adopted``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import mimetypes
import os
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl
import psycopg

from ov_assets.core.checkpoints import checkpoint
from ov_assets.core.contract import EMPRESA_DISPLAY
from ov_assets.core.file_names import landing_dir
from ov_assets.errors import OperatorError, StoreAccessError
from ov_assets.fs import NotARegularFile
from ov_assets.objects.registry_keys import (
    DONE_STATUSES,
    current_keys,
    registry_status,
    settled_keys,
)
from ov_assets.objects.stores import ConflictError, IntegrityError, ObjectExists, ObjectStore
from ov_assets.warehouse.loading import SCHEMA, table_name

_CONTENT_TYPES = {
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def content_type(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def object_key(layout: str, base_path: str, empresa: str, day: dt.date, folder: str, filename: str) -> str:
    """CONTRACT §7: ``default`` by partition date, ``central`` for the document archive."""
    folder = _UNSAFE.sub("_", folder)
    if layout == "central":
        return f"Central_De_Escritos/{EMPRESA_DISPLAY[empresa]}/01_raw_data/oficina_virtual/{folder}/{filename}"
    return f"{base_path.strip('/')}/{empresa}/{day:%Y}/{day:%m}/{day:%d}/{folder}/{filename}"


def link_adopted(conn: psycopg.Connection, bucket: str, objects: list[PlannedObject]) -> None:
    """Give an adopted row whose PQR was not resolved the radicado (and SGC) of the landing file
    it turned out to be: the landing folder resolves what the old registry could not."""
    if not objects:
        return
    with conn.transaction():
        conn.execute(
            f"""UPDATE {SCHEMA}.s3_files_registry r SET numero_radicado = v.radicado,
                    numero_reclamo_sgc = COALESCE(v.sgc, r.numero_reclamo_sgc), updated_at = now()
                FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS v(s3_key, empresa, radicado, sgc)
                WHERE r.s3_bucket = %s AND r.s3_key = v.s3_key AND r.empresa = v.empresa
                  AND r.numero_radicado IS NULL AND r.metadata ? 'adopted_from'""",
            (
                [o.key for o in objects],
                [o.empresa for o in objects],
                [o.numero_radicado for o in objects],
                [o.numero_reclamo_sgc or None for o in objects],
                bucket,
            ),
        )


@dataclass(frozen=True)
class PlannedObject:
    """One landing file to be archived under ``key``."""

    empresa: str
    numero_radicado: str
    numero_reclamo_sgc: str
    partition_date: dt.date
    file_type: str
    filename: str
    size: int
    sha256: str
    path: Path
    key: str


def plan_objects(frame: pl.DataFrame, data_dir: Path, layout: str, base_path: str) -> list[PlannedObject]:
    """Every valid version's files (rejected files stay in the landing folder), one per key."""
    planned: dict[str, PlannedObject] = {}
    valid = frame.filter(pl.col("status") == "valid").select(
        "empresa", "partition_date", "numero_radicado", "numero_reclamo_sgc", "files"
    )
    folders: dict[str, Path] = {}
    for empresa, day, radicado, sgc, files in valid.iter_rows():
        folder = sgc or radicado
        landing = folders.get(empresa) or folders.setdefault(empresa, landing_dir(data_dir, empresa))
        for f in files:
            key = object_key(layout, base_path, empresa, day, folder, f["filename"])
            planned.setdefault(
                key,
                PlannedObject(
                    empresa,
                    radicado,
                    sgc,
                    day,
                    f["file_type"],
                    f["filename"],
                    f["size"],
                    f["sha256"],
                    landing / f["filename"],
                    key,
                ),
            )
    return list(planned.values())


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str  # uploaded | pre_existing | error | pending (not attempted: the run stopped)
    source: str  # bot | pre_existing
    error: str | None = None
    sha256: str = ""  # the bytes the outcome is about
    guard: str = ""  # written only to a row that describes these bytes (default: sha256)
    size: int | None = None  # the object's size, when the outcome re-describes the row


def _metadata(obj: PlannedObject, registry_id: int | None) -> dict[str, str]:
    # S3 metadata is ASCII; radicados are digits, anything else is replaced, never dropped.
    # registry_id: the row registered pending before this put (how a rerun knows its own put).
    meta = {"empresa": obj.empresa, "numero_radicado": obj.numero_radicado.encode("ascii", "replace").decode()}
    if registry_id is not None:
        meta["registry_id"] = str(registry_id)
    return meta


def _archive_one(
    store: ObjectStore, obj: PlannedObject, registry_id: int | None, stop: threading.Event, why: list[str]
) -> Outcome:
    def outcome(status: str, source: str = "bot", error: str | None = None) -> Outcome:
        return Outcome(obj.key, status, source, error, obj.sha256)

    if stop.is_set():
        return outcome("pending", error=f"not attempted: {why[0] if why else 'run stopped'}")
    try:
        if not os.path.lexists(obj.path):  # (a link is not missing: the put refuses it, by name)
            return outcome("error", error="landing file missing")
        try:
            store.put(
                obj.key,
                obj.path,
                obj.sha256,
                content_type(obj.filename),
                _metadata(obj, registry_id),
                only_if_absent=True,
            )
            checkpoint("s3_put")  # tests: a run killed after its put, before its registry write
            return outcome("uploaded")
        except ObjectExists:
            # Stored already: by this row's own put (a lost answer, a killed run), by an earlier
            # run whose registry write was lost, by hand. Only S3's checksum or the bytes decide.
            head = store.head(obj.key)
            found = None if head is None else head.sha256 if head.verified else store.sha256_of(obj.key)
            ours = head is not None and registry_id is not None and head.metadata.get("registry_id") == str(registry_id)
            if found == obj.sha256:
                return outcome("uploaded") if ours else outcome("pre_existing", "pre_existing")
            if ours and head is not None and found is not None:
                # This row's own put stored other bytes (its landing file was replaced since):
                # the row describes what is stored; the new bytes get a key of their own.
                return Outcome(obj.key, "uploaded", "bot", None, found, obj.sha256, head.size)
            if head is None:  # a completion whose answer was lost and whose object is not there
                return outcome("error", error="upload not confirmed and object absent; the next run retries")
            return outcome(
                "error",
                error="object exists with different content (sha256 differs); "
                "not overwritten: compare it with the landing file",
            )
    except StoreAccessError as exc:
        why.append(str(exc))
        stop.set()
        return outcome("error", error=str(exc))
    except NotARegularFile as exc:  # swapped for a link (or a folder) since it was indexed
        return outcome("error", error=f"{exc}; not uploaded"[:500])
    except (OperatorError, IntegrityError, ConflictError) as exc:
        return outcome("error", error=str(exc)[:500])
    except Exception as exc:  # noqa: BLE001 - the registry keeps the reason, the run reports it
        return outcome("error", error=f"{type(exc).__name__}: {exc}"[:500])


@dataclass
class ArchiveCounts:
    s3_uploaded: int = 0
    s3_pre_existing: int = 0
    s3_already_registered: int = 0
    s3_errors: int = 0
    s3_not_attempted: int = 0
    fatal: str | None = None  # the operator error that stopped the run (bucket unusable)
    # Keys whose registry row this call wrote: what the run's own check re-reads in the bucket.
    # Every other planned object was registered stored with the same key and SHA-256 (proven
    # when it was stored) and is trusted: no request per object; the hourly reconciliation
    # (``registry_matches_bucket``) re-verifies every row against the bucket.
    worked_keys: set[str] = dataclasses.field(default_factory=set)
    settled_keys: set[str] = dataclasses.field(default_factory=set)  # planned keys stored before the call


def register_pending(conn: psycopg.Connection, store: ObjectStore, todo: list[PlannedObject]) -> dict[str, int]:
    """Write (or reopen) the registry rows as ``pending`` before anything is uploaded: a killed
    run leaves rows that the next run, or the hourly retry, finishes. A row of stored bytes
    (``uploaded``/``pre_existing``) is never re-pointed at other bytes. Returns the id of each
    key's row that now describes the planned bytes."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.s3_files_registry (empresa, numero_radicado, numero_reclamo_sgc,
                    filename, file_type, content_type, file_size, file_hash, s3_bucket, s3_key, s3_url,
                    upload_status, upload_source, metadata)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', 'bot', %s)
                ON CONFLICT (s3_bucket, s3_key) DO UPDATE SET file_size = EXCLUDED.file_size,
                    file_hash = EXCLUDED.file_hash, upload_status = 'pending', updated_at = now()
                WHERE s3_files_registry.upload_status NOT IN ('uploaded', 'pre_existing')""",
            [
                (
                    o.empresa,
                    o.numero_radicado,
                    o.numero_reclamo_sgc or None,
                    o.filename,
                    o.file_type,
                    content_type(o.filename),
                    o.size,
                    o.sha256,
                    store.bucket,
                    o.key,
                    store.url(o.key),
                    orjson.dumps({"partition_date": o.partition_date.isoformat()}).decode(),
                )
                for o in todo
            ],
        )
        rows = conn.execute(
            f"""SELECT s3_key, id FROM {SCHEMA}.s3_files_registry r
                JOIN unnest(%b::text[], %b::text[]) AS v(s3_key, file_hash) USING (s3_key, file_hash)
                WHERE r.s3_bucket = %s AND r.upload_status NOT IN ('uploaded', 'pre_existing')""",
            ([o.key for o in todo], [o.sha256 for o in todo], store.bucket),
        ).fetchall()
    return dict(rows)


def record_outcomes(conn: psycopg.Connection, store: ObjectStore, outcomes: list[Outcome]) -> None:
    """Write each outcome to its row only while the row still describes the outcome's bytes
    (``file_hash``) and is open: another run may have registered other bytes under the key
    meanwhile, or finished it, and then this outcome is not about that row. One statement per
    round of distinct keys (one UPDATE changes a row once; a key's outcomes apply in order):
    a day's ~27,000 rows took ~1.5 s as one statement each."""
    rounds: list[list[Outcome]] = []
    seen: dict[str, int] = {}
    for r in outcomes:
        n = seen[r.key] = seen.get(r.key, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(r)
    with conn.transaction():
        for batch in rounds:
            conn.execute(
                f"""UPDATE {SCHEMA}.s3_files_registry r SET upload_status = v.status, upload_source = v.source,
                        last_error = v.error, updated_at = now(), file_hash = v.sha256,
                        file_size = COALESCE(v.size::bigint, r.file_size),
                        attempts = r.attempts + CASE WHEN v.status = 'pending' THEN 0 ELSE 1 END,
                        uploaded_at = CASE WHEN v.status = 'uploaded' THEN now() ELSE r.uploaded_at END
                    FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
                        AS v(status, source, error, sha256, size, s3_key, guard)
                    WHERE r.s3_bucket = %s AND r.s3_key = v.s3_key AND r.file_hash = v.guard
                      AND r.upload_status NOT IN ('uploaded', 'pre_existing')""",
                (
                    [r.status for r in batch],
                    [r.source for r in batch],
                    [r.error for r in batch],
                    [r.sha256 for r in batch],
                    [None if r.size is None else str(r.size) for r in batch],
                    [r.key for r in batch],
                    [r.guard or r.sha256 for r in batch],
                    store.bucket,
                ),
            )


def archive_objects(
    conn: psycopg.Connection, store: ObjectStore, objects: list[PlannedObject], max_workers: int
) -> tuple[ArchiveCounts, list[Outcome]]:
    """Register, upload and verify with a bounded pool of ``max_workers`` threads; returns
    counts and the outcome of each object worked on. When the bucket itself is unusable
    (credentials, permissions, bucket, region, endpoint) the run stops at once: the rest stay
    ``pending`` and ``counts.fatal`` holds the operator's one-line message."""
    counts = ArchiveCounts()
    stop = threading.Event()
    why: list[str] = []
    outcomes: list[Outcome] = []
    # Stored already, these bytes under this key: nothing to look up, link or upload.
    counts.settled_keys = settled_keys(conn, store.bucket, [(o.key, o.sha256) for o in objects])
    counts.s3_already_registered = sum(1 for o in objects if o.key in counts.settled_keys)
    objects = [o for o in objects if o.key not in counts.settled_keys]
    # Two rounds at most: the second stores, under their own keys, the bytes whose key the first
    # found holding this row's own earlier bytes (the row now describes those).
    for _ in range(2):
        if not objects:
            break
        keys = current_keys(conn, store.bucket, [(o.key, o.sha256) for o in objects])
        objects = [dataclasses.replace(o, key=keys[(o.key, o.sha256)]) for o in objects]
        link_adopted(conn, store.bucket, objects)
        known = registry_status(conn, store.bucket, [o.key for o in objects])
        todo = []
        for o in objects:
            status, file_hash = known.get(o.key, (None, None))
            if status in DONE_STATUSES and file_hash == o.sha256:
                counts.s3_already_registered += 1
            else:
                todo.append(o)
        if not todo:
            break
        ids = register_pending(conn, store, todo)
        counts.worked_keys.update(o.key for o in todo)
        with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="ov-s3") as pool:
            results = list(pool.map(lambda o, ids=ids: _archive_one(store, o, ids.get(o.key), stop, why), todo))
        record_outcomes(conn, store, results)
        outcomes += [r for r, o in zip(results, todo, strict=True) if r.sha256 == o.sha256]
        objects = [o for r, o in zip(results, todo, strict=True) if r.sha256 != o.sha256]
        if not objects:
            break
    for r in outcomes:
        if r.status == "uploaded":
            counts.s3_uploaded += 1
        elif r.status == "pre_existing":
            counts.s3_pre_existing += 1
        elif r.status == "pending":
            counts.s3_not_attempted += 1
        else:
            counts.s3_errors += 1
    counts.fatal = why[0] if why else None
    return counts, outcomes


def link_table_rows(
    conn: psycopg.Connection,
    store: ObjectStore,
    frame: pl.DataFrame,
    layout: str,
    base_path: str,
    settled: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Set ``archivos_s3_urls`` and ``procesado_flag`` of each winner's row (only where they
    change, so reruns touch nothing). Returns the rows changed. ``settled``: planned keys known
    (``ArchiveCounts.settled_keys``) to be stored under themselves with the planned bytes."""
    winners = frame.filter(pl.col("is_winner"))
    changed = 0
    for empresa in winners["empresa"].unique().to_list():
        part = winners.filter(pl.col("empresa") == empresa)
        keys_by_row: list[tuple[str, str, list[dict[str, str]], list[str]]] = []
        for day, radicado, sgc, hash_reg, files in part.select(
            "partition_date", "numero_radicado", "numero_reclamo_sgc", "hash_registro", "files"
        ).iter_rows():
            keys_by_row.append(
                (
                    radicado,
                    hash_reg,
                    [dict(f) for f in files],
                    [object_key(layout, base_path, empresa, day, sgc or radicado, f["filename"]) for f in files],
                )
            )
        pairs = [(k, f["sha256"]) for _, _, fs, ks in keys_by_row for f, k in zip(fs, ks, strict=True)]
        current = {p: p[0] for p in pairs if p[0] in settled}
        current |= current_keys(conn, store.bucket, [p for p in pairs if p[0] not in settled])
        for i, (radicado, hash_reg, files, keys) in enumerate(keys_by_row):
            keys = [current[(k, f["sha256"])] for f, k in zip(files, keys, strict=True)]
            entries = [
                {"file_type": f["file_type"], "filename": f["filename"], "s3_url": store.url(k), "sha256": f["sha256"]}
                for f, k in zip(files, keys, strict=True)
            ]
            keys_by_row[i] = (radicado, hash_reg, entries, keys)
        done: tuple[str, str | None] = (DONE_STATUSES[0], None)
        status = {k: done for row in keys_by_row for k in row[3] if k in settled}
        status |= registry_status(conn, store.bucket, [k for row in keys_by_row for k in row[3] if k not in settled])
        params = []
        for radicado, hash_reg, entries, keys in keys_by_row:
            ok = all(status.get(k, ("", None))[0] in DONE_STATUSES for k in keys)
            present = [e for e, k in zip(entries, keys, strict=True) if status.get(k, ("", None))[0] in DONE_STATUSES]
            params.append((radicado, hash_reg, orjson.dumps(present).decode(), ok))
        if not params:
            continue
        with conn.transaction():
            cur = conn.execute(
                f"""UPDATE {SCHEMA}.{table_name(empresa)} t
                    SET archivos_s3_urls = v.urls::jsonb, procesado_flag = v.ok, updated_at = now()
                    FROM unnest(%b::text[], %b::text[], %b::text[], %b::bool[]) AS v(numero_radicado, hash, urls, ok)
                    WHERE t.numero_radicado = v.numero_radicado AND t.hash_registro = v.hash
                      AND (t.archivos_s3_urls IS DISTINCT FROM v.urls::jsonb OR t.procesado_flag IS DISTINCT FROM v.ok)""",
                ([p[0] for p in params], [p[1] for p in params], [p[2] for p in params], [p[3] for p in params]),
            )
            changed += cur.rowcount
    return changed


def pending_partitions(conn: psycopg.Connection) -> list[tuple[str, dt.date]]:
    """(empresa, partition date) of registry rows still ``pending`` or in ``error``."""
    rows = conn.execute(
        f"""SELECT DISTINCT empresa, (metadata->>'partition_date')::date FROM {SCHEMA}.s3_files_registry
            WHERE upload_status IN ('pending', 'error') AND metadata ? 'partition_date'"""
    ).fetchall()
    return [(e, d) for e, d in rows]


def errors_summary(outcomes: Iterable[Outcome]) -> list[str]:
    """Distinct error reasons (keys carry no personal data; reasons never do)."""
    return sorted({o.error for o in outcomes if o.error})
