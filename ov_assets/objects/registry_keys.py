"""Which key a landing file's bytes live under: the registry's view of planned keys, versions of
a replaced file (``versioned_key``) and objects adopted from the old system's registries
(CONTRACT §6-§7). Read-only queries; ``archive`` writes."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from ov_assets.warehouse.loading import SCHEMA

DONE_STATUSES = ("uploaded", "pre_existing")


def versioned_name(filename: str, sha256: str) -> str:
    """``{stem}~{16 hex of sha256}{.ext}``: the name other bytes of a taken name are stored under."""
    stem, dot, ext = filename.rpartition(".")
    if not stem:  # no extension (or a dot file)
        return f"{filename}~{sha256[:16]}"
    return f"{stem}~{sha256[:16]}{dot}{ext}"


def versioned_key(key: str, sha256: str) -> str:
    folder, _, name = key.rpartition("/")
    return f"{folder}/{versioned_name(name, sha256)}" if folder else versioned_name(name, sha256)


def current_keys(conn: psycopg.Connection, bucket: str, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(planned key, sha256) -> the key these bytes live (or will live) under: the planned key,
    unless its registry row describes other bytes that are stored (or a version of these bytes
    is registered already), then ``versioned_key``. A row of other bytes never confirmed stored
    (``pending``/``error``) gives its key to the new bytes."""
    pairs = list(pairs)
    known = registry_status(conn, bucket, sorted({k for k, _ in pairs} | {versioned_key(k, s) for k, s in pairs}))
    adopted = adopted_keys(conn, bucket, [(k, s) for k, s in pairs if known.get(k, (None, None))[1] != s])
    out = {}
    for key, sha in pairs:
        status, file_hash = known.get(key, (None, None))
        if (status is None or (status in DONE_STATUSES and file_hash != sha)) and (key, sha) in adopted:
            out[(key, sha)] = adopted[(key, sha)]  # stored by the old system already
        elif status is None or file_hash == sha:
            out[(key, sha)] = key
        elif status in DONE_STATUSES or versioned_key(key, sha) in known:
            out[(key, sha)] = versioned_key(key, sha)
        else:
            out[(key, sha)] = key
    return out


def adopted_keys(conn: psycopg.Connection, bucket: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(planned key, sha256) -> the key of an adopted object of ``bucket`` stored with the same
    file name and SHA-256 (the oldest such row), for the pairs that have one."""
    if not pairs:
        return {}
    rows = conn.execute(
        f"""SELECT DISTINCT ON (filename, file_hash) filename, file_hash, s3_key FROM {SCHEMA}.s3_files_registry
            WHERE metadata ? 'adopted_from' AND file_hash = ANY(%s) AND filename = ANY(%s)
              AND s3_bucket = %s AND upload_status = ANY(%s)
            ORDER BY filename, file_hash, id""",
        (sorted({s for _, s in pairs}), sorted({k.rpartition("/")[2] for k, _ in pairs}), bucket, list(DONE_STATUSES)),
    ).fetchall()
    found = {(name, str(h).strip()): key for name, h, key in rows}
    return {(k, s): found[(k.rpartition("/")[2], s)] for k, s in pairs if (k.rpartition("/")[2], s) in found}


def registry_status(conn: psycopg.Connection, bucket: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    # %b: tens of thousands of keys go as a binary array (psycopg's text array dump is ~20x slower)
    rows = conn.execute(
        f"SELECT s3_key, upload_status, file_hash FROM {SCHEMA}.s3_files_registry "
        "WHERE s3_bucket = %s AND s3_key = ANY(%b)",
        (bucket, keys),
    ).fetchall()
    return {k: (s, h) for k, s, h in rows}


def settled_keys(conn: psycopg.Connection, bucket: str, pairs: list[tuple[str, str]]) -> set[str]:
    """The planned keys whose registry row already describes these bytes as stored: status
    ``uploaded``/``pre_existing``, the same SHA-256, and not an adopted row still waiting for its
    radicado (``archive.link_adopted``). Nothing is left to do for them (their key is their
    current key, ``current_keys``): a rerun with nothing new stops at this one query."""
    rows = conn.execute(
        f"""SELECT r.s3_key FROM {SCHEMA}.s3_files_registry r
            JOIN unnest(%b::text[], %b::text[]) AS v(s3_key, file_hash) ON r.s3_key = v.s3_key
            WHERE r.s3_bucket = %s AND r.upload_status = ANY(%s) AND btrim(r.file_hash) = v.file_hash
              AND NOT (r.metadata ? 'adopted_from' AND r.numero_radicado IS NULL)""",
        ([k for k, _ in pairs], [h for _, h in pairs], bucket, list(DONE_STATUSES)),
    ).fetchall()
    return {k for (k,) in rows}
