"""The consolidated dataset the old system produced, per partition:
``$OV_DATA_DIR/processed/{empresa}_consolidated_{YYYYMMDD}.csv`` (UTF-8, header, one row per
winning record) and a Parquet copy, plus the partition's rejects with their reasons."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl
import psycopg

from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.errors import LandingFolderUnavailable
from ov_assets.fs import private_dir

CLEANED_TABLE = "data_general.ov_cleaned_partitions"
CONSOLIDATED_COLUMNS = (*BUSINESS_FIELDS, "hash_registro", "fecha_extraccion", "file_name", "warnings")


def consolidated_paths(data_dir: Path, empresa: str, day: dt.date) -> dict[str, Path]:
    folder = data_dir / "processed"
    stem = f"{empresa}_consolidated_{day:%Y%m%d}"
    return {
        "csv": folder / f"{stem}.csv",
        "parquet": folder / f"{stem}.parquet",
        "rejects": folder / f"{empresa}_rejects_{day:%Y%m%d}.csv",
    }


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file of its own (two writers of a partition never write into
    the same one), owner-only from its creation (it holds personal data), then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_consolidated(
    data_dir: Path, empresa: str, day: dt.date, frame: pl.DataFrame, merge_with_existing: bool = False
) -> dict[str, Path]:
    """Write the partition's winners (CSV + Parquet) and rejects (CSV); owner-readable only.

    ``merge_with_existing``: the frame lacks files the landing cleanup deleted after archiving
    them (``cleaned_days``), so the winners are merged with the report written
    before, by the same rule (latest extraction, then greater file name), instead of replacing
    it with what is left. (Rejects are never deleted by the cleanup: the frame has them all.)"""
    paths = consolidated_paths(data_dir, empresa, day)
    private_dir(paths["csv"].parent)
    winners = (
        frame.filter(pl.col("is_winner"))
        .sort("numero_radicado")
        .select(*CONSOLIDATED_COLUMNS)
        .with_columns(pl.col("warnings").list.join(","))
    )
    if merge_with_existing and paths["parquet"].exists():
        winners = (
            pl.concat([pl.read_parquet(paths["parquet"]), winners], how="vertical_relaxed")
            .sort("numero_radicado", "fecha_extraccion", "file_name")
            .unique("numero_radicado", keep="last", maintain_order=True)
        )
    rejects = frame.filter(pl.col("status") == "rejected").select(
        "file_name", "file_sha256", "numero_radicado", "reject_code", "reject_detail"
    )
    write_atomic(paths["csv"], lambda p: winners.write_csv(p))
    write_atomic(paths["parquet"], lambda p: winners.write_parquet(p))
    write_atomic(paths["rejects"], lambda p: rejects.write_csv(p))
    return paths


def mark_cleaned(conn: psycopg.Connection, empresa: str, day: dt.date) -> None:
    """Record, before the cleanup deletes the first archived file of a partition, that its
    reports must from now on be merged with what was written before (``write_consolidated``).
    In PostgreSQL: the mark outlives a lost or rebuilt landing index."""
    conn.execute(
        f"INSERT INTO {CLEANED_TABLE} (empresa, partition_date) VALUES (%s, %s) ON CONFLICT DO NOTHING", (empresa, day)
    )


def cleaned_days(conn: psycopg.Connection, empresa: str, days: Iterable[dt.date]) -> set[dt.date]:
    """The days among ``days`` whose archived files the cleanup took (``mark_cleaned``)."""
    rows = conn.execute(
        f"SELECT partition_date FROM {CLEANED_TABLE} WHERE empresa = %s AND partition_date = ANY(%s)",
        (empresa, sorted(set(days))),
    ).fetchall()
    return {d for (d,) in rows}


def refuse_unavailable_landing(
    data_dir: Path, folder: Path, empresa: str, days: Iterable[dt.date], cleaned: set[dt.date]
) -> None:
    """Stop before a missing or empty landing folder (unmounted, a wrong OV_DATA_DIR) replaces
    reports with empty ones: ``LandingFolderUnavailable`` when it would overwrite a partition's
    report that is not merged (not cleaned). An empresa with no files yet and no reports is
    no error."""
    try:
        with os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return
    except (FileNotFoundError, NotADirectoryError):
        pass
    at_risk = sorted(
        d for d in set(days) if d not in cleaned and consolidated_paths(data_dir, empresa, d)["parquet"].exists()
    )
    if at_risk:
        raise LandingFolderUnavailable(
            empresa,
            os.fspath(folder),
            f"reports of {len(at_risk)} partitions (from {at_risk[0]}) would be rewritten from nothing",
        )
