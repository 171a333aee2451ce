"""The daily summary (issue 17, acceptance 1 and 3): the graph loads two partitions (with
rejects) into a real PostgreSQL and the local object store, then ``ov_daily_summary`` runs in
the same Dagster instance. Its numbers, in the message sent to the stand-in Slack and the SMTP
server and in the materialization's metadata, equal the database's counted here row by row; no
personal value of the loaded PQRs is in any of them."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg.rows import dict_row

from ov_assets.core.contract import BOGOTA, EMPRESAS, PERSONAL_FIELDS
from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.automation.daily_summary import ov_daily_summary
from ov_assets.devkit import generator
from ov_assets_tests.alert_servers import configure_channels
from ov_assets_tests.support import leaked, personal_search_terms, pipeline_resources

DAY = dt.date(2025, 10, 8)

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook, smtp_server


def rows(conninfo: dict[str, Any], query: str) -> list[dict[str, Any]]:
    with psycopg.connect(**conninfo, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def bogota(ts: dt.datetime | None) -> dt.date | None:
    return ts.astimezone(BOGOTA).date() if ts is not None else None


def expected(conninfo: dict[str, Any], day: dt.date) -> dict[str, dict[str, Any]]:
    """The day's figures counted in Python from every row (not by the summary's SQL)."""
    audit = rows(conninfo, "SELECT empresa, db_inserted, db_updated, finished_at FROM data_general.ov_load_audit")
    rejects = rows(conninfo, "SELECT empresa, reason_code, last_seen_at FROM data_general.ov_rejects")
    registry = rows(
        conninfo, "SELECT empresa, upload_status, uploaded_at, updated_at FROM data_general.s3_files_registry"
    )
    out = {}
    for e in EMPRESAS:
        table = rows(conninfo, f"SELECT warnings, updated_at FROM data_general.ov_{e}")
        mine = [a for a in audit if a["empresa"] == e and bogota(a["finished_at"]) == day]
        out[e] = {
            "loads": len(mine),
            "inserted": sum(a["db_inserted"] for a in mine),
            "updated": sum(a["db_updated"] for a in mine),
            "rejects": dict(
                Counter(r["reason_code"] for r in rejects if r["empresa"] == e and bogota(r["last_seen_at"]) == day)
            ),
            "warnings": dict(Counter(w for t in table if bogota(t["updated_at"]) == day for w in t["warnings"])),
            "stored": sum(
                1
                for r in registry
                if r["empresa"] == e
                and r["upload_status"] in ("uploaded", "pre_existing")
                and bogota(r["uploaded_at"] or r["updated_at"]) == day
            ),
            "pending": sum(1 for r in registry if r["empresa"] == e and r["upload_status"] == "pending"),
            "error": sum(1 for r in registry if r["empresa"] == e and r["upload_status"] == "error"),
        }
    return out


def test_summary_numbers_equal_the_database(pg_conninfo18, data_dir: Path, webhook, smtp_server, monkeypatch) -> None:
    url, receiver = webhook
    port, box = smtp_server
    configure_channels(monkeypatch, url, port)
    resources = pipeline_resources(pg_conninfo18, data_dir)
    for empresa in EMPRESAS:
        generator.write_day(data_dir, empresa, DAY, n=8, seed=17)
    with dg.instance_for_test() as instance:
        for empresa in EMPRESAS:
            dg.materialize(
                pqr_assets,
                resources=resources,
                partition_key=f"{DAY.isoformat()}|{empresa}",
                instance=instance,
                raise_on_error=True,
            )
        # The day the loads happened (the audit's own clock, Bogotá), whatever today is.
        [day] = {
            bogota(a["finished_at"]) for a in rows(pg_conninfo18, "SELECT finished_at FROM data_general.ov_load_audit")
        }
        result = dg.materialize(
            [ov_daily_summary],
            resources={"postgres": resources["postgres"]},
            instance=instance,
            run_config={"ops": {"ov_daily_summary": {"config": {"day": day.isoformat()}}}},
        )
        [mat] = result.asset_materializations_for_node("ov_daily_summary")
        meta = {k: v.value for k, v in mat.metadata.items()}

    want = expected(pg_conninfo18, day)
    assert all(want[e]["inserted"] > 0 and want[e]["stored"] > 0 and want[e]["rejects"] for e in EMPRESAS)
    [text] = receiver.texts()
    [(subject, body)] = box.decoded()
    assert subject == text.splitlines()[0] and subject.startswith(f"[ov-assets] daily summary {day.isoformat()}")
    for e, w in want.items():
        for name in ("loads", "inserted", "updated"):
            assert meta[f"{e}_{name}"] == w[name], (e, name)
        for name in ("stored", "pending", "error"):
            assert meta[f"{e}_objects_{name}"] == w[name], (e, name)
        assert meta[f"{e}_rejects"] == sum(w["rejects"].values())
        assert meta[f"{e}_warnings"] == sum(w["warnings"].values())
        line = f"{e}: {w['loads']} loads, {w['inserted']} rows inserted, {w['updated']} updated"
        rejects = ", ".join(f"{k} {v}" for k, v in sorted(w["rejects"].items()))
        objects = f"objects: {w['stored']} stored today; {w['pending']} pending, {w['error']} error (now)"
        for part in (line, f"rejects ({sum(w['rejects'].values())}): {rejects}", objects):
            assert part in text and part in body and part in meta["summary"], part
    assert meta["day"] == day.isoformat() and meta["delivered"] is True

    columns = ", ".join(PERSONAL_FIELDS)
    people = [p for e in EMPRESAS for p in rows(pg_conninfo18, f"SELECT {columns} FROM data_general.ov_{e}")]
    terms = personal_search_terms(people)
    assert len(people) >= 2 * 8 and any(not w.isascii() for p in people for w in p["nombres_apellidos"].split())
    assert leaked("\n".join([text, subject, body, str(meta)]), terms) == []
