"""Helpers of the object store tests: a prepared partition (landing files, records frame,
table rows) and an ``ObjectStoreResource`` aimed at moto."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import psycopg
from dagster_aws.s3 import S3Resource

from ov_assets.defs.resources import ObjectStoreResource
from ov_assets.devkit import generator
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading, migrations

# A fixed past day and the "today" its frames are evaluated on: test data is a function of its
# seed and of the days a test names, never of the date the suite runs on (with seed 3 this day
# has attachments, which the IAM test needs).
DAY = dt.date(2025, 10, 6)
TODAY = dt.date(2025, 10, 9)


def store_resource(endpoint: str, bucket: str, data_dir: Path, **kw: Any) -> ObjectStoreResource:
    s3 = S3Resource(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=kw.pop("key_id", "testing"),
        aws_secret_access_key=kw.pop("secret", "testing"),
    )
    kw.setdefault("max_attempts", 2)
    resource_class = kw.pop("resource_class", ObjectStoreResource)
    return resource_class(bucket=bucket, data_dir=str(data_dir), s3=s3, **kw)


def client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def frame_for(data_dir: Path, empresa: str = "afinia", day: dt.date = DAY) -> pl.DataFrame:
    index = LandingIndex(data_dir)
    index.refresh(empresa, TODAY)
    return partition_frame(index, empresa, day, TODAY)


def prepare(
    data_dir: Path,
    conninfo: dict[str, Any],
    empresa: str = "afinia",
    day: dt.date = DAY,
    n: int = 6,
    seed: int = 1,
    big: int = 0,
) -> pl.DataFrame:
    """Landing files of one partition (``big`` bytes more in one attachment), its frame, and
    its rows loaded in the table (migrations applied)."""
    out = generator.write_day(data_dir, empresa, day, n=n, seed=seed)
    if big:
        attachment = next((p for p in out.files if "_adjunto_" in p.name), None) or next(
            p for p in out.files if p.suffix == ".pdf"
        )
        attachment.write_bytes(attachment.read_bytes() + bytes(range(256)) * (big // 256))
    frame = frame_for(data_dir, empresa, day)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        migrations.apply_all(conn)
        loading.load_partition(conn, empresa, day, frame, "test-run")
    return frame


def registry(conninfo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(**conninfo, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM data_general.s3_files_registry ORDER BY id").fetchall()
    return {r["s3_key"]: r for r in rows}


def bucket_keys(endpoint: str, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys
