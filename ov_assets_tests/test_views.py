"""Views and data dictionary (issue 19): ov_pqr and ov_pqr_masked, personal data for
ov_analyst_personal only, and one description per table, view and column that reads the same in
PostgreSQL's comments, the migrations, the Dagster column schemas and docs/data-dictionary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg import sql

from ov_assets.core import dictionary, dictionary_render
from ov_assets.core.contract import BUSINESS_FIELDS, PERSONAL_FIELDS
from ov_assets.core.records import FRAME_SCHEMA, empty_frame
from ov_assets.defs import assets
from ov_assets.warehouse import loading, migrations
from ov_assets.warehouse.tables import TABLE_COLUMNS
from ov_assets_tests import loadkit
from ov_assets_tests.loadkit import days_back, landing_frames, migrate, partitions_of

ROOT = Path(__file__).resolve().parent.parent
ANALYST, PERSONAL = dictionary.ANALYST_ROLE, dictionary.PERSONAL_ROLE
PQR_TABLES = ("ov_afinia", "ov_aire", "ov_afinia_history", "ov_aire_history", "ov_pqr")

# --- the one source and what is generated from it (no database) -----------------------------


def test_docs_file_is_what_the_dictionary_generates() -> None:
    docs = ROOT / dictionary_render.DOCS_PATH
    assert docs.read_text(encoding="utf-8") == dictionary_render.markdown(), (
        "docs/data-dictionary.md is stale: run python scripts/data_dictionary.py"
    )


def test_only_migration_008_holds_a_dictionary_block() -> None:
    """008 (released) keeps its copy; later descriptions reach the database through the
    repeatable step, not through copies of the whole block in every migration."""
    holders = [m.version for m in migrations.available() if dictionary_render.BEGIN_MARKER in m.sql]
    assert holders == ["008_views_and_dictionary"]


def test_dictionary_agrees_with_the_contract() -> None:
    assert tuple(dictionary.BUSINESS) == BUSINESS_FIELDS
    table = dictionary.relation("ov_afinia")
    assert {c.name for c in table.columns} == set(TABLE_COLUMNS)
    personal = set(dictionary.personal_columns("ov_pqr"))
    # every personal field of the contract is masked, except the NIC (an account, kept for analysis)
    assert set(PERSONAL_FIELDS) - {"nic"} <= personal
    assert {"lectura", "documento_prueba", "adjuntar_archivo", "finalizar"} <= personal  # free text, file names
    masked = {c.name for c in dictionary.OV_PQR_MASKED.columns}
    assert not masked & personal and not dictionary.personal_columns("ov_pqr_masked")
    assert {
        "nic",
        "fecha",
        "estado_solicitud",
        "tipo_pqr",
        "canal_respuesta",
        "warnings",
        "archivos_count",
        "adjuntos_count",
    } <= masked
    assert [name for name, _, _ in dictionary.FRAME_COLUMNS] == list(FRAME_SCHEMA)
    for rel in dictionary.RELATIONS:
        assert rel.description and all(c.description for c in rel.columns), rel.name
        assert len({c.name for c in rel.columns}) == len(rel.columns), rel.name


def _schema_of(asset: dg.AssetsDefinition, key: str) -> dg.TableSchema:
    schema = asset.specs_by_key[dg.AssetKey(key)].metadata["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    return schema


def test_assets_column_schemas_carry_the_descriptions() -> None:
    table = _schema_of(assets.pqr_table, "pqr_table")
    assert [(c.name, c.type, c.description) for c in table.columns] == [
        (c.name, c.type, c.description) for c in dictionary.relation("ov_afinia").columns
    ]
    records = _schema_of(assets.pqr_records, "pqr_records")
    assert [(c.name, c.type, c.description) for c in records.columns] == list(dictionary.FRAME_COLUMNS)
    assert all(c.description for c in records.columns)
    # what a materialization reports (the frame's own schema) finds a description for every column
    assert [c.name for c in records.columns] == list(empty_frame().schema)


# --- against the server ----------------------------------------------------------------------


def _catalog(conn: psycopg.Connection) -> dict[str, tuple[str, str | None, list[tuple[str, str, str | None]]]]:
    """relation -> (kind, comment, [(column, type, comment)]) of every table and view of data_general."""
    out: dict[str, tuple[str, str | None, list[tuple[str, str, str | None]]]] = {}
    for oid, name, kind, comment in conn.execute(
        "SELECT c.oid, c.relname, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END, "
        "obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'p')",
        (dictionary.SCHEMA,),
    ):
        cols = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), col_description(attrelid, attnum) "
            "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        out[name] = (kind, comment, cols)
    return out


def test_every_table_view_and_column_has_the_dictionarys_comment(pg_conninfo) -> None:
    migrate(pg_conninfo)
    with psycopg.connect(**pg_conninfo) as conn:
        catalog = _catalog(conn)
    expected = {
        r.name: (r.kind, r.description, [(c.name, c.type, c.description) for c in r.columns])
        for r in dictionary.RELATIONS
    }
    assert sorted(catalog) == sorted(expected)
    for name, want in expected.items():
        assert catalog[name] == want, name
    assert all(comment for _, _, cols in catalog.values() for _, _, comment in cols)


def _dictionary_state(conn: psycopg.Connection) -> str:
    return next(s.state for s in migrations.status(conn) if s.version == migrations.DICTIONARY)


def test_a_changed_description_is_applied_again_once(pg_conninfo, monkeypatch) -> None:
    migrate(pg_conninfo)
    reworded = "Files of the partition the load read (reworded)."
    rows = [
        (rel, col, reworded if (rel, col) == ("ov_quality_daily", "files_seen") else text)
        for rel, col, text in dictionary_render.comment_rows()
    ]
    column = "SELECT col_description('data_general.ov_quality_daily'::regclass, attnum) FROM pg_attribute "
    column += "WHERE attrelid = 'data_general.ov_quality_daily'::regclass AND attname = 'files_seen'"
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        assert _dictionary_state(conn) == "applied"
        (before,) = conn.execute(column).fetchone()
        assert before == next(
            c.description for c in dictionary.relation("ov_quality_daily").columns if c.name == "files_seen"
        )
        assert before != reworded
        monkeypatch.setattr(dictionary_render, "comment_rows", lambda: rows)
        assert _dictionary_state(conn) == "pending"  # a changed repeatable step is pending, never "changed"
        assert migrations.ensure_current(conn) == [migrations.DICTIONARY]
        assert conn.execute(column).fetchone() == (reworded,)
        assert _dictionary_state(conn) == "applied"
        assert migrations.apply_all(conn) == []  # recorded: nothing runs again
        monkeypatch.undo()
        assert _dictionary_state(conn) == "pending"
        assert migrations.apply_all(conn) == [migrations.DICTIONARY]
        assert conn.execute(column).fetchone() == (before,)


def _load(conninfo: dict[str, Any], data_dir: Path) -> pl.DataFrame:
    frame = landing_frames(data_dir, days_back(2), n=6)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for day, empresa in partitions_of(frame):
            assert loading.load_partition(conn, empresa, day, frame, "views-run").db_inserted > 0
    return frame.filter(pl.col("is_winner"))


def _personal_values(winners: pl.DataFrame) -> set[str]:
    cols = [c for c in dictionary.personal_columns("ov_pqr") if c in winners.columns]
    values = {v for c in cols for v in winners[c].to_list() if v}
    assert len(values) > 10  # the corpus holds personal data, so its absence below means something
    return values


def test_views_and_who_reads_them(pg_conninfo, data_dir) -> None:
    migrate(pg_conninfo)
    winners = _load(pg_conninfo, data_dir)
    files = [
        {"file_type": t, "filename": f"x.{t}", "s3_url": f"s3://b/x.{t}", "sha256": "0" * 64}
        for t in ("json", "pdf", "attachment")
    ]
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        (linked,) = conn.execute(
            "UPDATE data_general.ov_aire SET archivos_s3_urls = %s::jsonb "
            "WHERE id = (SELECT min(id) FROM data_general.ov_aire) RETURNING numero_radicado",
            (json.dumps(files),),
        ).fetchone()
        base = sorted(
            conn.execute(
                "SELECT 'afinia', numero_radicado, nombres_apellidos FROM data_general.ov_afinia "
                "UNION ALL SELECT 'aire', numero_radicado, nombres_apellidos FROM data_general.ov_aire"
            ).fetchall()
        )
    assert sorted(set(winners.select("empresa", "numero_radicado").iter_rows())) == [(e, r) for e, r, _ in base]

    with loadkit.login_roles(pg_conninfo, ANALYST, PERSONAL) as users:
        with psycopg.connect(**users[ANALYST], autocommit=True) as conn:
            cur = conn.execute("SELECT * FROM data_general.ov_pqr_masked ORDER BY empresa, numero_radicado")
            columns = [d.name for d in cur.description or ()]
            masked = cur.fetchall()
            for table in PQR_TABLES:
                for column in ("nombres_apellidos", "nic"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(
                            sql.SQL("SELECT {} FROM {}.{}").format(
                                sql.Identifier(column), sql.Identifier(dictionary.SCHEMA), sql.Identifier(table)
                            )
                        )
            for ex in dictionary_render.EXAMPLES:
                if ex.role == ANALYST:
                    conn.execute(ex.sql)
                else:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(ex.sql)
        with psycopg.connect(**users[PERSONAL], autocommit=True) as conn:
            union = sorted(
                conn.execute("SELECT empresa, numero_radicado, nombres_apellidos FROM data_general.ov_pqr").fetchall()
            )
            conn.execute("SELECT nombres_apellidos FROM data_general.ov_afinia_history")
            assert conn.execute("SELECT count(*) FROM data_general.ov_pqr_masked").fetchone() == (len(base),)
            for ex in dictionary_render.EXAMPLES:
                conn.execute(ex.sql)

    assert union == base  # both empresas, each row with its own empresa
    assert columns == [c.name for c in dictionary.OV_PQR_MASKED.columns]
    assert [(r[0], r[1]) for r in masked] == [(e, r) for e, r, _ in base]
    personal = _personal_values(winners)
    wordy = [v for v in personal if any(ch.isalpha() or ch == "@" for ch in v)]
    for row in masked:
        cells = [str(v) for v in row] + [w for v in row if isinstance(v, list) for w in map(str, v)]
        assert not personal & set(cells), row[:2]
        text = repr(row)
        assert not [v for v in wordy if v in text], row[:2]
    counts = {(r[0], r[1]): (r[columns.index("archivos_count")], r[columns.index("adjuntos_count")]) for r in masked}
    assert counts.pop(("aire", linked)) == (3, 1)
    assert set(counts.values()) == {(0, 0)}
