"""Jobs: the whole graph per partition, and parts of it that schedules and sensors target."""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:  # what define_asset_job returns; Dagster exports the class under no public name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ov_assets.defs.checks import tablewide as _checks
from ov_assets.defs.resources import LandingResource, ObjectStoreResource, PostgresResource
from ov_assets.objects.backups import backup_schema
from ov_assets.objects.layout_migration import migrate_layout

# Everything downstream of the landing folder: what the sensor and the incremental runs need.
pipeline_selection = dg.AssetSelection.assets("raw_pqr_files").downstream()

pqr_pipeline_job = dg.define_asset_job(
    "pqr_pipeline_job",
    selection=pipeline_selection,
    # One process: the steps are a chain, each parallel inside (threads, index workers).
    executor_def=dg.in_process_executor,
    description="raw_pqr_files -> pqr_records -> pqr_table -> pqr_s3_objects for chosen partitions.",
)

# --- automation (issue 7): what the schedules and sensors of ov_assets.defs.automation launch ------

# The landing sensor's runs: the same graph, all steps in one process (a run starts one
# process instead of one per step: seconds, not tens of seconds, for the one-minute goal).
# Files already in the landing folder: everything downstream of extraction (never the portal).
landing_selection = dg.AssetSelection.assets("pqr_records").downstream()

pqr_landing_job = dg.define_asset_job(
    "pqr_landing_job",
    selection=landing_selection,
    executor_def=dg.in_process_executor,
    description="Sensor runs: new landing files of one partition to PostgreSQL and object storage.",
)

# Files already in the landing folder to PostgreSQL only (``ov-assets backfill --tables-only``): a
# history's rows first, its objects in a later run of pqr_landing_job (the rows are then unchanged).
pqr_landing_tables_job = dg.define_asset_job(
    "pqr_landing_tables_job",
    selection=landing_selection - dg.AssetSelection.assets("pqr_s3_objects"),
    executor_def=dg.in_process_executor,
    description="Landing files of one partition to PostgreSQL (pqr_records, pqr_table): no objects.",
)

# The same without the objects, from the portal (``ov-assets backfill --tables-only``).
pqr_pipeline_tables_job = dg.define_asset_job(
    "pqr_pipeline_tables_job",
    selection=pipeline_selection - dg.AssetSelection.assets("pqr_s3_objects"),
    executor_def=dg.in_process_executor,
    description="raw_pqr_files -> pqr_records -> pqr_table for chosen partitions: no objects.",
)

# The hourly retry of objects left pending/error in s3_files_registry (reads the stored
# pqr_records frame of the partition; uploads what is missing; re-verifies).
pqr_s3_retry_job = dg.define_asset_job(
    "pqr_s3_retry_job",
    selection=dg.AssetSelection.assets("pqr_s3_objects"),
    executor_def=dg.in_process_executor,
    description="Hourly: pqr_s3_objects for partitions with registry rows pending or in error.",
)

# The hourly verification runs ``reconciliation_checks_job`` and the 23:30 schedule
# ``integrity_checks_job`` (both below, checks of ov_assets.defs.checks.tablewide; see automation.schedules).


class ReportsArchiveConfig(dg.Config):
    day: str = ""  # YYYY-MM-DD (Bogotá); empty: today


@dg.op(tags={"kind": "s3"}, pool="ov_s3")  # (writes to the bucket: the uploads' pool)
def archive_reports(
    context: dg.OpExecutionContext,
    config: ReportsArchiveConfig,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    landing: LandingResource,
) -> None:
    """Store the day's consolidated CSV/Parquet, rejects and audit export of both empresas
    under ``{S3_BASE_PATH}/reports/{empresa}/{yyyy}/{mm}/{dd}/``."""
    from ov_assets.core.contract import today_bogota
    from ov_assets.reports.nightly_upload import archive_reports as archive

    day = dt.date.fromisoformat(config.day) if config.day else today_bogota()
    with postgres.connect() as conn:
        out = archive(conn, object_store.open(), landing.root, object_store.base_path, day)
    context.log.info(
        f"reports of {day} and of {out.loads_exported} loads since the last archive "
        f"({out.partitions} partitions): {len(out.stored)} stored, {len(out.unchanged)} unchanged, "
        f"{len(out.missing)} not produced"
    )
    if out.missing:
        context.log.warning(f"reports not produced for {day}: {', '.join(k.rsplit('/', 1)[-1] for k in out.missing)}")


class CleanupConfig(dg.Config):
    dry_run: bool = False
    retention_days: int = 0  # 0: OV_RETENTION_DAYS (default 30)


