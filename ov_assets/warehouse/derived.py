"""Columns the tables derive from a row's business fields, outside ``hash_registro``: the E.164
form of ``telefono`` and ``celular`` (``core.contacts``; NULL when empty or not a valid Colombian
number). The load writes them with every version; ``backfill_phone_e164`` fills them for the
rows stored before migration 011 added them (in that migration's transaction), since a row whose
hash does not change is never written again."""

from __future__ import annotations

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.core.contacts import phone_e164
from ov_assets.warehouse.tables import SCHEMA

# (source column, derived column)
PHONE_COLUMNS: tuple[tuple[str, str], ...] = (("telefono", "telefono_e164"), ("celular", "celular_e164"))
# The tables holding the derived columns (migration 011).
DERIVED_TABLES: tuple[str, ...] = ("ov_afinia", "ov_aire", "ov_afinia_history", "ov_aire_history")


def e164_map(values: pl.Series) -> dict[str, str | None]:
    """Each distinct value of ``values`` -> its E.164 form or None (one check per distinct value)."""
    return {v: phone_e164(v) for v in values.drop_nulls().unique().to_list()}


def phone_e164_columns(frame: pl.DataFrame) -> list[pl.Expr]:
    """Expressions giving ``telefono_e164`` and ``celular_e164`` for the rows of ``frame``."""
    return [
        pl.col(src).replace_strict(e164_map(frame[src]), default=None, return_dtype=pl.String()).alias(dst)
        for src, dst in PHONE_COLUMNS
    ]


def backfill_phone_e164(conn: psycopg.Connection) -> int:
    """Fill the derived phone columns of stored rows that have a phone but no E.164 form yet
    (invalid phones stay NULL); returns the number of cells filled. Inside the caller's
    transaction."""
    filled = 0
    for table in DERIVED_TABLES:
        target = sql.Identifier(SCHEMA, table)
        for src, dst in PHONE_COLUMNS:
            raw = [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT DISTINCT {src} FROM {t} WHERE {src} <> '' AND {dst} IS NULL").format(
                        src=sql.Identifier(src), dst=sql.Identifier(dst), t=target
                    )
                )
            ]
            pairs = [(v, e) for v in raw if (e := phone_e164(v)) is not None]
            if not pairs:
                continue
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {t} t SET {dst} = m.e164 FROM unnest(%s::text[], %s::text[]) AS m(raw, e164) "
                    "WHERE t.{src} = m.raw AND t.{dst} IS NULL"
                ).format(src=sql.Identifier(src), dst=sql.Identifier(dst), t=target),
                ([v for v, _ in pairs], [e for _, e in pairs]),
            )
            filled += cur.rowcount
    return filled
