"""Quality over time (issue 19, acceptance 2): ``ov_quality_daily`` holds, per empresa and day,
what the load saw, equal to counts recomputed independently (from ``ov_rejects`` and from the
landing files' frames); ``pqr_quality_daily`` reports the same numbers per partition as ints and
floats in the instance's materialization events (what the asset page plots); a rerun writes the
same numbers."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from ov_assets.core.contract import today_bogota
from ov_assets.core.file_names import landing_dir
from ov_assets.devkit import generator
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading
from ov_assets_tests import bad_corpus, loadkit
from ov_assets_tests.checks_support import key, make_resources, materialize, materialize_range
from ov_assets_tests.loadkit import days_back, landing_frames, migrate, partition_keys

DAY_1, DAY_2 = dt.date(2025, 10, 8), dt.date(2025, 10, 9)
PARTS = [(DAY_1, "afinia"), (DAY_1, "aire"), (DAY_2, "afinia"), (DAY_2, "aire")]
SELECTION = ["pqr_records", "pqr_table", "pqr_quality_daily"]
NUMBERS = ("files_seen", "valid", "rejected", "rejected_by_reason", "warnings_by_code", "reject_rate", "load_latency_s")


def _plant(data_dir: Path) -> None:
    """afinia DAY_1: generated PQRs, the generator's broken files and the whole bad corpus
    (rejects of many reasons, warnings of many codes); afinia DAY_2 and aire DAY_1 clean;
    aire DAY_2 has no file at all."""
    generator.write_day(data_dir, "afinia", DAY_1, n=6, broken=True)
    folder = landing_dir(data_dir, "afinia")
    for case in bad_corpus.corpus(DAY_1):
        (folder / case.name).write_bytes(case.data)
    generator.write_day(data_dir, "afinia", DAY_2, n=5, broken=False)
    generator.write_day(data_dir, "aire", DAY_1, n=4, broken=False)


def _table(conninfo: dict[str, Any]) -> dict[tuple[str, dt.date], dict[str, Any]]:
    with psycopg.connect(**conninfo) as conn:
        cur = conn.execute("SELECT * FROM data_general.ov_quality_daily")
        names = [d.name for d in cur.description or ()]
        return {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def _recomputed(conninfo: dict[str, Any], data_dir: Path, empresa: str, day: dt.date) -> dict[str, Any]:
    """The numbers, not from ov_quality_daily: the frame rebuilt from the landing files by a
    fresh index, the rejects as ov_rejects holds them, the latency from the stored rows."""
    index = LandingIndex(data_dir)
    index.refresh(empresa, today_bogota())
    frame = partition_frame(index, empresa, day, today_bogota())
    valid = frame.filter(pl.col("status") == "valid")
    with psycopg.connect(**conninfo) as conn:
        reasons = dict(
            conn.execute(
                "SELECT reason_code, count(*) FROM data_general.ov_rejects "
                "WHERE empresa = %s AND partition_date = %s AND resolved_at IS NULL GROUP BY 1",
                (empresa, day),
            ).fetchall()
        )
        (latency,) = conn.execute(
            f"SELECT max(extract(epoch FROM q.loaded_at - (t.fecha_extraccion AT TIME ZONE 'America/Bogota'))) "
            f"FROM data_general.ov_{empresa} t, data_general.ov_quality_daily q "
            "WHERE q.empresa = %s AND q.fecha = %s AND t.fecha >= %s AND t.fecha < %s",
            (empresa, day, day, day + dt.timedelta(days=1)),
        ).fetchone()
    rejected = frame.height - valid.height
    return {
        "files_seen": frame.height,
        "valid": valid.height,
        "rejected": rejected,
        "rejected_by_reason": reasons,
        "warnings_by_code": dict(Counter(w for ws in valid["warnings"].to_list() for w in ws)),
        "reject_rate": rejected / frame.height if frame.height else 0.0,
        "load_latency_s": None if latency is None else float(latency),
    }


def _quality_events(instance: dg.DagsterInstance) -> dict[str, list[dict[str, Any]]]:
    """partition -> the metadata of each materialization of pqr_quality_daily, oldest first."""
    records = instance.fetch_materializations(dg.AssetKey("pqr_quality_daily"), limit=100, ascending=True).records
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        mat = record.asset_materialization
        assert mat is not None and mat.partition is not None
        out.setdefault(str(mat.partition), []).append(dict(mat.metadata))
    return out


def _plotted(meta: dict[str, Any]) -> dict[str, Any]:
    """The numbers back from the metadata; each must be a value Dagster plots (int or float)."""
    for name, value in meta.items():
        assert isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue), (name, type(value))
    assert isinstance(meta["reject_rate"], dg.FloatMetadataValue)
    assert isinstance(meta["files_seen"], dg.IntMetadataValue)
    by = {k: v.value for k, v in meta.items()}
    return {
        "files_seen": by["files_seen"],
        "valid": by["valid"],
        "rejected": by["rejected"],
        "rejected_by_reason": {k.split("/", 1)[1]: v for k, v in by.items() if k.startswith("rejected_by_reason/")},
        "warnings_by_code": {k.split("/", 1)[1]: v for k, v in by.items() if k.startswith("warnings_by_code/")},
        "reject_rate": by["reject_rate"],
        "load_latency_s": by.get("load_latency_s"),
    }


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in NUMBERS}


def test_quality_table_and_metadata_equal_recomputed_counts(pg_conninfo18, data_dir) -> None:
    _plant(data_dir)
    resources = make_resources(pg_conninfo18, data_dir)
    instance = dg.DagsterInstance.ephemeral()
    # one range run (a backfill chunk): per-partition numbers, not the range's totals
    result = materialize_range(resources, key(DAY_1, "afinia"), key(DAY_2, "aire"), SELECTION, instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    table = _table(pg_conninfo18)
    assert sorted(table) == sorted((e, d) for d, e in PARTS)
    busy = table[("afinia", DAY_1)]
    # the corpus is what the test needs: many reasons, several warning codes, valid rows
    assert len(busy["rejected_by_reason"]) >= 5 and len(busy["warnings_by_code"]) >= 4
    assert busy["valid"] > 10 and 0 < busy["reject_rate"] < 1
    assert table[("aire", DAY_2)]["files_seen"] == 0 and table[("aire", DAY_2)]["load_latency_s"] is None

    events = _quality_events(instance)
    assert sorted(events) == sorted(key(d, e) for d, e in PARTS)
    for day, empresa in PARTS:
        row = _numbers(table[(empresa, day)])
        want = _recomputed(pg_conninfo18, data_dir, empresa, day)
        assert sum(want["rejected_by_reason"].values()) == want["rejected"]
        got_latency, want_latency = row.pop("load_latency_s"), want.pop("load_latency_s")
        assert row == {**want, "reject_rate": row["reject_rate"]}, (empresa, day)
        assert abs(row["reject_rate"] - want["reject_rate"]) < 1e-6
        if want_latency is None:
            assert got_latency is None
        else:  # extractions of 2025 loaded now: large, and the slowest row's exactly
            assert got_latency > 86_400 and abs(got_latency - want_latency) < 0.01
        [meta] = events[key(day, empresa)]
        plotted = _plotted(meta)
        assert plotted == _numbers(table[(empresa, day)]), (empresa, day)
    # each partition carries its own numbers
    assert len({events[key(d, e)][0]["files_seen"].value for d, e in PARTS}) == 4

    # a rerun of one partition (same files) writes the same numbers; only loaded_at moves
    again = materialize(resources, key(DAY_1, "afinia"), selection=SELECTION, instance=instance)
    assert again.success
    after = _table(pg_conninfo18)
    assert {k: _numbers(v) for k, v in after.items()} == {k: _numbers(v) for k, v in table.items()}
    assert after[("afinia", DAY_1)]["loaded_at"] > table[("afinia", DAY_1)]["loaded_at"]
    assert after[("aire", DAY_1)]["loaded_at"] == table[("aire", DAY_1)]["loaded_at"]
    second = _quality_events(instance)[key(DAY_1, "afinia")]
    assert len(second) == 2 and _plotted(second[1]) == _plotted(second[0])


def test_a_dry_run_writes_no_quality_row_and_a_real_load_as_the_loader_does(pg_conninfo, data_dir) -> None:
    frame = landing_frames(data_dir, days_back(1), n=4)
    keys = partition_keys(frame)
    migrate(pg_conninfo)
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        loading.load_partitions(conn, keys, frame, "dry", dry_run=True)
    assert _table(pg_conninfo) == {}
    # the least-privilege role may write it
    with loadkit.login_roles(pg_conninfo, "ov_loader") as users, psycopg.connect(**users["ov_loader"]) as conn:
        loading.load_partitions(conn, keys, frame, "real")
    table = _table(pg_conninfo)
    assert sorted(table) == sorted(keys)
    for (empresa, day), row in table.items():
        part = frame.filter((pl.col("empresa") == empresa) & (pl.col("partition_date") == day))
        assert (row["files_seen"], row["valid"]) == (part.height, int((part["status"] == "valid").sum()))
        assert row["load_latency_s"] > 0


def test_daily_summary_reads_the_quality_rows_of_its_day(pg_conninfo18, data_dir) -> None:
    from ov_assets.core.contract import BOGOTA
    from ov_assets.defs.automation.daily_summary import ov_daily_summary

    days = days_back(2)
    frame = landing_frames(data_dir, days, n=5)  # the generator's broken files: rejects in every partition
    migrate(pg_conninfo18)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        loading.load_partitions(conn, partition_keys(frame), frame, "summary")
    table = _table(pg_conninfo18)
    [day] = {row["loaded_at"].astimezone(BOGOTA).date() for row in table.values()}
    result = dg.materialize(
        [ov_daily_summary],
        resources={"postgres": make_resources(pg_conninfo18, data_dir)["postgres"]},
        run_config={"ops": {"ov_daily_summary": {"config": {"day": day.isoformat()}}}},
    )
    [mat] = result.asset_materializations_for_node("ov_daily_summary")
    meta = {k: v.value for k, v in mat.metadata.items()}
    for empresa in ("afinia", "aire"):
        mine = [row for (e, _), row in table.items() if e == empresa]
        files, rejected = sum(r["files_seen"] for r in mine), sum(r["rejected"] for r in mine)
        assert rejected > 0
        assert meta[f"{empresa}_quality_partitions"] == len(mine) == 2
        assert abs(meta[f"{empresa}_reject_rate"] - rejected / files) < 1e-9
        assert meta[f"{empresa}_load_latency_s_max"] == max(r["load_latency_s"] for r in mine)
        assert f"quality: 2 partitions loaded, {files} files, {rejected} rejected" in meta["summary"]
    # another day's summary has none of them
    other = dg.materialize(
        [ov_daily_summary],
        resources={"postgres": make_resources(pg_conninfo18, data_dir)["postgres"]},
        run_config={"ops": {"ov_daily_summary": {"config": {"day": (day - dt.timedelta(days=3)).isoformat()}}}},
    )
    [mat] = other.asset_materializations_for_node("ov_daily_summary")
    assert mat.metadata["afinia_quality_partitions"].value == 0


PLOTTED_QUERY = """
query ($partition: String!) {
  assetOrError(assetKey: {path: ["pqr_quality_daily"]}) {
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 5) {
        partition
        metadataEntries {
          label
          __typename
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""


def test_the_ui_serves_the_numbers_as_plottable_entries(pg_conninfo18, data_dir, tmp_path) -> None:
    """The webserver (what the asset page's plots read) returns every quality number as an
    IntMetadataEntry or FloatMetadataEntry, equal to the table's."""
    from ov_assets.devkit.servers import graphql, postgres_env, run_dagster_dev

    _plant(data_dir)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    resources = make_resources(pg_conninfo18, data_dir)
    assert materialize(resources, key(DAY_1, "afinia"), selection=SELECTION, instance=instance).success
    row = _numbers(_table(pg_conninfo18)[("afinia", DAY_1)])
    env = {**postgres_env(pg_conninfo18), "OV_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    with run_dagster_dev(Path(__file__).resolve().parents[1], env=env) as url:
        data = graphql(url, PLOTTED_QUERY, {"partition": key(DAY_1, "afinia")})
    [mat] = data["assetOrError"]["assetMaterializations"]
    assert mat["partition"] == key(DAY_1, "afinia")
    entries = {e["label"]: e for e in mat["metadataEntries"]}
    assert {e["__typename"] for e in entries.values()} == {"IntMetadataEntry", "FloatMetadataEntry"}
    values = {k: e.get("intValue", e.get("floatValue")) for k, e in entries.items()}
    assert values["files_seen"] == row["files_seen"] and values["rejected"] == row["rejected"]
    assert values["reject_rate"] == row["reject_rate"] and values["load_latency_s"] == row["load_latency_s"]
    assert {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("rejected_by_reason/")} == (
        row["rejected_by_reason"]
    )
