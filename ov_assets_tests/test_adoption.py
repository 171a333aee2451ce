"""Adopting what the old system left (issue 16, CONTRACT §6): a database holding the old-shape
``ov_afinia``, ``s3_files_registry`` (and its ``_backup``) and ``registros_ov_s3`` with rows, and
a bucket holding their objects under the old layouts. ``ov-assets migrate`` exits 0, loses no old
row, makes every listed key known to the new registry, and a materialization then stores
nothing twice."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg.rows import dict_row

from ov_assets import cli
from ov_assets.defs.assets import pqr_assets
from ov_assets.devkit import generator
from ov_assets.devkit.servers import postgres_env
from ov_assets.errors import OperatorError
from ov_assets.objects import archive
from ov_assets.objects.layout_migration import migrate_layout
from ov_assets.warehouse import migrations
from ov_assets_tests.archive_support import bucket_keys, client, frame_for, store_resource
from ov_assets_tests.support import pipeline_resources

DAY = dt.date(2025, 10, 8)
UNKNOWN_RADICADO = "209901010000001"  # a PQR no table holds
OLD_TABLES = ("s3_files_registry", "s3_files_registry_backup", "registros_ov_s3")

OLD_SCHEMA = """
CREATE SCHEMA data_general;
CREATE TABLE data_general.ov_afinia (
    id SERIAL PRIMARY KEY, numero_radicado VARCHAR(50) UNIQUE NOT NULL, fecha TIMESTAMP,
    numero_reclamo_sgc VARCHAR(20), estado_solicitud VARCHAR(50), hash_registro VARCHAR(64),
    fecha_extraccion TIMESTAMP, archivos_s3_urls JSONB, procesado_flag BOOLEAN DEFAULT FALSE);
CREATE TABLE data_general.s3_files_registry (
    id SERIAL PRIMARY KEY, filename VARCHAR(255) NOT NULL, s3_bucket VARCHAR(100) NOT NULL,
    s3_key VARCHAR(500) NOT NULL UNIQUE, s3_url TEXT, numero_reclamo_sgc VARCHAR(50), empresa VARCHAR(50),
    file_size BIGINT, file_type VARCHAR(50), content_type VARCHAR(100), upload_status VARCHAR(20) DEFAULT 'pending',
    upload_source VARCHAR(20), file_hash VARCHAR(64), created_at TIMESTAMP DEFAULT now(),
    updated_at TIMESTAMP DEFAULT now(), uploaded_at TIMESTAMP, metadata JSONB);
-- a name migration 001 uses for its own index (IF NOT EXISTS would silently skip it)
CREATE INDEX s3_files_registry_pqr_idx ON data_general.s3_files_registry (empresa, numero_reclamo_sgc);
CREATE TABLE data_general.registros_ov_s3 (
    id SERIAL PRIMARY KEY, nombre_archivo VARCHAR(255), ruta_original TEXT, tamano_archivo BIGINT,
    tipo_archivo VARCHAR(50), hash_archivo VARCHAR(64) UNIQUE, bucket_s3 VARCHAR(100), clave_s3 VARCHAR(500) UNIQUE,
    url_s3 TEXT, region_s3 VARCHAR(50), numero_reclamo_sgc VARCHAR(50), empresa VARCHAR(50), tipo_contenido VARCHAR(100),
    estado_carga VARCHAR(20), origen_carga VARCHAR(20), procesado BOOLEAN DEFAULT FALSE,
    sincronizado_bd BOOLEAN DEFAULT FALSE, requiere_resubida BOOLEAN DEFAULT FALSE, metadatos JSONB, observaciones TEXT,
    intentos_carga INTEGER DEFAULT 0, ultimo_error TEXT, fecha_carga TIMESTAMP, fecha_archivo TIMESTAMP,
    fecha_creacion TIMESTAMP DEFAULT now(), fecha_actualizacion TIMESTAMP DEFAULT now());
"""

_OLD_INSERT = """INSERT INTO data_general.s3_files_registry (filename, s3_bucket, s3_key, s3_url, numero_reclamo_sgc,
    empresa, file_size, file_type, content_type, upload_status, upload_source, file_hash, uploaded_at, metadata)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
_NEW_INSERT = """INSERT INTO data_general.registros_ov_s3 (nombre_archivo, ruta_original, tamano_archivo, tipo_archivo,
    hash_archivo, bucket_s3, clave_s3, url_s3, region_s3, numero_reclamo_sgc, empresa, tipo_contenido, estado_carga,
    origen_carga, fecha_carga) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'us-east-1', %s, %s, %s, %s, %s, %s)"""


