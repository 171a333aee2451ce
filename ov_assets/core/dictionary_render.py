"""The data dictionary (``core.dictionary``) rendered for its readers: the ``COMMENT ON`` block
the migrations' repeatable step applies (``warehouse.migrations``, again whenever it changes),
and ``docs/data-dictionary.md`` with example queries.

Pure text, no I/O: ``scripts/data_dictionary.py`` writes the docs file, tests compare it and the
database's comments with the dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass

from ov_assets.core.contract import FINAL_STATUSES
from ov_assets.core.dictionary import (
    ANALYST_ROLE,
    FRAME_COLUMNS,
    PERSONAL_ROLE,
    RELATIONS,
    SCHEMA,
    Relation,
)

BEGIN_MARKER = "-- BEGIN data dictionary"
END_MARKER = "-- END data dictionary"
DOCS_PATH = "docs/data-dictionary.md"
_TAG = "$dictionary$"


def sql_literal(text: str) -> str:
    """A standard SQL string literal (quotes doubled; standard_conforming_strings is on)."""
    return "'" + text.replace("'", "''") + "'"


def comment_rows() -> list[tuple[str, str | None, str]]:
    """(relation, column or None, description) for every relation and column, in order."""
    rows: list[tuple[str, str | None, str]] = []
    for rel in RELATIONS:
        rows.append((rel.name, None, rel.description))
        rows += [(rel.name, c.name, c.description) for c in rel.columns]
    return rows


def comments_sql() -> str:
    """The block between the markers (markers included): ``COMMENT ON`` every relation and
    column of the dictionary that exists. Applied by the migrations' repeatable step after the
    files, and again after any file (a table adopted from the old system may lack a column a
    later migration adds). Migration 008 holds a copy of its first version."""
    values = []
    for rel, col, description in comment_rows():
        if _TAG in description:
            raise ValueError(f"description of {rel}.{col} holds {_TAG}")
        values.append(
            f"        ({sql_literal(rel)}, {'NULL' if col is None else sql_literal(col)}, {sql_literal(description)})"
        )
    body = ",\n".join(values)
    return f"""{BEGIN_MARKER}: generated from ov_assets/core/dictionary.py, applied by ov-assets migrate
DO {_TAG}
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT v.relation, v.column_name, v.description, c.oid, c.relkind
        FROM (VALUES
{body}
        ) AS v(relation, column_name, description)
        JOIN pg_class c ON c.oid = to_regclass(format('{SCHEMA}.%I', v.relation))
    LOOP
        IF d.column_name IS NULL THEN
            EXECUTE format('COMMENT ON %s {SCHEMA}.%I IS %L',
                           CASE d.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, d.relation, d.description);
        ELSIF EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = d.oid AND a.attname = d.column_name AND a.attnum > 0
                        AND NOT a.attisdropped) THEN
            EXECUTE format('COMMENT ON COLUMN {SCHEMA}.%I.%I IS %L', d.relation, d.column_name, d.description);
        END IF;
    END LOOP;
END {_TAG};
{END_MARKER}
"""


@dataclass(frozen=True)
class Example:
    title: str
    role: str
    sql: str


_OPEN = ", ".join(sql_literal(s) for s in sorted(FINAL_STATUSES))
_BOGOTA_NOW = "(now() AT TIME ZONE 'America/Bogota')"  # fecha is Bogotá local time, without zone

EXAMPLES: tuple[Example, ...] = (
    Example(
        "PQRs per week and status, last 8 weeks",
        ANALYST_ROLE,
        f"""\
SELECT empresa, date_trunc('week', fecha)::date AS week, estado_solicitud, count(*) AS pqrs
FROM {SCHEMA}.ov_pqr_masked
WHERE fecha >= date_trunc('week', {_BOGOTA_NOW}) - interval '8 weeks'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;""",
    ),
    Example(
        "Open PQRs filed more than 15 days ago",
        ANALYST_ROLE,
        f"""\
SELECT empresa, numero_radicado, fecha, tipo_pqr, estado_solicitud
FROM {SCHEMA}.ov_pqr_masked
WHERE estado_solicitud NOT IN ({_OPEN})
  AND fecha < {_BOGOTA_NOW} - interval '15 days'
ORDER BY fecha;""",
    ),
    Example(
        "A customer's PQRs by NIC",
        ANALYST_ROLE,
        f"""\
