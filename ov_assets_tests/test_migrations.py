"""Migrations (issue 4): adoption of the old system's tables, checksums, listing, and the
least-privilege roles, against PostgreSQL 18 (embedded) and 15 (Debian)."""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import psycopg
import pytest

from ov_assets import cli
from ov_assets.core import dictionary_render
from ov_assets.devkit.servers import postgres_env
from ov_assets.errors import OperatorError
from ov_assets.warehouse import loading, migrations, pg_client
from ov_assets_tests import loadkit
from ov_assets_tests.loadkit import days_back, landing_frames, migrate, partitions_of, resource

OLD_SHAPE = """
CREATE SCHEMA data_general;
CREATE TABLE data_general.{t} (
    id                 SERIAL PRIMARY KEY,
    numero_radicado    VARCHAR(50) UNIQUE NOT NULL,
    fecha              TIMESTAMP,
    nic                VARCHAR(20),
    documento_identidad VARCHAR(20),
    correo_electronico VARCHAR(100),
    telefono           VARCHAR(20),
    celular            VARCHAR(20),
    estado_solicitud   VARCHAR(50),
    hash_registro      VARCHAR(64),
    fecha_extraccion   TIMESTAMP,
    archivos_s3_urls   JSONB,
    procesado_flag     BOOLEAN DEFAULT FALSE
);
"""


def _columns(conn, table):
    return {
        name: (dtype, length)
        for name, dtype, length in conn.execute(
            "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
            "WHERE table_schema = 'data_general' AND table_name = %s",
            (table,),
        )
    }