@dataclass
class OldWorld:
    frame: pl.DataFrame
    planned: list[archive.PlannedObject]
    old_keys: dict[str, str]  # planned key -> the old key its bytes are stored under
    missing_pqr: str  # a radicado the old ov_afinia does not hold (resolved by the landing folder)
    radicados: dict[str, str]  # old key -> the radicado it must be linked to (None: unresolvable)
    error_key: str  # listed by the old registry as failed: no object


def _old_key(i: int, o: archive.PlannedObject) -> str:
    folder = o.numero_reclamo_sgc or o.numero_radicado
    if i % 3 == 0:
        return f"raw_data/{folder}/{o.filename}"
    if i % 3 == 1:  # the old dated layout, on the old loader's (later) day
        return f"oficina-virtual/afinia/2025/10/{DAY.day + 2:02d}/{folder}/{o.filename}"
    return o.key  # the old dated layout on the partition's day: the same key as today's


def build_old_world(conninfo: dict[str, Any], data_dir: Path, endpoint: str, bucket: str) -> OldWorld:
    """Landing files of one partition, the old system's tables listing every one of them (in
    both SGC conventions, spread over the three registries) and the bucket holding them."""
    generator.write_day(data_dir, "afinia", DAY, n=5, seed=2)
    frame = frame_for(data_dir, "afinia", DAY)
    planned = sorted(archive.plan_objects(frame, data_dir, "default", "oficina-virtual"), key=lambda o: o.key)
    pqrs = sorted({(o.numero_radicado, o.numero_reclamo_sgc) for o in planned})
    missing_pqr = pqrs[-1][0]
    s3 = client(endpoint)
    old_keys, radicados = {}, {}
    old_rows, new_rows = [], []
    for i, o in enumerate(planned):
        key = _old_key(i, o)
        old_keys[o.key] = key
        radicados[key] = o.numero_radicado
        s3.put_object(Bucket=bucket, Key=key, Body=o.path.read_bytes())
        # numero_reclamo_sgc holds the SGC for some PQRs and the radicado (the old verification's
        # join) for others
        pqr_index = pqrs.index((o.numero_radicado, o.numero_reclamo_sgc))
        old_value = o.numero_reclamo_sgc if pqr_index % 2 == 0 and o.numero_reclamo_sgc else o.numero_radicado
        uploaded = dt.datetime(2025, 10, 10, 9, 30)
        old = (
            o.filename,
            bucket,
            key,
            f"https://{bucket}.s3.amazonaws.com/{key}",
            old_value,
            "Afinia",
            o.size,
            o.file_type,
            archive.content_type(o.filename),
            "uploaded",
            "bot",
            o.sha256,
            uploaded,
            '{"from": "bot"}',
        )
        new = (
            o.filename,
            f"C:\\ov\\data\\{o.filename}",
            o.size,
            o.file_type,
            o.sha256,
            bucket,
            key,
            f"https://{bucket}.s3.amazonaws.com/{key}",
            old_value,
            "afinia",
            archive.content_type(o.filename),
            "subido" if i % 2 else "pre_existente",
            "bot",
            uploaded,
        )
        if i % 4 in (1, 2, 3):
            old_rows.append(old)
        if i % 4 in (0, 3):
            new_rows.append(new)
    # Beyond the partition: an aire object of a PQR nobody knows, a failed upload, a row without a key.
    unknown_key = f"raw_data/{UNKNOWN_RADICADO}/{UNKNOWN_RADICADO}_adjunto.pdf"
    s3.put_object(Bucket=bucket, Key=unknown_key, Body=b"%PDF-1.4 old")
    radicados[unknown_key] = None  # type: ignore[assignment]
    error_key = "raw_data/7000001/pqr_data_7000001_20240101.json"
    new_rows.append(
        (
            "unknown.pdf",
            "",
            12,
            "adjunto",
            "e" * 64,
            bucket,
            unknown_key,
            None,
            UNKNOWN_RADICADO,
            "Air-e",
            "application/pdf",
            "pre_existente",
            "migracion",
            None,
        )
    )
    old_rows.append(
        (
            "pqr_data_7000001_20240101.json",
            bucket,
            error_key,
            None,
            "7000001",
            "afinia",
            None,
            "json",
            None,
            "error",
            "bot",
            None,
            None,
            None,
        )
    )
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(OLD_SCHEMA)
        with conn.cursor() as cur:
            cur.executemany(_OLD_INSERT, old_rows)
            cur.executemany(_NEW_INSERT, new_rows)
            cur.execute("INSERT INTO data_general.registros_ov_s3 (nombre_archivo, estado_carga) VALUES ('x', 'error')")
            cur.executemany(
                "INSERT INTO data_general.ov_afinia (numero_radicado, fecha, numero_reclamo_sgc, hash_registro, "
                "fecha_extraccion) VALUES (%s, %s, %s, %s, %s)",
                [
                    (r, dt.datetime.combine(DAY, dt.time(8)), s or None, f"{n:064x}", dt.datetime(2025, 10, 10))
                    for n, (r, s) in enumerate(pqrs)
                    if r != missing_pqr
                ],
            )
        conn.execute(
            "CREATE TABLE data_general.s3_files_registry_backup AS "
            "SELECT * FROM data_general.s3_files_registry WHERE id % 2 = 1"
        )
        conn.execute(
            "INSERT INTO data_general.s3_files_registry_backup (id, filename, s3_bucket, s3_key, empresa, "
            "upload_status, file_hash) VALUES (900, 'only-in-backup.pdf', %s, 'raw_data/7000002/only-in-backup.pdf', "
            "'afinia', 'uploaded', %s)",
            (bucket, "f" * 64),
        )
    s3.put_object(Bucket=bucket, Key="raw_data/7000002/only-in-backup.pdf", Body=b"%PDF-1.4 backup")
    radicados["raw_data/7000002/only-in-backup.pdf"] = None  # type: ignore[assignment]
    return OldWorld(frame, planned, old_keys, missing_pqr, radicados, error_key)


