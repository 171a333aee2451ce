"""Jobs: the whole graph per partition, and parts of it that schedules and sensors target."""

from __future__ import annotations

import dagster as dg

from ov_assets.partitions import pqr_partitions

# Everything downstream of the landing folder: what the sensor and the incremental runs need.
pipeline_selection = dg.AssetSelection.assets("raw_pqr_files").downstream()

pqr_pipeline_job = dg.define_asset_job(
    "pqr_pipeline_job",
    selection=pipeline_selection,
    partitions_def=pqr_partitions,
    description="raw_pqr_files -> pqr_records -> pqr_table -> pqr_s3_objects for chosen partitions.",
)

# --- checks only (issue 6): ov_assets.checks --------------------------------------------------
from ov_assets import checks as _checks  # noqa: E402

reconciliation_checks_job = dg.define_asset_job(
    "reconciliation_checks_job",
    selection=dg.AssetSelection.checks(*_checks.reconciliation_checks),
    partitions_def=pqr_partitions,
    description="Checks only, for chosen partitions: s3_files_registry vs the bucket and the "
                "table's rows vs the registry. Materializes nothing.",
)
integrity_checks_job = dg.define_asset_job(
    "integrity_checks_job",
    selection=dg.AssetSelection.checks(*_checks.tablewide_checks),
    description="Table-wide checks (daily 23:30): duplicate keys, orphan registry rows, history "
                "vs current rows, load freshness. Materializes nothing.",
)

all_jobs = [pqr_pipeline_job, reconciliation_checks_job, integrity_checks_job]
