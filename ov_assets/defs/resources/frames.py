"""Storage of ``pqr_records``' frames: one Parquet file per partition under
``$OV_DATA_DIR/assets/{asset}/{date}/{empresa}.parquet`` (owner-readable only: it holds
personal data). A range run writes and reads every partition of its range."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from ov_assets.core.records import empty_frame
from ov_assets.defs.partitions import parse_partition_key
from ov_assets.fs import private_dir
from ov_assets.reports.consolidated import write_atomic


class PartitionedFrameIOManager(dg.ConfigurableIOManager):
    """polars frames partitioned by (date, empresa), split and joined on their columns."""

    data_dir: str = Field(default="./data", description="OV_DATA_DIR")

    def _path(self, asset: str, day: dt.date, empresa: str) -> Path:
        return Path(self.data_dir).resolve() / "assets" / asset / day.isoformat() / f"{empresa}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        asset = context.asset_key.to_user_string()
        for key in context.asset_partition_keys:
            day, empresa = parse_partition_key(key)
            part = obj.filter((pl.col("partition_date") == day) & (pl.col("empresa") == empresa))
            path = self._path(asset, day, empresa)
            private_dir(path.parent)
            # A temporary file of its own: runs of one partition (a sensor run and a backfill)
            # may write at the same moment.
            write_atomic(path, part.write_parquet)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        asset = context.asset_key.to_user_string()
        frames = []
        for key in context.asset_partition_keys:
            day, empresa = parse_partition_key(key)
            path = self._path(asset, day, empresa)
            if not path.exists():
                raise FileNotFoundError(
                    f"{asset} for partition {key} has not been materialized (no {path}); materialize it first"
                )
            frames.append(pl.read_parquet(path))
        return pl.concat(frames) if frames else empty_frame()
