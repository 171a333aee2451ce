"""Dagster definitions: partitions, assets, checks, jobs, schedules, sensors and resources. The only layer that imports Dagster.

Importing this package silences the two framework warnings the definitions raise by design on
every load (partitioned asset checks are a Dagster preview, ``backfill_policy`` a beta): they say
nothing an operator can act on, and every command, run and code server printed them. Any other
warning still shows.
"""

import warnings

import dagster as dg

EXPECTED_FRAMEWORK_WARNINGS = (
    (dg.PreviewWarning, r"Specifying a partitions_def on an AssetCheckSpec is currently in preview"),
    (dg.BetaWarning, r"Parameter `backfill_policy` of function `asset` is currently in beta"),
)
for _category, _message in EXPECTED_FRAMEWORK_WARNINGS:
    warnings.filterwarnings("ignore", message=_message, category=_category)
