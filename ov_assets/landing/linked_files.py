"""The PDFs and attachments of record files: those of the same link key (``{sgc}_{ts}``), and
those a record names (documento_prueba, adjuntar_archivo) when they are of the same PQR
(``same_pqr``). Two forms of the one rule: per record (``linked_files``, for the cleanup and
callers holding ``IndexedFile`` rows) and per frame (``linked_frame``, for partition frames).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ov_assets.core.contract import REFERENCE_NOT_LINKED
from ov_assets.landing.index_store import IndexedFile, IndexStore

if TYPE_CHECKING:
    import polars as pl


def same_pqr(file_link_key: str | None, record_link_key: str | None, radicado: str | None) -> bool:
    """May a record link a file its ``documento_prueba`` / ``adjuntar_archivo`` names? Only a
    file of the same PQR: the ``{sgc}`` of its name is the record's own ``{sgc}``, its radicado
    or the ``PQR_{radicado}_...`` of a PQR without SGC; or a portal ``<uuid>.<ext>`` name (no
    ``{sgc}``: the portal's own name of that attachment). ``_same_pqr_expr`` is the same rule
    in polars."""
    if file_link_key is None:
        return True
    sgc = file_link_key.rsplit("|", 1)[0]
    return sgc == (record_link_key or "").rsplit("|", 1)[0] or (
        bool(radicado) and (sgc == radicado or sgc.startswith(f"PQR_{radicado}_"))
    )


def _same_pqr_expr() -> pl.Expr:
    """``same_pqr`` over the columns ``_file_key``, ``_link_key`` and ``numero_radicado``."""
    import polars as pl

    def sgc(column: str) -> pl.Expr:
        return pl.col(column).str.replace(r"\|[^|]*$", "")

    radicado = pl.col("numero_radicado")
    return (
        pl.col("_file_key").is_null()
        | (sgc("_file_key") == sgc("_link_key")).fill_null(False)
        | (sgc("_file_key") == radicado).fill_null(False)
        | sgc("_file_key").str.starts_with(pl.concat_str(pl.lit("PQR_"), radicado, pl.lit("_"))).fill_null(False)
    )


def linked_files(
    store: IndexStore, empresa: str, records: Iterable[IndexedFile], refs: dict[str, list[str]] | None = None
) -> dict[str, list[IndexedFile]]:
    """Record file name -> its PDF and attachments (same ``{sgc}_{ts}``, or named by the record
    and of the same PQR). ``refs``: the file names each record names, when the caller has them;
    else they are read from the index."""
    records = list(records)
    out: dict[str, list[IndexedFile]] = {r.name: [] for r in records}
    if refs is None:
        refs = store.refs(empresa, list(out))
    referenced_by: dict[str, set[str]] = {}
    for owner, names in refs.items():
        for n in names:
            referenced_by.setdefault(n, set()).add(owner)
    by_link: dict[str, list[str]] = {}
    for r in records:
        if r.link_key:
            by_link.setdefault(r.link_key, []).append(r.name)
    by_name = {r.name: r for r in records}
    for f in store.others_linked(empresa, sorted(by_link), sorted(referenced_by)):
        owners = set(by_link.get(f.link_key or "", []))
        owners |= {
            o
            for o in referenced_by.get(f.name, ())
            if same_pqr(f.link_key, by_name[o].link_key, by_name[o].numero_radicado)
        }
        for owner in owners:
            out[owner].append(f)
    return out


def linked_frame(store: IndexStore, empresa: str, base: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """``base`` (per-file columns with ``_link_key``) and the PDFs and attachments
    (``records.LINKED_SCHEMA``) of its valid record files. A named file of another PQR is not
    linked (it would be stored and listed as this PQR's); its record gets the
    ``reference_not_linked`` warning instead."""
    import polars as pl

    from ov_assets.core.records import LINKED_SCHEMA

    valid_rows = base.filter(pl.col("status") == "valid")

    def keys(*columns: str) -> list[str]:  # distinct, non-empty (sets made by polars)
        values = pl.concat([valid_rows[c] for c in columns]).drop_nulls()
        return values.filter(values != "").unique().sort().to_list()

    link_keys, refs = keys("_link_key"), keys("documento_prueba", "adjuntar_archivo")
    if not link_keys and not refs:
        return base, None
    found = store.others_linked_rows(empresa, link_keys, refs)
    if not found:
        return base, None
    files = pl.DataFrame(
        found,
        schema={
            "file_type": pl.String(),
            "filename": pl.String(),
            "size": pl.Int64(),
            "sha256": pl.String(),
            "link_key": pl.String(),
        },
        orient="row",
    )
    owner = pl.col("file_name").alias("owner")
    by_name = (
        pl.concat(
            [
                valid_rows.select(owner, pl.col(c).alias("key"), "_link_key", "numero_radicado")
                for c in ("documento_prueba", "adjuntar_archivo")
            ]
        )
        .filter(pl.col("key").is_not_null() & (pl.col("key") != ""))
        .join(files.rename({"link_key": "_file_key"}), left_on="key", right_on="filename")
        .with_columns(pl.col("key").alias("filename"))
        .with_columns(_same_pqr_expr().alias("_ok"))
    )
    refused = by_name.filter(~pl.col("_ok"))["owner"].unique()
    if not refused.is_empty():
        base = base.with_columns(
            pl.when(pl.col("file_name").is_in(refused.implode()))
            .then(pl.concat_str(pl.col("warnings"), pl.lit(REFERENCE_NOT_LINKED), separator=",").str.strip_chars(","))
            .otherwise(pl.col("warnings"))
            .alias("warnings")
        )
    linked = (
        pl.concat(
            [
                valid_rows.select(owner, pl.col("_link_key").alias("key"))
                .filter(pl.col("key").is_not_null())
                .join(files, left_on="key", right_on="link_key")
                .drop("key"),
                by_name.filter(pl.col("_ok")).select(list(LINKED_SCHEMA)),
            ],
            how="diagonal",
        )
        .unique(["owner", "filename"])
        .sort("owner", "filename")
        .select(list(LINKED_SCHEMA))
    )
    return base, linked
