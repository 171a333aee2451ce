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

all_jobs = [pqr_pipeline_job]
