"""The consolidated dataset the old system produced, per partition:
``$OV_DATA_DIR/processed/{empresa}_consolidated_{YYYYMMDD}.csv`` (UTF-8, header, one row per
winning record) and a Parquet copy, plus the partition's rejects with their reasons."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ov_assets.contract import BUSINESS_FIELDS

CONSOLIDATED_COLUMNS = (*BUSINESS_FIELDS, "hash_registro", "fecha_extraccion", "file_name", "warnings")


def consolidated_paths(data_dir: Path, empresa: str, day: dt.date) -> dict[str, Path]:
    folder = data_dir / "processed"
    stem = f"{empresa}_consolidated_{day:%Y%m%d}"
    return {"csv": folder / f"{stem}.csv", "parquet": folder / f"{stem}.parquet",
            "rejects": folder / f"{empresa}_rejects_{day:%Y%m%d}.csv"}


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    write(tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_consolidated(data_dir: Path, empresa: str, day: dt.date, frame: pl.DataFrame) -> dict[str, Path]:
    """Write the partition's winners (CSV + Parquet) and rejects (CSV); owner-readable only."""
    paths = consolidated_paths(data_dir, empresa, day)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    winners = (frame.filter(pl.col("is_winner")).sort("numero_radicado")
               .select(*CONSOLIDATED_COLUMNS)
               .with_columns(pl.col("warnings").list.join(",")))
    rejects = frame.filter(pl.col("status") == "rejected").select(
        "file_name", "file_sha256", "numero_radicado", "reject_code", "reject_detail")
    _atomic(paths["csv"], lambda p: winners.write_csv(p))
    _atomic(paths["parquet"], lambda p: winners.write_parquet(p))
    _atomic(paths["rejects"], lambda p: rejects.write_csv(p))
    return paths
