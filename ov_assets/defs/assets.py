"""The assets: landing files -> validated records -> PostgreSQL (and its quality per day) -> object storage.

Thin by design: each wires resources to the pure modules (``landing_index``, ``records``,
``loading``, ``archive``) and reports what happened. Every asset handles one partition or a
range of them (backfills run ranges in one run), and is idempotent (CONTRACT §6).
Metadata carries counts and codes only, never personal data.
"""

import dataclasses
import datetime as dt
import inspect
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from ov_assets.core import dictionary
from ov_assets.core.checkpoints import checkpoint
from ov_assets.core.contract import today_bogota
from ov_assets.core.records import empty_frame
from ov_assets.defs.checks import near_duplicates as near_dup_check
from ov_assets.defs.checks import partition as checks_logic
from ov_assets.defs.metadata import counts_table, quality_metadata
from ov_assets.defs.partitions import parse_partition_key, partition_key, pqr_partitions
from ov_assets.defs.resources import LandingResource, ObjectStoreResource, PortalResource, PostgresResource
from ov_assets.landing.index import partition_frame
from ov_assets.objects import archive
from ov_assets.reports.consolidated import cleaned_days, refuse_unavailable_landing, write_consolidated
from ov_assets.warehouse import loading, quality

if TYPE_CHECKING:  # the scraper (and Playwright) load in the step that extracts, not with the definitions
    from ov_assets.portal.scraper import ScrapeResult

GROUP = "oficina_virtual"
OWNERS = ["team:data-engineering"]
# Ranges are cut into runs of at most a week of one or both empresas: a year of backfill is
# ~50 runs, not 730, and a bad partition holds up at most its own chunk.
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=14)


def _partitions(context: dg.AssetExecutionContext) -> list[tuple[dt.date, str]]:
    return sorted(parse_partition_key(k) for k in context.partition_keys)


def column_schema(columns: Iterable[tuple[str, str, str | None]]) -> dg.TableSchema:
    """(name, type, description) per column -> the UI's column schema; the descriptions come
    from the data dictionary (core/dictionary.py), as do the database's comments."""
    return dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns])


RECORDS_SCHEMA = column_schema(dictionary.FRAME_COLUMNS)
TABLE_SCHEMA = column_schema((c.name, c.type, c.description) for c in dictionary.relation("ov_afinia").columns)
QUALITY_SCHEMA = column_schema((c.name, c.type, c.description) for c in dictionary.relation("ov_quality_daily").columns)
_FRAME_DESCRIPTIONS = {name: description for name, _, description in dictionary.FRAME_COLUMNS}


RAW_CHECK_SPECS = [
    dg.AssetCheckSpec(
        "portal_yielded_pqrs",
        asset="raw_pqr_files",
        partitions_def=pqr_partitions,
        description="WARN when a Monday-Saturday extraction lists zero PQRs for an empresa: the "
        "portal usually changed (selectors, login, filters) rather than nobody filing.",
    )
]


