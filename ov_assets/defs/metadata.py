"""Asset metadata built from the data: what the UI shows and plots per materialization
(counts and codes only, never a value of a record)."""

from collections import Counter

import dagster as dg

from ov_assets.warehouse import quality


def quality_metadata(row: quality.QualityRow) -> dict[str, dg.MetadataValue]:
    """One ``ov_quality_daily`` row as plottable numbers (ints and floats; one series per
    reason and warning code). Counts and codes only."""
    meta: dict[str, dg.MetadataValue] = {
        "files_seen": dg.MetadataValue.int(row.files_seen),
        "valid": dg.MetadataValue.int(row.valid),
        "rejected": dg.MetadataValue.int(row.rejected),
        "reject_rate": dg.MetadataValue.float(row.reject_rate),
        "warnings": dg.MetadataValue.int(sum(row.warnings_by_code.values())),
    }
    if row.load_latency_s is not None:
        meta["load_latency_s"] = dg.MetadataValue.float(row.load_latency_s)
    meta |= {f"rejected_by_reason/{k}": dg.MetadataValue.int(v) for k, v in sorted(row.rejected_by_reason.items())}
    meta |= {f"warnings_by_code/{k}": dg.MetadataValue.int(v) for k, v in sorted(row.warnings_by_code.items())}
    return meta


def counts_table(label: str, counts: Counter[str]) -> str:
    """A markdown table of ``label`` -> count (``none`` when empty)."""
    if not counts:
        return "none"
    lines = [f"| {label} | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return "\n".join(lines)