SELECT empresa, numero_radicado, fecha, tipo_pqr, estado_solicitud, archivos_count
FROM {SCHEMA}.ov_pqr_masked
WHERE nic = '7301245'
ORDER BY fecha DESC;""",
    ),
    Example(
        "Near-duplicates of a month (here September 2025: change the date)",
        ANALYST_ROLE,
        f"""\
SELECT d.empresa, d.numero_radicado, a.fecha, d.other_radicado, b.fecha AS other_fecha,
       d.days_apart, d.similarity, d.rule, a.tipo_pqr, b.estado_solicitud AS other_estado
FROM {SCHEMA}.ov_near_duplicates d
JOIN {SCHEMA}.ov_pqr_masked a ON a.empresa = d.empresa AND a.numero_radicado = d.numero_radicado
JOIN {SCHEMA}.ov_pqr_masked b ON b.empresa = d.empresa AND b.numero_radicado = d.other_radicado
WHERE greatest(a.fecha, b.fecha) >= DATE '2025-09-01'
  AND greatest(a.fecha, b.fecha) < DATE '2025-09-01' + interval '1 month'
ORDER BY d.similarity DESC, d.empresa, d.numero_radicado;""",
    ),
    Example(
        "Warnings by code and empresa",
        ANALYST_ROLE,
        f"""\
SELECT empresa, w.code, count(*) AS pqrs
FROM {SCHEMA}.ov_pqr_masked, jsonb_array_elements_text(warnings) AS w(code)
GROUP BY 1, 2
ORDER BY 3 DESC;""",
    ),
    Example(
        "Contact details of one PQR (need to know)",
        PERSONAL_ROLE,
        f"""\
SELECT nombres_apellidos, correo_electronico, celular, cuerpo_reclamacion
FROM {SCHEMA}.ov_pqr
WHERE empresa = 'afinia' AND numero_radicado = '202510080012345';""",
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _relation_md(rel: Relation) -> list[str]:
    lines = [
        f"### `{SCHEMA}.{rel.name}` ({rel.kind})",
        "",
        rel.description,
        "",
        "| column | type | personal | description |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{c.name}` | {c.type} | {'yes' if c.personal else ''} | {_cell(c.description)} |" for c in rel.columns
    ]
    return [*lines, ""]


def markdown() -> str:
    """``docs/data-dictionary.md``."""
    views = [r for r in RELATIONS if r.kind == "view"]
    tables = [r for r in RELATIONS if r.kind == "table"]
    lines = [
        "# Data dictionary",
        "",
        "<!-- Generated from ov_assets/core/dictionary.py by `python scripts/data_dictionary.py`; "
        "do not edit by hand (ov_assets_tests/test_views.py compares). -->",
        "",
        f"Every table, view and column ov-assets owns in PostgreSQL's schema `{SCHEMA}`. The same "
        "descriptions are the database's comments (`\\d+ data_general.ov_pqr_masked` in psql) and the "
        "column schemas of `pqr_table` and `pqr_records` in the Dagster UI.",
        "",
        "## Who reads what",
        "",
        f"- `{ANALYST_ROLE}`: `ov_pqr_masked` and every table without personal columns. It cannot read "
        "`ov_afinia`, `ov_aire`, their `_history` tables or `ov_pqr`.",
        f"- `{PERSONAL_ROLE}`: everything, personal columns included (personal = yes below). "
        "below). Grant it only to whoever needs to reach a customer or read a complaint (Ley 1581 de "
        "2012, habeas data), e.g. "
        f"`CREATE ROLE maria LOGIN PASSWORD '...' IN ROLE {PERSONAL_ROLE};`.",
        "",
        "Both are group roles without login, created by `ov-assets migrate` "
        "(`ov_assets/warehouse/sql/002_roles.sql`, `008_views_and_dictionary.sql`).",
        "",
        "## Example queries",
        "",
    ]
    for ex in EXAMPLES:
        lines += [f"{ex.title} (as `{ex.role}`):", "", "```sql", ex.sql, "```", ""]
    lines += ["## Views", ""]
    for rel in views:
        lines += _relation_md(rel)
    lines += ["## Tables", ""]
    for rel in tables:
        lines += _relation_md(rel)
    lines += [
        "## The `pqr_records` frame (Dagster asset)",
        "",
        "One row per record file of a partition (valid version or reject), stored as Parquet under "
        "`$OV_DATA_DIR/assets/` (owner-only: it holds personal data).",
        "",
        "| column | type | description |",
        "|---|---|---|",
        *(f"| `{name}` | {_cell(typ)} | {_cell(description)} |" for name, typ, description in FRAME_COLUMNS),
        "",
    ]
    return "\n".join(lines)