def old_rows(conninfo: dict[str, Any], names: dict[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the old tables, verbatim (``names``: where each table is now)."""
    names = names or {t: t for t in OLD_TABLES}
    with psycopg.connect(**conninfo, row_factory=dict_row) as conn:
        return {t: conn.execute(f"SELECT * FROM data_general.{names[t]} ORDER BY id").fetchall() for t in OLD_TABLES}


def registry(conninfo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    with psycopg.connect(**conninfo, row_factory=dict_row) as conn:
        return {r["s3_key"]: r for r in conn.execute("SELECT * FROM data_general.s3_files_registry ORDER BY id")}


def migrate(conninfo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    for k, v in postgres_env(conninfo).items():
        monkeypatch.setenv(k, v)
    code = cli.main(["migrate"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    return captured.out


SET_ASIDE = {
    "s3_files_registry": "s3_files_registry_old",
    "s3_files_registry_backup": "s3_files_registry_backup",
    "registros_ov_s3": "registros_ov_s3",
}


def test_migrate_adopts_the_old_registries_and_loses_no_row(
    pg_conninfo, data_dir, s3_endpoint, s3_bucket, monkeypatch, capsys
):
    world = build_old_world(pg_conninfo, data_dir, s3_endpoint, s3_bucket)
    before = old_rows(pg_conninfo)
    assert all(before.values())

    out = migrate(pg_conninfo, monkeypatch, capsys)

    # No old row lost or changed: the old registry is kept verbatim as s3_files_registry_old.
    assert old_rows(pg_conninfo, SET_ASIDE) == before
    # Every key an old registry lists is known to the new registry, with its bucket and hash.
    reg = registry(pg_conninfo)
    listed = {
        (r["s3_key"], r["s3_bucket"], r["file_hash"])
        for r in before["s3_files_registry"] + before["s3_files_registry_backup"]
    }
    listed |= {(r["clave_s3"], r["bucket_s3"], r["hash_archivo"]) for r in before["registros_ov_s3"] if r["clave_s3"]}
    assert listed
    for key, bucket, sha in listed:
        row = reg[key]
        assert (row["s3_bucket"], row["file_hash"], row["upload_source"]) == (bucket, sha, "migration"), key
        assert row["s3_url"] == f"s3://{bucket}/{key}" and row["metadata"]["adopted_from"] in set(SET_ASIDE.values())
        assert row["upload_status"] == ("error" if key == world.error_key else "pre_existing"), key
    assert reg[world.error_key]["last_error"]
    # Linked to the PQR in both SGC conventions; unresolvable ones kept, with numero_radicado NULL.
    for key, radicado in world.radicados.items():
        expected = None if radicado == world.missing_pqr else radicado
        assert reg[key]["numero_radicado"] == expected, key
    assert reg[f"raw_data/{UNKNOWN_RADICADO}/{UNKNOWN_RADICADO}_adjunto.pdf"]["empresa"] == "aire"
    unresolved = sum(1 for r in reg.values() if r["numero_radicado"] is None)
    assert unresolved >= 3
    # The table-wide orphan check counts the unresolved apart instead of failing on them.
    from ov_assets.defs.checks.tablewide import orphan_registry_rows

    with psycopg.connect(**pg_conninfo) as conn:
        verdict = orphan_registry_rows(conn)
    assert verdict.passed, verdict.metadata
    assert verdict.metadata["adopted_not_linked"] == unresolved
    # The report: counts per old table, the row without a key, the unresolved; nothing personal.
    assert "old registry registros_ov_s3:" in out and "1 not adoptable" in out
    assert f"of which {unresolved} not yet linked to a PQR" in out
    for value in {o.numero_radicado for o in world.planned} | {o.filename for o in world.planned} | {UNKNOWN_RADICADO}:
        assert value not in out

    # Again: nothing changes (the adoption reruns on every migrate and finds everything known).
    assert "applied nothing" in migrate(pg_conninfo, monkeypatch, capsys)
    assert registry(pg_conninfo) == reg and old_rows(pg_conninfo, SET_ASIDE) == before
    # The new registry is the one 001 creates (its index is not the old table's).
    with psycopg.connect(**pg_conninfo) as conn:
        (indexed,) = conn.execute(
            "SELECT indrelid::regclass::text FROM pg_index "
            "WHERE indexrelid = 'data_general.s3_files_registry_pqr_idx'::regclass"
        ).fetchone()
    assert indexed == "data_general.s3_files_registry"


def test_materialization_after_adoption_stores_nothing_twice(
    pg_conninfo18, data_dir, s3_endpoint, s3_bucket, monkeypatch, capsys
):
    world = build_old_world(pg_conninfo18, data_dir, s3_endpoint, s3_bucket)
    migrate(pg_conninfo18, monkeypatch, capsys)
    objects_before = bucket_keys(s3_endpoint, s3_bucket)
    resources = pipeline_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    result = dg.materialize(
        pqr_assets, resources=resources, partition_key=f"{DAY.isoformat()}|afinia", raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    # Nothing stored: every landing file is an object the old system stored.
    assert bucket_keys(s3_endpoint, s3_bucket) == objects_before
    mat = result.asset_materializations_for_node("pqr_s3_objects")[0]
    assert mat.metadata["s3_uploaded"].value == 0
    reg = registry(pg_conninfo18)
    assert not [k for k, r in reg.items() if r["upload_source"] != "migration"]
    # The table rows point at the old keys; the PQR the old table lacked is linked now.
    with psycopg.connect(**pg_conninfo18) as conn:
        rows = dict(
            conn.execute(
                "SELECT numero_radicado, archivos_s3_urls FROM data_general.ov_afinia WHERE archivo_origen IS NOT NULL"
            ).fetchall()
        )
        flags = conn.execute(
            "SELECT bool_and(procesado_flag) FROM data_general.ov_afinia WHERE archivo_origen IS NOT NULL"
        ).fetchone()
    assert flags == (True,)
    urls = {u["s3_url"] for listed in rows.values() for u in listed}
    winner_files = {
        f["filename"] for files in world.frame.filter(pl.col("is_winner"))["files"].to_list() for f in files
    }
    assert urls == {f"s3://{s3_bucket}/{world.old_keys[o.key]}" for o in world.planned if o.filename in winner_files}
    for o in world.planned:
        assert reg[world.old_keys[o.key]]["numero_radicado"] == o.numero_radicado

    # Idempotent: a rerun stores nothing and changes no registry row.
    dg.materialize(pqr_assets, resources=resources, partition_key=f"{DAY.isoformat()}|afinia")
    assert registry(pg_conninfo18) == reg and bucket_keys(s3_endpoint, s3_bucket) == objects_before

    # The layout migration leaves the old system's objects where the old tables name them.
    store = store_resource(s3_endpoint, s3_bucket, data_dir, layout="central").open()
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        counts = migrate_layout(conn, store, "central", "oficina-virtual")
    assert not counts.errors and counts.moved == 0
    assert bucket_keys(s3_endpoint, s3_bucket) == objects_before


def test_old_registry_name_taken_is_an_operator_message(pg_conninfo18):
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA data_general")
        conn.execute("CREATE TABLE data_general.s3_files_registry (id SERIAL PRIMARY KEY, s3_key TEXT)")
        conn.execute("CREATE TABLE data_general.s3_files_registry_old (id INT)")
        with pytest.raises(OperatorError, match="s3_files_registry_old exists already"):
            migrations.apply_all(conn)
        assert conn.execute("SELECT to_regclass('data_general.ov_afinia')").fetchone() == (None,)


def test_failing_migration_is_an_operator_message(pg_conninfo18, tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, sql_dir)
    (sql_dir / "999_broken.sql").write_text("CREATE INDEX x ON data_general.s3_files_registry (no_such_column);\n")
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        with pytest.raises(OperatorError, match=r"migration 999_broken failed and was rolled back.*no_such_column"):
            migrations.apply_all(conn, sql_dir)
        assert "999_broken" not in migrations.applied(conn)
