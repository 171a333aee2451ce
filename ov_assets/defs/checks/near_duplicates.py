"""The ``near_duplicates`` check of ``pqr_table`` (issue 19): WARN when a partition's PQRs have
near-duplicates (same NIC or document, a similar complaint within ``OV_NEAR_DUP_DAYS``).

``pqr_table`` refreshes ``ov_near_duplicates`` for its partitions after the load
(``refresh``); the check re-reads the stored pairs. A near-duplicate is worth a look, not a
stop: WARN, never blocking. Its metadata holds counts and the settings only: never a radicado,
a NIC, a document or a word of the complaint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ov_assets import settings
from ov_assets.core.near_duplicates import RULES
from ov_assets.defs.checks.partition import Verdict, emit, run_partitions
from ov_assets.defs.partitions import pqr_partitions
from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.warehouse import near_duplicates

CHECK = "near_duplicates"

NEAR_DUPLICATES_SPEC = dg.AssetCheckSpec(
    CHECK,
    asset="pqr_table",
    partitions_def=pqr_partitions,
    description="Re-reads ov_near_duplicates: WARN when a PQR of the partition has a near-duplicate (same NIC or "
    "document, complaint text similarity >= OV_NEAR_DUP_SIMILARITY, filed within OV_NEAR_DUP_DAYS). Counts only.",
)


def refresh(postgres: PostgresResource, parts: list[tuple[dt.date, str]]) -> dict[str, int]:
    """Find and store the near-duplicates of every partition ``(day, empresa)``; totals of the
    counts (for the asset's metadata)."""
    threshold, days = settings.near_duplicate_similarity(), settings.near_duplicate_days()
    totals = {"near_duplicate_pairs": 0, "near_duplicate_pairs_new": 0}
    with postgres.connect() as conn:
        for day, empresa in parts:
            counts = near_duplicates.refresh_partition(conn, empresa, day, threshold, days)
            totals["near_duplicate_pairs"] += counts.pairs
            totals["near_duplicate_pairs_new"] += counts.new_pairs
    return totals


def verdict(pairs: list[tuple[str, str, int, float, str]], threshold: float, days: int) -> Verdict:
    """Counts of the partition's stored pairs, by rule and how far apart."""
    meta: dict[str, Any] = {
        "pairs": len(pairs),
        "pqrs_involved": len({r for p in pairs for r in p[:2]}),
        "same_day": sum(1 for p in pairs if p[2] == 0),
        "similarity_threshold": float(threshold),
        "max_days_apart": days,
    }
    for rule in RULES:
        meta[f"rule_{rule}"] = sum(1 for p in pairs if p[4] == rule)
    return Verdict(not pairs, meta, dg.AssetCheckSeverity.WARN)


def near_duplicates_check(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """One WARN result per partition of the run (a summary too in a range run)."""
    threshold, days = settings.near_duplicate_similarity(), settings.near_duplicate_days()
    parts = run_partitions(context)
    with postgres.connect() as conn:
        verdicts = {
            (day, empresa): verdict(near_duplicates.partition_pairs(conn, empresa, day), threshold, days)
            for day, empresa in parts
        }
    yield from emit(context, "pqr_table", CHECK, verdicts)
