"""Standalone asset checks: they read PostgreSQL and the bucket themselves and run without
materializing anything (``integrity_checks_job``, ``reconciliation_checks_job``).

- Table-wide (unpartitioned, on ``pqr_table`` / ``pqr_s3_objects``): no duplicate
  ``numero_radicado`` or ``hash_registro``; no registry row without its table row (joined on
  (empresa, numero_radicado), never the SGC); history consistent with current rows; freshness
  of the last successful load (``ov_load_audit.finished_at``) against the Mon-Sat load windows
  in America/Bogota (CONTRACT §10).
- Reconciliation (partitioned by date x empresa, on ``pqr_s3_objects``): the registry against
  the bucket, and the table's rows against the registry. A range run reports one evaluation per
  partition, then a summary.

The unique indexes of ``sql/001_schema.sql`` make duplicates impossible in tables ov-assets
created; the duplicate check guards adopted old-shape tables that load without them.
Metadata carries counts, radicados, object keys and partitions: never personal data.
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import psycopg

from ov_assets import settings
from ov_assets.core.contract import BOGOTA, EMPRESAS
from ov_assets.defs.checks.partition import MAX_LISTED, Verdict, emit, listed_metadata, run_partitions
from ov_assets.defs.partitions import pqr_partitions
from ov_assets.defs.resources.object_store import ObjectStoreResource
from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.objects.stores import ObjectStore, verify_objects
from ov_assets.warehouse.loading import SCHEMA, table_name


def _md_table(header: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> str:
    if not rows:
        return "none"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"| ... {len(rows) - MAX_LISTED} more |" + " |" * (len(header) - 1))
    return "\n".join(lines)


def _result(v: Verdict, **extra: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=v.passed, metadata={**v.metadata, **extra}, severity=v.severity)


# --- table-wide: duplicates -------------------------------------------------------------------


def duplicate_keys(conn: psycopg.Connection) -> Verdict:
    """Duplicate numero_radicado or hash_registro in ``ov_afinia`` / ``ov_aire``."""
    found: list[tuple[str, str, str, int]] = []
    for empresa in EMPRESAS:
        table = f"{SCHEMA}.{table_name(empresa)}"
        for column in ("numero_radicado", "hash_registro"):
            rows = conn.execute(
                f"SELECT {column}, count(*) FROM {table} WHERE {column} IS NOT NULL "
                f"GROUP BY {column} HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT 1000"
            ).fetchall()
            found += [(empresa, column, k, n) for k, n in rows]
    # hash_registro is a digest, numero_radicado the PQR's number: neither is personal data.
    counts = {
        f"{e}_{c}_duplicates": sum(1 for f in found if f[0] == e and f[1] == c)
        for e in EMPRESAS
        for c in ("numero_radicado", "hash_registro")
    }
    return Verdict(
        not found,
        {
            **counts,
            **listed_metadata([f"{e}:{c}:{k}" for e, c, k, _ in found], "empresa:column:value"),
            "duplicates_table": dg.MetadataValue.md(_md_table(("empresa", "column", "value", "rows"), found)),
            "unique_indexes": dg.MetadataValue.json(_unique_indexes(conn)),
        },
    )


def _unique_indexes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s) "
        "AND indexdef ILIKE 'CREATE UNIQUE INDEX%%' ORDER BY 1",
        (SCHEMA, [table_name(e) for e in EMPRESAS]),
    ).fetchall()
    return [r[0] for r in rows]


# --- table-wide: registry rows without their table row ----------------------------------------


def orphan_registry_rows(conn: psycopg.Connection) -> Verdict:
    """Registry rows whose (empresa, numero_radicado) has no row in ``ov_{empresa}``.

    Rows adopted from the old system's registries whose PQR is not resolved yet (radicado NULL:
    ``warehouse.adoption`` keeps and reports them, and links them when their PQR is loaded) are
    no orphans of this pipeline: they are counted apart, as ``adopted_not_linked``."""
    found: list[tuple[str, str, str]] = []
    total = 0
    (adopted_not_linked,) = conn.execute(
        f"SELECT count(*) FROM {SCHEMA}.s3_files_registry WHERE numero_radicado IS NULL AND metadata ? 'adopted_from'"
    ).fetchone() or (0,)
    for empresa in EMPRESAS:
        table = f"{SCHEMA}.{table_name(empresa)}"
        row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.s3_files_registry WHERE empresa = %s", (empresa,)).fetchone()
        assert row is not None  # count(*) returns one row
        (n,) = row
        total += n
        rows = conn.execute(
            f"""SELECT r.numero_radicado, r.s3_key FROM {SCHEMA}.s3_files_registry r
                WHERE r.empresa = %s AND NOT (r.numero_radicado IS NULL AND r.metadata ? 'adopted_from')
                  AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.numero_radicado = r.numero_radicado)
                ORDER BY r.numero_radicado, r.s3_key LIMIT 1000""",
            (empresa,),
        ).fetchall()
        found += [(empresa, radicado, key) for radicado, key in rows]
    return Verdict(
        not found,
        {
            "registry_rows": total,
            "adopted_not_linked": adopted_not_linked,
            **listed_metadata([f"{e}:{r}" for e, r, _ in found], "empresa:numero_radicado"),
            "orphans_table": dg.MetadataValue.md(_md_table(("empresa", "numero_radicado", "s3_key"), found)),
        },
    )


# --- table-wide: history vs current ----------------------------------------------------------


def history_consistency(conn: psycopg.Connection) -> Verdict:
    """Every history radicado exists in the current table, and no history version is newer than
    the current one (adopted versions, ``archivo_origen`` NULL, are older than anything)."""
    found: list[tuple[str, str, str]] = []
    history_rows = 0
    for empresa in EMPRESAS:
        table = f"{SCHEMA}.{table_name(empresa)}"
        row = conn.execute(f"SELECT count(*) FROM {table}_history").fetchone()
        assert row is not None  # count(*) returns one row
        (n,) = row
        history_rows += n
        rows = conn.execute(
            f"""SELECT DISTINCT h.numero_radicado,
                       CASE WHEN t.numero_radicado IS NULL THEN 'no_current_row'
                            ELSE 'history_newer_than_current' END
                FROM {table}_history h LEFT JOIN {table} t USING (numero_radicado)
                WHERE t.numero_radicado IS NULL
                   OR (h.archivo_origen IS NOT NULL AND (
                        t.archivo_origen IS NULL OR t.fecha_extraccion IS NULL
                        OR (h.fecha_extraccion, h.archivo_origen COLLATE "C")
                           > (t.fecha_extraccion, t.archivo_origen COLLATE "C")))
                ORDER BY 1 LIMIT 1000"""
        ).fetchall()
        found += [(empresa, radicado, problem) for radicado, problem in rows]
    return Verdict(
        not found,
        {
            "history_rows": history_rows,
            "no_current_row": sum(1 for f in found if f[2] == "no_current_row"),
            "history_newer_than_current": sum(1 for f in found if f[2] == "history_newer_than_current"),
            **listed_metadata([f"{e}:{r}" for e, r, _ in found], "empresa:numero_radicado"),
            "problems_table": dg.MetadataValue.md(_md_table(("empresa", "numero_radicado", "problem"), found)),
        },
    )


# --- table-wide: freshness -------------------------------------------------------------------

# Loads are expected Mon-Sat (weekday 0-5) at 04:00 (bulk) and every 2 h until 22:00 (CONTRACT §10).
LOAD_SLOTS: tuple[dt.time, ...] = tuple(dt.time(h) for h in range(4, 23, 2))


def last_expected_load(now: dt.datetime, grace: dt.timedelta) -> dt.datetime:
    """The latest scheduled load (Bogotá, Mon-Sat slot) that should have finished by ``now``
    given ``grace`` for it to run."""
    local = now.astimezone(BOGOTA) - grace
    for back in range(8):
        day = local.date() - dt.timedelta(days=back)
        if day.weekday() == 6:
            continue
        for slot in reversed(LOAD_SLOTS):
            at = dt.datetime.combine(day, slot, tzinfo=BOGOTA)
            if at <= local:
                return at
    raise AssertionError("unreachable: a Mon-Sat slot exists in any week")


def freshness(last_finished: dict[str, dt.datetime | None], now: dt.datetime, grace: dt.timedelta) -> Verdict:
    """Each empresa's last successful load finished at or after the last expected load."""
    expected = last_expected_load(now, grace)
    stale = [e for e in EMPRESAS if (at := last_finished.get(e)) is None or at < expected]
    rows = [
        (
            e,
            at.astimezone(BOGOTA).strftime("%Y-%m-%d %H:%M") if (at := last_finished.get(e)) else "never",
            "stale" if e in stale else "ok",
        )
        for e in EMPRESAS
    ]
    return Verdict(
        not stale,
        {
            "expected_load_since": expected.strftime("%Y-%m-%d %H:%M %Z"),
            "grace_minutes": int(grace.total_seconds() // 60),
            **listed_metadata(stale, "empresa"),
            "last_loads": dg.MetadataValue.md(_md_table(("empresa", "last load (Bogotá)", "status"), rows)),
        },
    )


def last_loads(conn: psycopg.Connection) -> dict[str, dt.datetime | None]:
    rows = conn.execute(f"SELECT empresa, max(finished_at) FROM {SCHEMA}.ov_load_audit GROUP BY empresa").fetchall()
    return dict(rows)


# --- per-partition reconciliation -----------------------------------------------------------

DONE = ("uploaded", "pre_existing")


def registry_vs_bucket(
    conn: psycopg.Connection, store: ObjectStore, empresa: str, day: dt.date, workers: int = 1
) -> Verdict:
    """Every registry row of the partition that says stored is in the bucket with its size and
    SHA-256 (ERROR otherwise, ``workers`` requests at a time); rows still ``pending`` / ``error``
    make it a WARN (the hourly verification re-materializes those partitions)."""
    rows = conn.execute(
        f"""SELECT s3_key, file_size, file_hash, upload_status FROM {SCHEMA}.s3_files_registry
            WHERE s3_bucket = %s AND empresa = %s AND metadata->>'partition_date' = %s ORDER BY s3_key""",
        (store.bucket, empresa, day.isoformat()),
    ).fetchall()
    open_rows = [(s3_key, status) for s3_key, _, _, status in rows if status not in DONE]
    stored = [(s3_key, size, (sha or "").strip()) for s3_key, size, sha, status in rows if status in DONE]
    # Proof from S3's checksum or the bytes, never the sha256 metadata (multipart objects).
    answers = verify_objects(store, stored, workers)
    problems = [(key, problem) for (key, _, _), problem in zip(stored, answers, strict=True) if problem]
    severity = dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN
    listed = problems + open_rows
    return Verdict(
        not listed,
        {
            "registered": len(rows),
            "verified": len(rows) - len(open_rows) - len(problems),
            "mismatched": len(problems),
            "pending_or_error": len(open_rows),
            **listed_metadata([k for k, _ in listed], "s3_key"),
            "problems_table": dg.MetadataValue.md(_md_table(("s3_key", "problem"), listed)),
            "bucket": store.bucket,
        },
        severity,
    )


def table_vs_registry(conn: psycopg.Connection, bucket: str, empresa: str, day: dt.date) -> Verdict:
    """Every current row of the partition (``fecha`` on the day) loaded by ov-assets has its
    record JSON (``archivo_origen``) registered as stored, and every object its
    ``archivos_s3_urls`` lists is registered as stored with the same SHA-256. Joined on
    (empresa, numero_radicado) and the file name, never the SGC."""
    table = f"{SCHEMA}.{table_name(empresa)}"
    start = dt.datetime.combine(day, dt.time())
    rows = conn.execute(
        f"""SELECT t.numero_radicado, t.archivo_origen,
                   EXISTS (SELECT 1 FROM {SCHEMA}.s3_files_registry r
                           WHERE r.empresa = %s AND r.numero_radicado = t.numero_radicado
                             AND r.filename = t.archivo_origen AND r.s3_bucket = %s
                             AND r.upload_status IN ('uploaded', 'pre_existing')) AS json_ok,
                   (SELECT count(*) FROM jsonb_array_elements(t.archivos_s3_urls) u
                     WHERE NOT EXISTS (
                        SELECT 1 FROM {SCHEMA}.s3_files_registry r
                        WHERE r.empresa = %s AND r.numero_radicado = t.numero_radicado
                          AND r.s3_bucket = %s AND r.s3_url = u->>'s3_url'
                          AND r.file_hash = u->>'sha256'
                          AND r.upload_status IN ('uploaded', 'pre_existing'))) AS urls_bad
            FROM {table} t
            WHERE t.fecha >= %s AND t.fecha < %s AND t.archivo_origen IS NOT NULL
            ORDER BY t.numero_radicado""",
        (empresa, bucket, empresa, bucket, start, start + dt.timedelta(days=1)),
    ).fetchall()
    problems = [(r, "json_not_registered") for r, _, ok, _ in rows if not ok]
    problems += [(r, f"{n}_listed_urls_not_registered") for r, _, _, n in rows if n]
    return Verdict(
        not problems,
        {
            "table_rows": len(rows),
            **listed_metadata([r for r, _ in problems], "numero_radicado"),
            "problems_table": dg.MetadataValue.md(_md_table(("numero_radicado", "problem"), problems)),
        },
    )


# --- the checks ------------------------------------------------------------------------------


@dg.asset_check(
    asset="pqr_table",
    name="no_duplicate_keys",
    description="Table-wide: no duplicate numero_radicado or hash_registro in ov_afinia / "
    "ov_aire. The unique indexes forbid them in tables ov-assets created; this "
    "guards adopted old-shape tables loaded without them.",
)
def no_duplicate_keys(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        return _result(duplicate_keys(conn))


@dg.asset_check(
    asset="pqr_s3_objects",
    name="no_orphan_registry_rows",
    description="Table-wide: every s3_files_registry row has its table row, joined on "
    "(empresa, numero_radicado), never the SGC.",
)
def no_orphan_registry_rows(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        return _result(orphan_registry_rows(conn))


@dg.asset_check(
    asset="pqr_table",
    name="history_consistent",
    description="Table-wide: every history radicado exists in the current table and no "
    "history version is newer than the current row.",
)
def history_consistent(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        return _result(history_consistency(conn))


@dg.asset_check(
    asset="pqr_table",
    name="load_freshness",
    description="Table-wide: each empresa's last successful load (ov_load_audit.finished_at) "
    "is no older than the last expected Mon-Sat load (04:00-22:00 every 2 h, "
    "America/Bogota), allowing OV_FRESHNESS_GRACE_MINUTES (default 60).",
)
def load_freshness(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        loads = last_loads(conn)
    return _result(freshness(loads, dt.datetime.now(dt.UTC), settings.freshness_grace()))


def _reconciliation_spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset="pqr_s3_objects", description=description, partitions_def=pqr_partitions)


@dg.multi_asset_check(
    specs=[
        _reconciliation_spec(
            "registry_matches_bucket",
            "Standalone reconciliation per partition: every registry row marked uploaded/pre_existing is "
            "in the bucket with the registered size and SHA-256 (ERROR); rows still pending/error WARN. "
            "Evaluated by the hourly checks-only runs, not in a run that materializes pqr_s3_objects "
            "(there objects_match_bucket re-reads what the run stored).",
        )
    ],
    can_subset=True,  # (so that a materializing run may leave it unevaluated)
)
def registry_matches_bucket(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, object_store: ObjectStoreResource
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    if context.op_execution_context.job_def.graph.has_node_named("pqr_s3_objects"):
        # A run that stores objects (``pqr_records*`` selects this check too): re-reading every
        # object of its partitions would make a rerun with nothing new cost a request per object.
        context.log.info("registry_matches_bucket: left to the hourly reconciliation run")
        return
    store = object_store.open()
    with postgres.connect() as conn:
        verdicts = {
            (d, e): registry_vs_bucket(conn, store, e, d, object_store.max_workers) for d, e in run_partitions(context)
        }
    yield from emit(context, "pqr_s3_objects", "registry_matches_bucket", verdicts)


@dg.multi_asset_check(
    specs=[
        _reconciliation_spec(
            "table_rows_registered",
            "Standalone reconciliation per partition: every table row of the day loaded by ov-assets has "
            "its record JSON and every listed object (archivos_s3_urls) registered as stored.",
        )
    ]
)
def table_rows_registered(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, object_store: ObjectStoreResource
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    store = object_store.open()
    with postgres.connect() as conn:
        verdicts = {(d, e): table_vs_registry(conn, store.bucket, e, d) for d, e in run_partitions(context)}
    yield from emit(context, "pqr_s3_objects", "table_rows_registered", verdicts)


def partition_tags(partition_key: str) -> dict[str, str]:
    """Run tags that run ``reconciliation_checks_job`` for one partition (``2025-10-08|afinia``).

    Dagster 1.13 drops the partitions definition of a job that selects checks only (it infers it
    from executable assets, and there are none), so ``partition_key=`` is refused for it: launch
    with these tags instead (``RunRequest(tags=...)``, the launchpad's tags)."""
    day, empresa = partition_key.split("|")
    return {"dagster/partition": partition_key, "dagster/partition/date": day, "dagster/partition/empresa": empresa}


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags for a range of partitions in one run (one evaluation per partition, then a
    summary). Multi-partition ranges run date-major: ``2025-10-01|afinia`` .. ``2025-10-07|aire``."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


tablewide_checks = [no_duplicate_keys, no_orphan_registry_rows, history_consistent, load_freshness]
reconciliation_checks = [registry_matches_bucket, table_rows_registered]
all_checks = [*tablewide_checks, *reconciliation_checks]
