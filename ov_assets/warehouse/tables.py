"""The warehouse's names: its schema, the PQR table of each empresa and its columns, and the
advisory lock of a partition; shared by the load, the checks, the archive and the reports."""

from __future__ import annotations

import datetime as dt

from ov_assets.core.contract import BUSINESS_FIELDS

SCHEMA = "data_general"
# Derived from the business fields, never part of hash_registro: the E.164 form of the phones
# (NULL when empty or not a valid Colombian number; migration 011).
DERIVED_COLUMNS: tuple[str, ...] = ("telefono_e164", "celular_e164")
# Columns the load writes, in COPY order (fecha is the parsed timestamp).
LOAD_COLUMNS: tuple[str, ...] = (
    *BUSINESS_FIELDS,
    "hash_registro",
    "fecha_extraccion",
    "archivo_origen",
    "warnings",
    *DERIVED_COLUMNS,
)
# Columns copied into history (everything of the current table but its generated defaults).
TABLE_COLUMNS: tuple[str, ...] = (
    "id",
    *LOAD_COLUMNS,
    "archivos_s3_urls",
    "procesado_flag",
    "created_at",
    "updated_at",
)


def table_name(empresa: str) -> str:
    """The table of ``empresa``'s PQRs (in ``SCHEMA``); ValueError for an unknown empresa."""
    if empresa not in ("afinia", "aire"):
        raise ValueError(f"unknown empresa {empresa!r}")
    return f"ov_{empresa}"


def lock_key(empresa: str, day: dt.date) -> str:
    """The advisory lock of a partition: every load of it holds this key until it commits."""
    return f"ov_assets:partition:{empresa}:{day.isoformat()}"