def test_adopts_old_shape_tables_and_replaces_adopted_rows_with_history(pg_conninfo, data_dir):
    frame = landing_frames(data_dir, days_back(1), n=6)
    (day, _), _ = partitions_of(frame)
    winner = frame.filter((pl.col("empresa") == "afinia") & pl.col("is_winner")).row(0, named=True)
    later = winner["fecha_extraccion"] + dt.timedelta(days=30)  # the old loader's load time: "newer" than any file
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        conn.execute(OLD_SHAPE.format(t="ov_afinia"))
        conn.execute(OLD_SHAPE.format(t="ov_aire").replace("CREATE SCHEMA data_general;", ""))
        rows = [
            (
                winner["numero_radicado"],
                winner["fecha_dt"],
                "7301245",
                "1045678912",
                "old@example.com",
                "6053456789",
                "3001234567",
                "Radicado",
                "a" * 64,
                later,
                '[{"s3_url": "s3://old/x.json"}]',
                True,
            ),
            (
                "201901010000001",
                dt.datetime(2021, 1, 1, 8),
                "1",
                "2",
                "x@example.com",
                "",
                "",
                "Finalizado",
                "b" * 64,
                later,
                None,
                False,
            ),
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO data_general.ov_afinia (numero_radicado, fecha, nic, documento_identidad, "
                "correo_electronico, telefono, celular, estado_solicitud, hash_registro, fecha_extraccion, "
                "archivos_s3_urls, procesado_flag) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

        assert migrations.apply_all(conn) == [*(m.version for m in migrations.available()), migrations.DICTIONARY]
        cols = _columns(conn, "ov_afinia")
        for c in ("nic", "documento_identidad", "telefono", "celular", "numero_radicado", "numero_reclamo_sgc"):
            assert cols[c] == ("character varying", 50), c
        assert cols["correo_electronico"] == ("character varying", 320)
        for c in ("nombres_apellidos", "cuerpo_reclamacion", "comentarios", "archivo_origen"):
            assert cols[c][0] == "text", c
        assert cols["warnings"][0] == "jsonb" and cols["updated_at"][0] == "timestamp with time zone"
        assert conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone() == (2,)
        kept = conn.execute(
            "SELECT id, nic, archivos_s3_urls, procesado_flag, archivo_origen FROM data_general.ov_afinia "
            "WHERE numero_radicado = '201901010000001'"
        ).fetchone()
        assert kept == (2, "1", None, False, None)
        assert migrations.apply_all(conn) == []  # idempotent

        # Any ov-assets extraction replaces an adopted row (even with an older timestamp),
        # and its first update writes the adopted version to history.
        counts = loading.load_partition(conn, "afinia", day, frame, "adopt-run")
        assert counts.db_updated == 1 and counts.db_skipped_older == 0
        row = conn.execute(
            "SELECT hash_registro, archivo_origen, estado_solicitud, id FROM data_general.ov_afinia "
            "WHERE numero_radicado = %s",
            (winner["numero_radicado"],),
        ).fetchone()
        assert row == (winner["hash_registro"], winner["file_name"], winner["estado_solicitud"], 1)
        hist = conn.execute(
            "SELECT hash_registro, archivo_origen, nic, replaced_by_run FROM data_general.ov_afinia_history"
        ).fetchall()
        assert hist == [("a" * 64, None, "7301245", "adopt-run")]
        # new radicados get ids from the adopted SERIAL sequence
        (new_ids,) = conn.execute("SELECT min(id) FROM data_general.ov_afinia WHERE id > 2").fetchone()
        assert new_ids is not None


def test_changed_migration_is_refused_and_listed(pg_conninfo, tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, sql_dir)
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        migrations.apply_all(conn, sql_dir)
        assert {s.state for s in migrations.status(conn, sql_dir)} == {"applied"}
        (sql_dir / "001_schema.sql").write_text((sql_dir / "001_schema.sql").read_text() + "\n-- edited\n")
        (sql_dir / "999_later.sql").write_text("CREATE TABLE data_general.later (x int);\n")
        states = {s.version: s.state for s in migrations.status(conn, sql_dir)}
        assert states["001_schema"] == "changed" and states["999_later"] == "pending"
        with pytest.raises(OperatorError, match="never edit an applied migration"):
            migrations.apply_all(conn, sql_dir)
        with pytest.raises(OperatorError, match="never edit an applied migration"):
            migrations.ensure_current(conn, sql_dir)


def test_cli_migrate_applies_and_lists(pg_conninfo, monkeypatch, capsys):
    for k, v in postgres_env(pg_conninfo).items():
        monkeypatch.setenv(k, v)
    assert cli.main(["migrate", "--list"]) == 1  # pending: listing changes nothing
    out = capsys.readouterr().out
    assert "001_schema" in out and "pending" in out
    with psycopg.connect(**pg_conninfo) as conn:
        assert conn.execute("SELECT to_regclass('data_general.ov_afinia')").fetchone() == (None,)
    assert cli.main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied 001_schema, 002_roles" in out
    assert cli.main(["migrate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "pending" not in out and out.count("applied") == len(migrations.available()) + 1
    assert migrations.DICTIONARY in out  # the repeatable step is listed, after the files


@pytest.fixture
def login_roles(pg_conninfo):
    """Two login users, members of ov_loader and ov_analyst (keys ``loader``, ``analyst``)."""
    migrate(pg_conninfo)
    with loadkit.login_roles(pg_conninfo, "ov_loader", "ov_analyst") as users:
        yield {"loader": users["ov_loader"], "analyst": users["ov_analyst"]}


def test_loader_role_loads_but_cannot_delete_or_alter_and_analyst_only_reads(pg_conninfo, login_roles, data_dir):
    frame = landing_frames(data_dir, days_back(1), n=5)
    loader = resource(login_roles["loader"], retries=0)
    # The schema is current: the loader needs no DDL right to start.
    for day, empresa in partitions_of(frame):
        counts = loader.run(lambda conn, d=day, e=empresa: loading.load_partition(conn, e, d, frame, "as-loader"))
        assert counts.db_inserted > 0
    with psycopg.connect(**login_roles["loader"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM data_general.ov_afinia")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE data_general.ov_afinia ADD COLUMN x int")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE data_general.x (i int)")
    with psycopg.connect(**login_roles["analyst"], autocommit=True) as conn:
        # personal data is masked by default (issue 19; test_views.py tests the rest)
        (n,) = conn.execute("SELECT count(*) FROM data_general.ov_pqr_masked").fetchone()
        assert n > 0
        conn.execute("SELECT count(*) FROM data_general.ov_load_audit, data_general.s3_files_registry")
        for stmt in (
            "INSERT INTO data_general.ov_rejects (empresa, partition_date, file_name, reason_code) "
            "VALUES ('afinia', '2025-01-01', 'x', 'y')",
            "UPDATE data_general.ov_afinia SET procesado_flag = TRUE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)


def test_loader_with_a_changed_dictionary_is_told_to_migrate(pg_conninfo, login_roles, monkeypatch):
    """Current comments: the loader runs no DDL (the test above). Changed ones: it may not apply
    them, and is told to run the migrations as the owner, like for a pending file."""
    rows = [(rel, col, f"{text} (v2)") for rel, col, text in dictionary_render.comment_rows()]
    monkeypatch.setattr(dictionary_render, "comment_rows", lambda: rows)
    with (
        psycopg.connect(**login_roles["loader"], autocommit=True) as conn,
        pytest.raises(OperatorError, match=rf"pending: {migrations.DICTIONARY}\b.*ov-assets migrate"),
    ):
        migrations.ensure_current(conn)


def test_a_restore_forgets_the_dictionary_step_only_when_its_comments_differ(pg_conninfo):
    """A backup records the last file applied and the dictionary's checksum (the comments are in
    the dump, the record is not); the step's row sorts after every file but is not one."""
    migrate(pg_conninfo)
    last = migrations.available()[-1].version
    assert pg_client.latest_migration(pg_conninfo) == last
    current = pg_client.dictionary_applied(pg_conninfo)
    assert current == migrations.dictionary_checksum()
    assert pg_client.forget_later_migrations(pg_conninfo, last, current) == []  # the same comments
    assert pg_client.forget_later_migrations(pg_conninfo, last, "0" * 64) == [migrations.DICTIONARY]
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        assert migrations.apply_all(conn) == [migrations.DICTIONARY]  # the restored comments are replaced
    before_last = migrations.available()[-2].version
    assert pg_client.forget_later_migrations(pg_conninfo, before_last, current) == [last, migrations.DICTIONARY]


def test_loader_with_pending_migrations_is_told_to_run_them(pg_conninfo, login_roles, tmp_path, monkeypatch):
    sql_dir = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, sql_dir)
    (sql_dir / "999_later.sql").write_text("CREATE TABLE data_general.later (x int);\n")
    monkeypatch.setattr(migrations, "SQL_DIR", sql_dir)
    monkeypatch.setattr(migrations.ensure_current, "__defaults__", (sql_dir,))
    with (
        psycopg.connect(**login_roles["loader"], autocommit=True) as conn,
        pytest.raises(OperatorError, match=r"pending: 999_later.*ov-assets migrate"),
    ):
        migrations.ensure_current(conn)