@dg.asset(
    partitions_def=pqr_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"playwright", "file"},
    backfill_policy=BACKFILL,
    pool="ov_portal",
    check_specs=RAW_CHECK_SPECS,
)
def raw_pqr_files(
    context: dg.AssetExecutionContext,
    landing: LandingResource,
    portal: PortalResource,
    postgres: PostgresResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """The partition's files in the landing folder (JSON records, PDFs, attachments), extracted
    from the empresa's Oficina Virtual for that day (CONTRACT §9), or the local replica portal
    when none is configured.

    Grain: one landing file. Idempotent: a PQR whose hash_registro equals its latest version in
    the landing folder or the table is never written again, so a rerun stores nothing new.
    With ``portal.extract`` off it only indexes what is already in the landing folder.
    """
    from ov_assets.portal.scraper import describe_failures, scrape_day

    index = landing.index()
    today = today_bogota()
    parts = _partitions(context)
    results: dict[tuple[dt.date, str], ScrapeResult] = {}
    if portal.extract:
        with portal.scraper_configs(sorted({e for _, e in parts}), postgres) as config_for:
            for day, empresa in parts:
                index.refresh(empresa, today)
                known = index.latest_hashes(empresa, [day], today) | _table_hashes(postgres, empresa, day)
                result = scrape_day(
                    config_for(empresa),
                    day,
                    landing.root_for(empresa),
                    known_hashes=known,
                    artifacts_dir=portal.artifacts_dir,
                )
                results[(day, empresa)] = result
                context.log.info(
                    f"{empresa} {day}: listed {result.listed} of {result.listed_total} over "
                    f"{result.pages_walked} pages; {result.written} written, {result.unchanged} unchanged, "
                    f"{result.failed} failed"
                )
    records = linked = 0
    for empresa in sorted({e for _, e in parts}):
        index.refresh(empresa, today)
    for day, empresa in parts:
        entries = index.record_files(empresa, day)
        records += len(entries)
        linked += sum(len(v) for v in index.linked_files(empresa, entries).values())
    failed = [r for r in results.values() if r.failed]
    if failed:
        # What was extracted stays in the landing folder (the landing sensor loads it); the run
        # fails so a person looks at the screenshots and traces named here.
        raise dg.Failure(
            description=describe_failures(failed),
            metadata={
                "radicados_failed": dg.MetadataValue.json(sorted(x for r in failed for x in r.radicados_failed)),
                "failure_artifacts": dg.MetadataValue.json(sorted(x for r in failed for x in r.failure_artifacts)),
            },
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": records + linked,
            "record_files": records,
            "linked_files": linked,
            "extraction": "portal" if portal.extract else "disabled (landing folder only)",
            "pqrs_listed": sum(r.listed for r in results.values()),
            "pqrs_written": sum(r.written for r in results.values()),
            "pqrs_unchanged": sum(r.unchanged for r in results.values()),
        }
    )
    verdicts = {}
    for day, empresa in parts:
        scraped = results.get((day, empresa))
        if scraped is None:
            verdicts[(day, empresa)] = checks_logic.Verdict(True, {"extraction": "not run"}, dg.AssetCheckSeverity.WARN)
        else:
            silent = day.weekday() < 6 and scraped.listed_total == 0
            verdicts[(day, empresa)] = checks_logic.Verdict(
                not silent,
                {"listed_total": scraped.listed_total, "weekday": day.strftime("%A")},
                dg.AssetCheckSeverity.WARN,
            )
    yield from checks_logic.emit(context, "raw_pqr_files", "portal_yielded_pqrs", verdicts)


def _table_hashes(postgres: PostgresResource, empresa: str, day: dt.date) -> set[str]:
    """hash_registro of the PQRs of ``day`` already in the table (files may be cleaned up)."""
    with postgres.connect() as conn:
        rows = conn.execute(
            f"SELECT hash_registro FROM {loading.SCHEMA}.{loading.table_name(empresa)} "
            "WHERE fecha >= %s AND fecha < %s AND hash_registro IS NOT NULL",
            (day, day + dt.timedelta(days=1)),
        ).fetchall()
    return {h for (h,) in rows}


