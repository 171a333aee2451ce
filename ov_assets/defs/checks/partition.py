"""Per-partition asset checks run with their asset (declared as ``check_specs``), so they are
computed for exactly the partitions a run materializes.

The checks of ``pqr_table`` and ``pqr_s3_objects`` re-read PostgreSQL and the bucket: none
trusts a value computed in the step it checks. In a range run one result per partition is
reported (``AssetCheckEvaluation(partition=...)``), then one summary; a blocking failure in a
range run holds the downstream step for the whole range (backfill chunks are kept small).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from ov_assets import settings
from ov_assets.core.contract import BUSINESS_FIELDS, REQUIRED_FIELDS, hash_registro
from ov_assets.defs.partitions import partition_key, pqr_partitions
from ov_assets.defs.resources.object_store import ObjectStoreResource
from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.objects import archive, registry_keys
from ov_assets.objects.stores import ObjectStore, verify_objects
from ov_assets.warehouse.loading import SCHEMA, table_name

MAX_LISTED = 20


def _spec(name: str, asset: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name, asset=asset, description=description, blocking=blocking, partitions_def=pqr_partitions
    )


RECORDS_CHECK_SPECS = [
    _spec("no_duplicate_winners", "pqr_records", "Exactly one winning version per numero_radicado."),
    _spec("required_fields_present", "pqr_records", "Every winner has numero_radicado, fecha and estado_solicitud."),
    _spec(
        "reject_rate",
        "pqr_records",
        "Share of rejected record files below OV_REJECT_RATE_WARN (default 0.2); WARN above it.",
    ),
    _spec(
        "hash_registro_recomputes",
        "pqr_records",
        "hash_registro of every valid version equals SHA-256 of its canonical values (CONTRACT §4).",
    ),
]
TABLE_CHECK_SPECS = [
    _spec(
        "winners_in_table",
        "pqr_table",
        "Re-reads PostgreSQL: every winner of the partition is in the table with the same hash, "
        "or a newer extraction of it is. Blocking: a failure stops pqr_s3_objects (for the whole "
        "range in a range run).",
        blocking=True,
    ),
    _spec(
        "no_older_replacement",
        "pqr_table",
        "Re-reads PostgreSQL: no row of the partition was replaced by an older extraction "
        "(history vs current). Blocking, as above.",
        blocking=True,
    ),
]
S3_CHECK_SPECS = [
    _spec(
        "objects_registered",
        "pqr_s3_objects",
        "Every valid version's JSON, PDF and attachments are registered uploaded or pre_existing.",
    ),
    _spec(
        "objects_match_bucket",
        "pqr_s3_objects",
        "Re-reads the bucket: every object the run registered exists with the registered size and SHA-256 "
        "(the run's own writes, whose SHA-256 S3's answer proved, by a listing showing that write's ETag "
        "and size; any other by S3's checksum or its bytes. Objects registered stored with the same "
        "SHA-256 before the run are trusted; the hourly registry_matches_bucket re-reads them all).",
    ),
]


# Asset and check metadata: any value Dagster accepts (numbers, text, ``dg.MetadataValue``...);
# Dagster's own name for that union is not public.
Metadata = dict[str, Any]


@dataclass
class Verdict:
    """The outcome of one check for one partition."""

    passed: bool
    metadata: Metadata = field(default_factory=dict)
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def listed_metadata(values: list[str], label: str = "key") -> Metadata:
    """Dashboard metadata for failing keys (radicados, file names, object keys: never personal
    data): the count, the first ``MAX_LISTED`` as JSON and as a short markdown table."""
    shown = sorted(set(values))[:MAX_LISTED]
    table = (
        "none"
        if not shown
        else "\n".join(
            [f"| {label} |", "|---|", *(f"| `{v}` |" for v in shown)]
            + ([f"| ... {len(set(values)) - len(shown)} more |"] if len(set(values)) > len(shown) else [])
        )
    )
    return {
        "failing_count": len(set(values)),
        "failing": dg.MetadataValue.json(shown),
        "failing_table": dg.MetadataValue.md(table),
    }


def _summary_severity(verdicts: dict[tuple[dt.date, str], Verdict]) -> dg.AssetCheckSeverity:
    failing = [v for v in verdicts.values() if not v.passed]
    if failing and all(v.severity == dg.AssetCheckSeverity.WARN for v in failing):
        return dg.AssetCheckSeverity.WARN
    return dg.AssetCheckSeverity.ERROR


def emit(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    asset: str,
    name: str,
    verdicts: dict[tuple[dt.date, str], Verdict],
    blocking: bool = False,
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """One result per partition; in a range run per-partition evaluations and a summary."""
    if context.has_partition_key and len(verdicts) == 1:
        v = next(iter(verdicts.values()))
        yield dg.AssetCheckResult(
            asset_key=asset, check_name=name, passed=v.passed, metadata=v.metadata, severity=v.severity
        )
        return
    for (day, empresa), v in verdicts.items():
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(asset),
            check_name=name,
            passed=v.passed,
            metadata=v.metadata,
            severity=v.severity,
            blocking=blocking,
            partition=str(partition_key(day, empresa)),
        )
    failing = [f"{d}|{e}" for (d, e), v in verdicts.items() if not v.passed]
    # The run's summary (partition None). For a blocking check a failing summary holds the
    # downstream step for the whole range: that is why backfill chunks are small.
    yield dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=not failing,
        severity=_summary_severity(verdicts),
        metadata={"partitions": len(verdicts), **listed_metadata(failing, "partition")},
    )


def _by_partition(
    frame: pl.DataFrame, partitions: list[tuple[dt.date, str]], fn: Callable[[pl.DataFrame], Verdict]
) -> dict[tuple[dt.date, str], Verdict]:
    return {
        (day, empresa): fn(frame.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa)))
        for day, empresa in partitions
    }


def _part(frame: pl.DataFrame, day: dt.date, empresa: str) -> pl.DataFrame:
    return frame.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa))


def run_partitions(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[tuple[dt.date, str]]:
    """The (day, empresa) partitions of the run a check runs in, sorted: what a check of a
    partition range checks (shared with the table-wide checks)."""
    from ov_assets.defs.partitions import parse_partition_key

    return sorted(parse_partition_key(k) for k in context.partition_keys)


# --- pqr_records ----------------------------------------------------------------------------


def no_duplicate_winners(part: pl.DataFrame) -> Verdict:
    """Recomputed here, not trusted from the marking: every numero_radicado with a valid version
    has exactly one winner, it is valid, and it is the latest (extraction time, then file name)."""
    valid = part.filter(pl.col("status") == "valid")
    expected: dict[str, tuple] = {}
    for radicado, extracted, name in valid.select("numero_radicado", "fecha_extraccion", "file_name").iter_rows():
        cand = (extracted is not None, extracted or dt.datetime.min, name)
        if radicado not in expected or cand > expected[radicado]:
            expected[radicado] = cand
    winners = part.filter(pl.col("is_winner")).select("numero_radicado", "file_name", "status")
    per_radicado: dict[str, list[tuple[str, str]]] = {}
    for radicado, name, status in winners.iter_rows():
        per_radicado.setdefault(radicado or "(none)", []).append((name, status))
    bad = [
        r
        for r, ws in per_radicado.items()
        if len(ws) > 1 or ws[0][1] != "valid" or r not in expected or ws[0][0] != expected[r][2]
    ]
    bad += [r for r in expected if r not in per_radicado]
    return Verdict(
        not bad, {"radicados": len(expected), "winners": winners.height, **listed_metadata(bad, "numero_radicado")}
    )


def required_fields_present(part: pl.DataFrame) -> Verdict:
    winners = part.filter(pl.col("is_winner"))
    missing = winners.filter(
        pl.any_horizontal([pl.col(f).is_null() | (pl.col(f).str.strip_chars() == "") for f in REQUIRED_FIELDS])
    )
    return Verdict(
        missing.is_empty(), {"winners": winners.height, **listed_metadata(missing["file_name"].to_list(), "file")}
    )


def reject_rate(part: pl.DataFrame) -> Verdict:
    threshold = settings.reject_rate_warn()
    rejected = int((part["status"] == "rejected").sum())
    rate = rejected / part.height if part.height else 0.0
    return Verdict(
        rate <= threshold,
        {"rejected": rejected, "files": part.height, "rate": round(rate, 4), "threshold": threshold},
        dg.AssetCheckSeverity.WARN,
    )


def hash_recomputes(part: pl.DataFrame) -> Verdict:
    n = len(BUSINESS_FIELDS)
    valid = part.filter(pl.col("status") == "valid").select(*BUSINESS_FIELDS, "hash_registro", "file_name")
    bad = [
        row[n + 1]
        for row in valid.iter_rows()
        if hash_registro(dict(zip(BUSINESS_FIELDS, row[:n], strict=True))) != row[n]
    ]
    return Verdict(not bad, {"valid_versions": int((part["status"] == "valid").sum()), **listed_metadata(bad, "file")})


def records_checks(
    context: dg.AssetExecutionContext, frame: pl.DataFrame
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    parts = run_partitions(context)
    for name, fn in (
        ("no_duplicate_winners", no_duplicate_winners),
        ("required_fields_present", required_fields_present),
        ("reject_rate", reject_rate),
        ("hash_registro_recomputes", hash_recomputes),
    ):
        yield from emit(context, "pqr_records", name, _by_partition(frame, parts, fn))


# --- pqr_table ------------------------------------------------------------------------------


def winners_in_table(conn: psycopg.Connection, empresa: str, part: pl.DataFrame, day: dt.date | None = None) -> Verdict:
    """Every winner is stored with its hash; a different stored version is accepted only when
    it is a newer extraction (CONTRACT §4: a stored row is never replaced by an older one, so
    the table rightly keeps it, e.g. when the newer version's files were already cleaned up
    from the landing folder or its ``fecha`` moved to another day)."""
    winners = part.filter(pl.col("is_winner")).select(
        "numero_radicado", "hash_registro", "fecha_extraccion", "file_name"
    )
    rows = conn.execute(
        f"SELECT numero_radicado, hash_registro, fecha_extraccion, archivo_origen, fecha::date "
        f"FROM {SCHEMA}.{table_name(empresa)} WHERE numero_radicado = ANY(%s)",
        (winners["numero_radicado"].to_list(),),
    ).fetchall()
    stored = {r[0]: r[1:] for r in rows}
    missing, different = [], []
    for radicado, hash_reg, extracted, name in winners.iter_rows():
        got = stored.get(radicado)
        if got is None:
            missing.append(radicado)
            continue
        if got[0] == hash_reg:
            continue
        newer_elsewhere = (
            got[1] is not None and got[2] is not None and extracted is not None and (got[1], got[2]) > (extracted, name)
        )
        if not newer_elsewhere:
            different.append(radicado)
    bad = missing + different
    return Verdict(
        not bad,
        {
            "winners": winners.height,
            "missing": len(missing),
            "hash_differs": len(different),
            **listed_metadata(bad, "numero_radicado"),
        },
    )


def no_older_replacement(conn: psycopg.Connection, empresa: str, part: pl.DataFrame) -> Verdict:
    """No history row (a replaced version) is newer than the current row that replaced it;
    adopted rows (``archivo_origen`` NULL) are older than anything ov-assets loads."""
    table = f"{SCHEMA}.{table_name(empresa)}"
    radicados = part.filter(pl.col("status") == "valid")["numero_radicado"].unique().to_list()
    rows = conn.execute(
        f"""SELECT DISTINCT t.numero_radicado FROM {table} t JOIN {table}_history h USING (numero_radicado)
            WHERE t.numero_radicado = ANY(%s) AND h.archivo_origen IS NOT NULL
              AND (t.archivo_origen IS NULL OR t.fecha_extraccion IS NULL
                   OR (h.fecha_extraccion, h.archivo_origen COLLATE "C") > (t.fecha_extraccion, t.archivo_origen COLLATE "C"))""",
        (radicados,),
    ).fetchall()
    bad = [r[0] for r in rows]
    return Verdict(not bad, {"radicados": len(radicados), **listed_metadata(bad, "numero_radicado")})


def table_checks(
    context: dg.AssetExecutionContext, postgres: PostgresResource, frame: pl.DataFrame, names: Collection[str]
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """The blocking checks of ``pqr_table`` among ``names`` (those the run selected)."""
    parts = run_partitions(context)
    with postgres.connect() as conn:
        for name, fn in (("winners_in_table", winners_in_table), ("no_older_replacement", no_older_replacement)):
            if name not in names:
                continue
            verdicts = {
                (day, empresa): (
                    fn(conn, empresa, _part(frame, day, empresa), day)
                    if fn is winners_in_table
                    else fn(conn, empresa, _part(frame, day, empresa))
                )
                for day, empresa in parts
            }
            yield from emit(context, "pqr_table", name, verdicts, blocking=True)


# --- pqr_s3_objects -------------------------------------------------------------------------


def objects_registered(conn: psycopg.Connection, bucket: str, planned: list[archive.PlannedObject]) -> Verdict:
    """Every planned file's bytes registered stored (under their own key when a replaced
    landing file made them a new version, ``registry_keys.current_keys``)."""
    keys = registry_keys.current_keys(conn, bucket, [(o.key, o.sha256) for o in planned])
    planned_keys = [(keys[(o.key, o.sha256)], o.sha256) for o in planned]
    status = registry_keys.registry_status(conn, bucket, [k for k, _ in planned_keys])
    bad = [
        k
        for k, sha in planned_keys
        if status.get(k, ("", None))[0] not in registry_keys.DONE_STATUSES or status[k][1] != sha
    ]
    return Verdict(not bad, {"objects": len(planned), **listed_metadata(bad, "s3_key")})


def objects_match_bucket(
    conn: psycopg.Connection,
    store: ObjectStore,
    empresa: str,
    day: dt.date,
    worked: set[str] | None = None,
    workers: int = 1,
) -> Verdict:
    """Re-reads the bucket for the registered objects of the partition; with ``worked`` (the
    keys the run's step wrote a registry row for), only those: the others were registered
    stored with the same SHA-256 before the run and are trusted (``trusted`` in the metadata),
    so a rerun with nothing new costs no request per object. The run's own writes are found in
    a listing when the store can (``still_as_written``); the rest are read, ``workers`` at a
    time. ``registry_matches_bucket``, the hourly reconciliation, re-reads every row."""
    rows = conn.execute(
        f"""SELECT s3_key, file_size, file_hash FROM {SCHEMA}.s3_files_registry
            WHERE s3_bucket = %s AND empresa = %s AND metadata->>'partition_date' = %s
              AND upload_status IN ('uploaded', 'pre_existing')""",
        (store.bucket, empresa, day.isoformat()),
    ).fetchall()
    checked = rows if worked is None else [r for r in rows if r[0] in worked]
    # This run's writes of the registered size and SHA-256 (S3's answer proved it), listed with
    # that write's ETag and size: that write. Every other object: S3's checksum or the bytes,
    # never the sha256 metadata (multipart objects).
    registered = [(key, size, (sha or "").strip()) for key, size, sha in checked]
    listed = store.still_as_written(registered)
    read = [row for row in registered if row[0] not in listed]
    problems = verify_objects(store, read, workers)
    bad = [key for (key, _, _), problem in zip(read, problems, strict=True) if problem]
    return Verdict(
        not bad,
        {
            "registered": len(rows),
            "verified": len(checked),
            "verified_by_listing": len(listed),
            "trusted": len(rows) - len(checked),
            **listed_metadata(bad, "s3_key"),
        },
    )


def s3_checks(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    store: ObjectStore,
    frame: pl.DataFrame,
    object_store: ObjectStoreResource,
    worked: set[str] | None = None,
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """``worked``: the keys the step wrote registry rows for (the only ones re-read in the
    bucket); None re-reads every registered object of the partitions."""
    from pathlib import Path

    parts = run_partitions(context)
    root = Path(object_store.data_dir).resolve()
    with postgres.connect() as conn:
        registered = {}
        in_bucket = {}
        for day, empresa in parts:
            part = frame.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa))
            planned = archive.plan_objects(part, root, object_store.layout, object_store.base_path)
            registered[(day, empresa)] = objects_registered(conn, store.bucket, planned)
            in_bucket[(day, empresa)] = objects_match_bucket(
                conn, store, empresa, day, worked, object_store.max_workers
            )
    yield from emit(context, "pqr_s3_objects", "objects_registered", registered)
    yield from emit(context, "pqr_s3_objects", "objects_match_bucket", in_bucket)
