"""The partitions of every asset: the day of ``fecha`` (America/Bogota) x empresa (CONTRACT §5)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ov_assets.core.contract import EMPRESAS, FIRST_DAY

# end_offset=1: today's partition exists during the day (PQRs of today are scraped today).
date_partitions = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(), timezone="America/Bogota", end_offset=1
)
empresa_partitions = dg.StaticPartitionsDefinition(list(EMPRESAS))
pqr_partitions = dg.MultiPartitionsDefinition({"date": date_partitions, "empresa": empresa_partitions})


def partition_key(day: dt.date, empresa: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.isoformat(), "empresa": empresa})


def parse_partition_key(key: str) -> tuple[dt.date, str]:
    """``2025-10-08|afinia`` -> (date, empresa)."""
    day, empresa = key.split("|")
    return dt.date.fromisoformat(day), empresa