@dg.asset(
    partitions_def=pqr_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "polars"},
    deps=[raw_pqr_files],
    io_manager_key="frames_io_manager",
    backfill_policy=BACKFILL,
    check_specs=checks_logic.RECORDS_CHECK_SPECS,
    metadata={"dagster/column_schema": RECORDS_SCHEMA},
)
def pqr_records(
    context: dg.AssetExecutionContext, landing: LandingResource, postgres: PostgresResource
) -> Iterator[dg.Output | dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """Every record file of the partition decoded, validated and hashed (CONTRACT §4), with
    its PDF and attachments linked and the winning version per numero_radicado marked.

    Grain: one record file (valid version or reject). Writes the consolidated CSV/Parquet of
    the winners per partition. Idempotent: a pure function of the landing files.
    """
    index = landing.index()
    today = today_bogota()
    parts = _partitions(context)
    days_of = {e: [d for d, x in parts if x == e] for _, e in parts}
    with postgres.connect() as conn:  # partitions the cleanup took files from: reports merged
        cleaned = {e: cleaned_days(conn, e, days) for e, days in days_of.items()}
    for empresa, days in sorted(days_of.items()):  # one listing per empresa, not per partition
        index.refresh(empresa, today)  # (refuses an emptied folder the index knows)
        refuse_unavailable_landing(landing.root, index.folder(empresa), empresa, days, cleaned[empresa])
    frames = []
    for day, empresa in parts:
        frame = partition_frame(index, empresa, day, today)
        write_consolidated(landing.root, empresa, day, frame, merge_with_existing=day in cleaned[empresa])
        frames.append(frame)
    frame = pl.concat(frames) if frames else empty_frame()
    reasons = Counter(frame.filter(pl.col("status") == "rejected")["reject_code"].to_list())
    warnings = Counter(w for ws in frame["warnings"].to_list() for w in ws)
    metadata: dict[str, Any] = {
        "dagster/row_count": frame.height,
        "valid_versions": int((frame["status"] == "valid").sum()),
        "winners": int(frame["is_winner"].sum()),
        "rejected": int((frame["status"] == "rejected").sum()),
        "reject_reasons": dg.MetadataValue.md(counts_table("reason_code", reasons)),
        "warnings": dg.MetadataValue.md(counts_table("warning", warnings)),
        "dagster/column_schema": column_schema(
            (name, str(dtype), _FRAME_DESCRIPTIONS.get(name)) for name, dtype in frame.schema.items()
        ),
    }
    if len(parts) > 1:  # a range run: one materialization per partition, all with these figures
        metadata["partition_records"] = {
            str(partition_key(d, e)): f.height for (d, e), f in zip(parts, frames, strict=True)
        }
    context.log.info(f"pqr_records: {metadata['winners']} winners, {metadata['rejected']} rejected")
    yield dg.Output(frame, metadata=metadata)
    yield from checks_logic.records_checks(context, frame)


class PqrTableConfig(dg.Config):
    """Run configuration of ``pqr_table``."""

    dry_run: bool = False  # compute and report what would be inserted/updated/unchanged, write nothing


def _load_table(
    context: dg.AssetExecutionContext, config: PqrTableConfig, pqr_records: pl.DataFrame, postgres: PostgresResource
) -> Iterator[dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """The winners upserted into ``data_general.ov_{empresa}``, history rows for updates,
    rejects in ``ov_rejects``, one ``ov_load_audit`` row per partition.

    Grain: one row per numero_radicado. One set-based transaction for the run's whole range,
    under one advisory lock per partition taken in sorted order (a killed run leaves the whole
    range or nothing; concurrent runs serialize per partition, without deadlock), retried on a
    new connection after transient failures (restart, failover).
    Idempotent: unchanged rows are counted as duplicates and never written.
    Analysts read both empresas through the views ``ov_pqr_masked`` (no personal data) and
    ``ov_pqr`` (ov_analyst_personal only): docs/data-dictionary.md.
    Run config ``dry_run: true`` computes the same counts inside a transaction that is rolled
    back: nothing is written (not even the audit row); each partition's counts are reported as
    an observation of it, nothing is materialized, and the checks and downstream steps do not run.
    """
    keys = [(empresa, day) for day, empresa in _partitions(context)]
    by_partition = postgres.run(
        lambda conn: loading.load_partitions(conn, keys, pqr_records, context.run_id, dry_run=config.dry_run),
        migrate=not config.dry_run,
    )
    total = loading.LoadCounts()
    for (empresa, day), counts in sorted(by_partition.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        total = total.add(counts)
        context.log.info(f"{empresa} {day}{' (dry run)' if config.dry_run else ''}: {counts}")
        if config.dry_run:
            # Nothing was written, so nothing is materialized: each partition's counts are an
            # observation of it; the table checks are not evaluated (their outputs are optional:
            # the asset is subsettable) and downstream steps (quality, the object store) are skipped.
            yield dg.AssetObservation(
                asset_key=context.asset_key,
                partition=str(partition_key(day, empresa)),
                metadata=_load_metadata(counts, dry_run=True),
                description="dry run: what a materialization would write",
            )
    if config.dry_run:
        return
    metadata = _load_metadata(total, dry_run=False)
    if len(by_partition) > 1:  # a range run: these totals are stamped on each of its partitions
        metadata["partition_counts"] = {
            str(partition_key(day, empresa)): dataclasses.asdict(counts)
            for (empresa, day), counts in by_partition.items()
        }
    # ov_near_duplicates for the loaded partitions (after the commit: it compares stored rows)
    metadata |= near_dup_check.refresh(postgres, _partitions(context))
    yield dg.MaterializeResult(metadata=metadata)
    # Only the checks the run selected: a result for a check left out of the run is an error.
    selected = {key.name for key in context.selected_asset_check_keys}
    yield from checks_logic.table_checks(context, postgres, pqr_records, selected)
    if near_dup_check.CHECK in selected:
        yield from near_dup_check.near_duplicates_check(context, postgres)


def _load_metadata(counts: loading.LoadCounts, dry_run: bool) -> dict[str, Any]:
    return {
        # the partitions' rows in the table: one per winner, whichever way it went
        "dagster/row_count": counts.db_inserted + counts.db_updated + counts.db_duplicates + counts.db_skipped_older,
        "records_valid": counts.records_valid,  # valid versions, several per radicado
        "db_inserted": counts.db_inserted,
        "db_updated": counts.db_updated,
        "db_duplicates": counts.db_duplicates,
        "db_skipped_older": counts.db_skipped_older,
        "rejected": counts.rejected,
        "dry_run": dry_run,
    }


# A multi-asset of one asset rather than ``@dg.asset``: only a subsettable asset has optional
# check outputs, and a dry run (or a run that deselects checks) yields no check result.
pqr_table = dg.multi_asset(
    name="pqr_table",
    specs=[
        dg.AssetSpec(
            "pqr_table",
            deps=["pqr_records"],
            description=inspect.cleandoc(_load_table.__doc__ or ""),
            group_name=GROUP,
            owners=OWNERS,
            kinds={"postgres"},
            skippable=True,  # a dry run materializes nothing
            metadata={"dagster/column_schema": TABLE_SCHEMA},
        )
    ],
    partitions_def=pqr_partitions,
    backfill_policy=BACKFILL,
    pool="ov_postgres",
    check_specs=[*checks_logic.TABLE_CHECK_SPECS, near_dup_check.NEAR_DUPLICATES_SPEC],
    can_subset=True,
)(_load_table)


@dg.asset(
    partitions_def=pqr_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres"},
    deps=[pqr_table],
    backfill_policy=BACKFILL,
    output_required=False,  # it yields one AssetMaterialization per partition instead
    metadata={"dagster/column_schema": QUALITY_SCHEMA},
)
def pqr_quality_daily(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> Iterator[dg.AssetMaterialization]:
    """Quality over time: the partition's row of ``data_general.ov_quality_daily`` (files seen,
    valid, rejected by reason, warnings by code, reject rate, load latency), which the load
    wrote in its own transaction, reported as numbers the asset's page plots per partition.

    Its own asset rather than metadata of ``pqr_table``: a range run (a backfill chunk) gives
    ``pqr_table`` one MaterializeResult, stamped with the same metadata on every partition of
    the range, while this asset yields one materialization per partition with that partition's
    own numbers; its page plots only quality series; it reports what the database holds, re-read
    after the commit. Skipped with ``pqr_table`` in a dry run (nothing was written).
    """
    parts = _partitions(context)
    rows = postgres.run(lambda conn: quality.read_quality(conn, [(e, d) for d, e in parts]))
    missing = [f"{d}|{e}" for d, e in parts if (e, d) not in rows]
    if missing:
        raise dg.Failure(
            description=f"no ov_quality_daily row for {', '.join(missing)}: materialize pqr_table for "
            "these partitions first (its load writes the row)"
        )
    for day, empresa in parts:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=str(partition_key(day, empresa)),
            metadata=quality_metadata(rows[(empresa, day)]),
        )


@dg.asset(
    partitions_def=pqr_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"s3"},
    deps=[pqr_table],
    backfill_policy=BACKFILL,
    pool="ov_s3",
    check_specs=checks_logic.S3_CHECK_SPECS,
)
def pqr_s3_objects(
    context: dg.AssetExecutionContext,
    pqr_records: pl.DataFrame,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    landing: LandingResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """Every valid version's JSON, PDF and attachments stored byte for byte (CONTRACT §7),
    registered in ``s3_files_registry``, and listed in the table row's ``archivos_s3_urls``.

    Grain: one object. Idempotent: registered, verified objects are skipped; objects already in
    the bucket with the same SHA-256 are ``pre_existing``; nothing is overwritten (conditional
    puts). Objects left ``pending``/``error`` by an earlier run are retried here.
    """
    checkpoint("archive")  # tests: a run killed between pqr_table and pqr_s3_objects
    store = object_store.open()
    objects = archive.plan_objects(pqr_records, landing.root, object_store.layout, object_store.base_path)
    with postgres.connect() as conn:
        counts, outcomes = archive.archive_objects(conn, store, objects, object_store.max_workers)
        linked = archive.link_table_rows(
            conn, store, pqr_records, object_store.layout, object_store.base_path, counts.settled_keys
        )
    if counts.fatal:
        # The bucket is unusable (credentials, permissions, bucket, region, endpoint): one line
        # that says what to fix; everything not yet stored stays ``pending`` for a later run.
        raise dg.Failure(
            description=counts.fatal,
            metadata={
                "s3_uploaded": counts.s3_uploaded,
                "s3_errors": counts.s3_errors,
                "s3_not_attempted": counts.s3_not_attempted,
            },
        )
    if counts.s3_errors:
        # Registered as ``error`` (retried by later runs); the run fails so a person hears of it.
        raise dg.Failure(
            description=f"{counts.s3_errors} of {len(objects)} objects could not be stored",
            metadata={
                "reasons": dg.MetadataValue.json(archive.errors_summary(outcomes)),
                "s3_uploaded": counts.s3_uploaded,
                "s3_errors": counts.s3_errors,
            },
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(objects),
            "s3_uploaded": counts.s3_uploaded,
            "s3_pre_existing": counts.s3_pre_existing,
            "s3_already_registered": counts.s3_already_registered,
            "s3_errors": counts.s3_errors,
            "rows_linked": linked,
            "bucket": store.bucket,
        }
    )
    yield from checks_logic.s3_checks(context, postgres, store, pqr_records, object_store, counts.worked_keys)


pqr_assets = [raw_pqr_files, pqr_records, pqr_table, pqr_quality_daily, pqr_s3_objects]