@dg.op(tags={"kind": "file"})
def cleanup_landing(
    context: dg.OpExecutionContext,
    config: CleanupConfig,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    landing: LandingResource,
) -> None:
    """Delete landing files verified in the registry and older than the retention."""
    from ov_assets.landing.cleanup import cleanup_landing as cleanup

    store = object_store.open()
    with postgres.connect() as conn:
        report = cleanup(landing.index(), conn, store, retention=config.retention_days or None, dry_run=config.dry_run)
    context.log.info(report.summary())
    if report.unproven:
        context.log.warning(
            f"kept {len(report.unproven)} landing files the bucket does not hold as registered: "
            f"{', '.join(report.unproven[:20])}"
        )


@dg.job(
    tags={"ov/mode": "reports"},
    executor_def=dg.in_process_executor,
    description="Daily 23:45: archive of the day's reports to the object store.",
)
def reports_archive_job() -> None:
    archive_reports()


@dg.job(
    tags={"ov/mode": "cleanup", "ov/landing-cleanup": "weekly"},
    executor_def=dg.in_process_executor,
    description="Sunday 02:00: delete landing files already verified in the object store.",
)
def landing_cleanup_job() -> None:
    cleanup_landing()


# --- checks only (issue 6): ov_assets.defs.checks.tablewide --------------------------------------------------

reconciliation_checks_job = dg.define_asset_job(
    "reconciliation_checks_job",
    selection=dg.AssetSelection.checks(*_checks.reconciliation_checks),
    executor_def=dg.in_process_executor,  # two small checks: not worth a process each
    # (no partitions_def: Dagster drops it for a job of checks only; its runs carry partition
    # tags instead, see checks.partition_tags)
    description="Checks only, for chosen partitions: s3_files_registry vs the bucket and the "
    "table's rows vs the registry. Materializes nothing.",
)
integrity_checks_job = dg.define_asset_job(
    "integrity_checks_job",
    selection=dg.AssetSelection.checks(*_checks.tablewide_checks),
    executor_def=dg.in_process_executor,  # four queries: not worth a process each
    description="Table-wide checks (daily 23:30): duplicate keys, orphan registry rows, history "
    "vs current rows, load freshness. Materializes nothing.",
)

all_jobs: "list[dg.JobDefinition | UnresolvedAssetJobDefinition]" = [
    pqr_pipeline_job,
    reconciliation_checks_job,
    pqr_landing_job,
    pqr_landing_tables_job,
    pqr_pipeline_tables_job,
    pqr_s3_retry_job,
    integrity_checks_job,
    reports_archive_job,
    landing_cleanup_job,
]


# Layout migration (ov_assets.objects.layout_migration does the work).
class LayoutMigrationConfig(dg.Config):
    """``target_layout``: ``default`` or ``central``; empty means the configured OV_S3_LAYOUT."""

    target_layout: str = ""
    # A backup of data_general to {S3_BASE_PATH}/backups/ first (issue 16): the migration
    # rewrites every registry row. False skips it (knowingly).
    backup: bool = True


@dg.op(tags={"kind": "s3"}, pool="ov_s3")  # (writes to the bucket: the uploads' pool)
def migrate_object_layout(
    context: dg.OpExecutionContext,
    config: LayoutMigrationConfig,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
) -> dict[str, Any]:
    """Copy, verify, re-register, delete: every registered object moves to the target layout.
    Resumable (rerun after any interruption) and idempotent (a finished row is skipped)."""
    layout = config.target_layout or object_store.layout
    if layout != object_store.layout:
        context.log.warning(
            f"target layout {layout!r} differs from OV_S3_LAYOUT={object_store.layout!r}: "
            "pipeline runs will keep writing the configured layout"
        )
    store = object_store.open()
    backup = ""
    if config.backup:
        record = backup_schema(postgres.conninfo(), store, "layout-migration", base_path=object_store.base_path)
        context.log.info(record.describe())
        backup = record.url
    else:
        context.log.warning("no backup of data_general before the layout migration (config backup: false)")
    with postgres.connect() as conn:
        counts = migrate_layout(conn, store, layout, object_store.base_path, object_store.max_workers)
    metadata = {**counts.as_metadata(), "backup": backup}
    context.log.info(f"layout migration to {layout} in {store.bucket}: {metadata}")
    if counts.errors:
        raise dg.Failure(
            description=f"{len(counts.errors)} objects could not be moved; rerun after fixing them",
            metadata={**metadata, "first_errors": dg.MetadataValue.json(counts.errors[:20])},
        )
    return metadata


@dg.job(
    executor_def=dg.in_process_executor,
    description="Move every registered object to the target key layout (CONTRACT §7): copy, verify "
    "the SHA-256, update the registry and table links, delete the old key. Resumable.",
)
def layout_migration_job() -> None:
    migrate_object_layout()


layout_migration_jobs = [layout_migration_job]
