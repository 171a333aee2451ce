"""Table-wide checks (ov_assets.defs.checks.tablewide), run alone through ``integrity_checks_job`` against a
real PostgreSQL and moto bucket: each invariant is broken for real, seen failing (naming the
empresa and key), and seen passing again once repaired."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import psycopg
import pytest

from ov_assets.core.contract import BOGOTA
from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.checks import tablewide as checks
from ov_assets.defs.jobs import integrity_checks_job
from ov_assets.devkit import generator
from ov_assets.warehouse import migrations
from ov_assets_tests.checks_support import (
    DAY_A,
    connect,
    key,
    make_resources,
    materialize,
    materialize_range,
    meta,
    write_newer_version,
)

T = "data_general"


def run_integrity(resources) -> dict[str, dg.AssetCheckEvaluation]:
    defs = dg.Definitions(
        assets=pqr_assets, asset_checks=checks.all_checks, jobs=[integrity_checks_job], resources=resources
    )
    result = defs.resolve_job_def("integrity_checks_job").execute_in_process(raise_on_error=False)
    assert result.success
    # nothing is materialized by a checks-only job
    assert not result.get_asset_materialization_events()
    return {ev.check_name: ev for ev in result.get_asset_check_evaluations()}


@pytest.fixture
def loaded(pg_conninfo18, data_dir, s3_endpoint, s3_bucket):
    """Both empresas of one day loaded into PostgreSQL and the bucket (one range run)."""
    gen = generator.write_day(data_dir, "afinia", DAY_A, n=8, broken=False)
    generator.write_day(data_dir, "aire", DAY_A, n=8, broken=False)
    res = make_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    assert materialize_range(res, key(DAY_A, "afinia"), key(DAY_A, "aire")).success
    write_newer_version(data_dir, gen)  # a later extraction: an update, so a history row
    assert materialize(res, key(DAY_A, "afinia")).success
    return res, pg_conninfo18


def _radicado_with_history(conn, empresa="afinia") -> str:
    row = conn.execute(f"SELECT numero_radicado FROM {T}.ov_{empresa}_history ORDER BY 1 LIMIT 1").fetchone()
    assert row, "the generated data has updated PQRs, so history rows"
    return row[0]


def test_all_tablewide_checks_pass_on_a_clean_load(loaded):
    res, _ = loaded
    evs = run_integrity(res)
    assert set(evs) == {"no_duplicate_keys", "no_orphan_registry_rows", "history_consistent", "load_freshness"}
    for name, ev in evs.items():
        assert ev.passed, (name, ev.metadata)
    assert meta(evs["no_orphan_registry_rows"], "registry_rows") > 0
    assert meta(evs["history_consistent"], "history_rows") > 0


def test_orphan_registry_row_fails_until_removed(loaded):
    res, ci = loaded
    with connect(ci) as conn:
        # Same SGC as a real row, but a radicado the table lacks: the join is on the radicado.
        sgc = conn.execute(
            f"SELECT numero_reclamo_sgc FROM {T}.ov_aire WHERE numero_reclamo_sgc <> '' LIMIT 1"
        ).fetchone()[0]
        conn.execute(
            f"""INSERT INTO {T}.s3_files_registry (empresa, numero_radicado, numero_reclamo_sgc, filename,
                    file_type, s3_bucket, s3_key, s3_url, upload_status)
                VALUES ('aire', 'ORPHAN-0001', %s, 'x_data_20251008_100000.json', 'json', 'b', 'k/orphan', 's3://b/k/orphan', 'uploaded')""",
            (sgc,),
        )
    ev = run_integrity(res)["no_orphan_registry_rows"]
    assert not ev.passed
    assert meta(ev, "failing") == ["aire:ORPHAN-0001"]
    assert "ORPHAN-0001" in meta(ev, "orphans_table")
    with connect(ci) as conn:
        conn.execute(f"DELETE FROM {T}.s3_files_registry WHERE numero_radicado = 'ORPHAN-0001'")
    assert run_integrity(res)["no_orphan_registry_rows"].passed


def test_deleted_table_row_leaves_orphans(loaded):
    res, ci = loaded
    with connect(ci) as conn:
        radicado = conn.execute(
            f"""SELECT t.numero_radicado FROM {T}.ov_afinia t WHERE NOT EXISTS
                (SELECT 1 FROM {T}.ov_afinia_history h WHERE h.numero_radicado = t.numero_radicado) LIMIT 1"""
        ).fetchone()[0]
        saved = conn.execute(f"SELECT * FROM {T}.ov_afinia WHERE numero_radicado = %s", (radicado,)).fetchone()
        cols = [d.name for d in conn.execute(f"SELECT * FROM {T}.ov_afinia LIMIT 0").description]
        conn.execute(f"DELETE FROM {T}.ov_afinia WHERE numero_radicado = %s", (radicado,))
    ev = run_integrity(res)["no_orphan_registry_rows"]
    assert not ev.passed and meta(ev, "failing") == [f"afinia:{radicado}"]
    with connect(ci) as conn:
        placeholders = ", ".join(["%s"] * len(cols))
        conn.execute(
            f"INSERT INTO {T}.ov_afinia ({', '.join(cols)}) OVERRIDING SYSTEM VALUE VALUES ({placeholders})",
            [psycopg.types.json.Jsonb(v) if isinstance(v, (list, dict)) else v for v in saved],
        )
    assert run_integrity(res)["no_orphan_registry_rows"].passed


def test_history_without_current_row_and_history_newer_than_current(loaded):
    res, ci = loaded
    with connect(ci) as conn:
        radicado = _radicado_with_history(conn)
        conn.execute(
            f"UPDATE {T}.ov_afinia_history SET numero_radicado = 'GHOST-1' WHERE numero_radicado = %s", (radicado,)
        )
    ev = run_integrity(res)["history_consistent"]
    assert not ev.passed
    assert meta(ev, "failing") == ["afinia:GHOST-1"] and meta(ev, "no_current_row") == 1
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_afinia_history SET numero_radicado = %s WHERE numero_radicado = 'GHOST-1'", (radicado,)
        )
    assert run_integrity(res)["history_consistent"].passed

    # A replaced version newer than the row that replaced it.
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_afinia_history SET fecha_extraccion = fecha_extraccion + interval '400 days' "
            "WHERE numero_radicado = %s",
            (radicado,),
        )
    ev = run_integrity(res)["history_consistent"]
    assert not ev.passed
    assert meta(ev, "failing") == [f"afinia:{radicado}"] and meta(ev, "history_newer_than_current") == 1
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_afinia_history SET fecha_extraccion = fecha_extraccion - interval '400 days' "
            "WHERE numero_radicado = %s",
            (radicado,),
        )
    assert run_integrity(res)["history_consistent"].passed


def test_unique_indexes_refuse_duplicates(loaded):
    res, ci = loaded
    with connect(ci) as conn:
        a, b = conn.execute(f"SELECT numero_radicado, hash_registro FROM {T}.ov_afinia ORDER BY 1 LIMIT 2").fetchall()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"UPDATE {T}.ov_afinia SET numero_radicado = %s WHERE numero_radicado = %s", (a[0], b[0]))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"UPDATE {T}.ov_afinia SET hash_registro = %s WHERE numero_radicado = %s", (a[1], b[0]))
    ev = run_integrity(res)["no_duplicate_keys"]
    assert ev.passed
    assert {"ov_afinia_numero_radicado_key", "ov_afinia_hash_registro_key"} <= set(meta(ev, "unique_indexes"))


def test_duplicate_radicado_in_a_table_without_its_index(loaded):
    """An adopted table whose uniqueness is missing: the check is the guard."""
    res, ci = loaded
    with connect(ci) as conn:
        conn.execute(f"DROP INDEX {T}.ov_afinia_numero_radicado_key")
        radicado = conn.execute(f"SELECT numero_radicado FROM {T}.ov_afinia ORDER BY 1 LIMIT 1").fetchone()[0]
        conn.execute(f"INSERT INTO {T}.ov_afinia (numero_radicado, fecha) VALUES (%s, '2025-10-08 10:00')", (radicado,))
    ev = run_integrity(res)["no_duplicate_keys"]
    assert not ev.passed
    assert meta(ev, "failing") == [f"afinia:numero_radicado:{radicado}"]
    assert meta(ev, "afinia_numero_radicado_duplicates") == 1 and meta(ev, "aire_numero_radicado_duplicates") == 0
    with connect(ci) as conn:
        conn.execute(f"DELETE FROM {T}.ov_afinia WHERE numero_radicado = %s AND hash_registro IS NULL", (radicado,))
    assert run_integrity(res)["no_duplicate_keys"].passed


def test_adopted_old_shape_table_with_colliding_hashes(pg_conninfo18, data_dir):
    """The old system's table (id SERIAL, narrow columns, its own hash definition) is adopted
    without the hash_registro unique index when its hashes collide; the check reports them."""
    ci = pg_conninfo18
    with connect(ci) as conn:
        conn.execute("CREATE SCHEMA data_general")
        conn.execute(f"""CREATE TABLE {T}.ov_aire (id SERIAL PRIMARY KEY, numero_radicado VARCHAR(20) UNIQUE NOT NULL,
                            fecha TIMESTAMP, estado_solicitud VARCHAR(50), telefono VARCHAR(20),
                            hash_registro VARCHAR(64), fecha_extraccion TIMESTAMP)""")
        conn.execute(f"""INSERT INTO {T}.ov_aire (numero_radicado, fecha, estado_solicitud, hash_registro, fecha_extraccion)
                        VALUES ('OLD-1', '2024-01-02 10:00', 'Finalizado', repeat('a', 64), '2024-01-03'),
                               ('OLD-2', '2024-01-02 11:00', 'Finalizado', repeat('a', 64), '2024-01-03'),
                               ('OLD-3', '2024-01-02 12:00', 'Radicado', repeat('b', 64), '2024-01-03')""")
        migrations.apply_all(conn)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'ov_aire'")}
    assert "ov_aire_hash_registro_key" not in indexes
    res = make_resources(ci, data_dir)
    ev = run_integrity(res)["no_duplicate_keys"]
    assert not ev.passed
    assert meta(ev, "failing") == ["aire:hash_registro:" + "a" * 64]
    assert meta(ev, "aire_hash_registro_duplicates") == 1 and meta(ev, "afinia_hash_registro_duplicates") == 0
    with connect(ci) as conn:
        conn.execute(f"UPDATE {T}.ov_aire SET hash_registro = repeat('c', 64) WHERE numero_radicado = 'OLD-2'")
    assert run_integrity(res)["no_duplicate_keys"].passed


def test_freshness_fails_when_the_last_load_is_old(loaded):
    res, ci = loaded
    assert run_integrity(res)["load_freshness"].passed
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_load_audit SET finished_at = finished_at - interval '3 days' WHERE empresa = 'aire'"
        )
    ev = run_integrity(res)["load_freshness"]
    assert not ev.passed and meta(ev, "failing") == ["aire"]
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_load_audit SET finished_at = finished_at + interval '3 days' WHERE empresa = 'aire'"
        )
    assert run_integrity(res)["load_freshness"].passed


def _bog(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BOGOTA)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (_bog(2025, 10, 8, 9, 30), _bog(2025, 10, 8, 8)),  # Wednesday 09:30 -> 08:00 slot
        (_bog(2025, 10, 8, 4, 30), _bog(2025, 10, 7, 22)),  # before grace ends -> yesterday 22:00
        (_bog(2025, 10, 8, 5, 0), _bog(2025, 10, 8, 4)),  # Wednesday 05:00 -> 04:00 bulk
        (_bog(2025, 10, 12, 15, 0), _bog(2025, 10, 11, 22)),  # Sunday -> Saturday 22:00
        (_bog(2025, 10, 13, 3, 0), _bog(2025, 10, 11, 22)),  # Monday before the bulk -> Saturday
        (_bog(2025, 10, 13, 23, 30), _bog(2025, 10, 13, 22)),  # Monday 23:30 (integrity schedule)
    ],
)
def test_last_expected_load_follows_the_mon_sat_windows(now, expected):
    assert checks.last_expected_load(now.astimezone(dt.UTC), dt.timedelta(minutes=60)) == expected


def test_freshness_verdict():
    now = _bog(2025, 10, 12, 15, 0)  # Sunday: Saturday 22:00's load is enough
    grace = dt.timedelta(minutes=60)
    ok = checks.freshness({"afinia": _bog(2025, 10, 11, 22, 5), "aire": _bog(2025, 10, 11, 22, 1)}, now, grace)
    assert ok.passed
    stale = checks.freshness({"afinia": _bog(2025, 10, 11, 20, 5), "aire": None}, now, grace)
    assert not stale.passed and stale.metadata["failing"].value == ["afinia", "aire"]
