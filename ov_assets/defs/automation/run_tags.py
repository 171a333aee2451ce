"""Run tags that keep two writers off one partition (CONTRACT §10, issue 7).

Every run request made by the schedules and the landing sensor carries:

- ``ov/partition`` (``2025-10-08|afinia``) and Dagster's own ``dagster/partition`` (added by
  Dagster to every single-partition run, also those launched from the UI and single-partition
  backfill runs);
- ``ov/empresa``, ``ov/mode`` (``bulk``, ``incremental``, ``reextraction``, ``sensor``,
  ``retry``, ``verification``, ``integrity``, ``reports``, ``cleanup``): what asked for the run.
  No asset reads ``ov/mode`` (a run does the same work whoever asked for it); the failure alert
  names it, and the UI's run list filters by it.

``deploy/dagster.yaml`` sets ``run_queue.tag_concurrency_limits`` with ``limit: 1`` and
``applyLimitPerUniqueValue: true`` on ``dagster/partition`` and ``ov/partition``: the run queue
starts at most one run per partition key at a time, whoever asked for it (schedule, sensor, UI,
backfill); the others wait queued. ``ov/empresa`` caps the writers per empresa, and
``ov/landing-cleanup`` keeps the weekly cleanup single.

Range runs of backfills (``BackfillPolicy.multi_run``) carry range tags instead of one
partition key; for them the per-partition PostgreSQL advisory locks of ``loading.load_partitions``
are what serialize writers of the same partition (NOTES: pools are per asset, not per partition).
"""

from __future__ import annotations

PARTITION_TAG = "ov/partition"
EMPRESA_TAG = "ov/empresa"
MODE_TAG = "ov/mode"


PORTAL_TAG = "ov/portal"
# Dagster's tags of a run on a range of partitions (a backfill's range run, ov-assets backfill).
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# Runs of these modes extract from the portal (their job includes raw_pqr_files).
EXTRACTING_MODES = frozenset({"bulk", "incremental", "reextraction", "history"})  # history: ov-assets backfill


def partition_tags(partition_key: str, mode: str) -> dict[str, str]:
    """The tags of a run on one partition (``date|empresa``). Runs that extract also carry
    ``ov/portal``: the run queue lets one such run per empresa at a time, so a portal never
    sees more than ``OV_SCRAPER_CONCURRENCY`` pages of ours at once."""
    empresa = partition_key.split("|")[1]
    tags = {PARTITION_TAG: partition_key, EMPRESA_TAG: empresa, MODE_TAG: mode}
    if mode in EXTRACTING_MODES:
        tags[PORTAL_TAG] = empresa
    return tags


def range_tags(start: str, end: str, mode: str) -> dict[str, str]:
    """The tags of a run on the partitions ``start`` .. ``end`` of one empresa (Dagster's range
    tags; no ``ov/partition``: the advisory locks of the load serialize its writers)."""
    tags = partition_tags(start, mode)
    del tags[PARTITION_TAG]
    return tags | {RANGE_START_TAG: start, RANGE_END_TAG: end}


def mode_tags(mode: str) -> dict[str, str]:
    return {MODE_TAG: mode}
