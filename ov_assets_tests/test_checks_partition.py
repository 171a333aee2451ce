"""Per-partition checks (check_specs, ov_assets.defs.checks.partition), run with their asset: broken for
real in PostgreSQL, the bucket or the landing folder, failing for that partition only, passing
again once repaired."""

from __future__ import annotations

import shutil
import threading

import boto3
import dagster as dg
import pytest

from ov_assets.core import checkpoints, records
from ov_assets.core.file_names import landing_dir
from ov_assets.devkit import generator
from ov_assets_tests.checks_support import (
    DAY_A,
    DAY_B,
    connect,
    evaluation,
    key,
    make_resources,
    materialize,
    materialize_range,
    meta,
    outcomes,
    write_newer_version,
)

T = "data_general"
AFINIA, AIRE = key(DAY_A, "afinia"), key(DAY_A, "aire")


@pytest.fixture
def env(pg_conninfo18, data_dir, s3_endpoint, s3_bucket):
    # aire without second versions: the winner-fault test needs a partition where it is harmless
    gens = {
        e: generator.write_day(data_dir, e, DAY_A, n=6, broken=False, versions=(e == "afinia"))
        for e in ("afinia", "aire")
    }
    res = make_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    assert materialize_range(res, AFINIA, AIRE).success
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    return res, pg_conninfo18, data_dir, gens, s3, s3_bucket


def _range(res):
    result = materialize_range(res, AFINIA, AIRE)
    return result, outcomes(result)


def test_clean_range_run_reports_every_check_per_partition(env):
    res, *_ = env
    result, out = _range(res)
    assert result.success
    names = {n for n, _ in out}
    assert names >= {
        "no_duplicate_winners",
        "required_fields_present",
        "reject_rate",
        "hash_registro_recomputes",
        "winners_in_table",
        "no_older_replacement",
        "objects_registered",
        "objects_match_bucket",
    }
    for n in names - {"load_freshness"}:
        assert out.get((n, AFINIA)) is True and out.get((n, AIRE)) is True, n


def test_reject_rate_warns_for_the_partition_with_broken_files_only(env):
    res, _, data_dir, *_ = env
    generator.write_day(data_dir, "aire", DAY_A, n=0, broken=True)  # 4 broken files, 0.4 of aire's
    result, out = _range(res)
    assert out[("reject_rate", AIRE)] is False and out[("reject_rate", AFINIA)] is True
    ev = evaluation(result, "reject_rate", AIRE)
    assert ev.severity == dg.AssetCheckSeverity.WARN and meta(ev, "rejected") == 4
    summary = [e for e in result.get_asset_check_evaluations() if e.check_name == "reject_rate" and e.partition is None]
    assert summary[0].severity == dg.AssetCheckSeverity.WARN  # a WARN is not promoted to ERROR
    assert result.success  # WARN blocks nothing
    for f in landing_dir(data_dir, "aire").glob("ROTO*"):
        f.unlink()
    assert _range(res)[1][("reject_rate", AIRE)] is True


def test_duplicated_landing_file_still_has_one_winner(env):
    """Copying a record file under the older naming variant is a second version with the same
    extraction time: the tie is broken by the file name, there is still exactly one winner."""
    res, _, data_dir, gens, *_ = env
    folder = landing_dir(data_dir, "afinia")
    src = sorted(folder.glob("*_data_*.json"))[0]
    sgc, ts = src.name.split("_data_")
    shutil.copy(src, folder / f"pqr_data_{sgc}_{ts}")
    result = materialize(res, AFINIA)
    after = result.asset_materializations_for_node("pqr_records")[0].metadata
    # the copy is read as one more valid version, of a radicado that had one: same winners
    assert after["valid_versions"].value == len(gens["afinia"].records) + 1
    assert after["winners"].value == len(gens["afinia"].radicados)
    ev = evaluation(result, "no_duplicate_winners")
    assert ev.passed and meta(ev, "winners") == meta(ev, "radicados")


def test_winner_marking_fault_is_caught_for_that_partition_only(env, monkeypatch):
    """The winner rule cannot be broken through landing data, so break the code that applies it:
    every valid version marked a winner. The check recomputes the rule and fails where a PQR has
    two versions (afinia, after a newer extraction) and passes where none has (aire)."""
    res, _, data_dir, gens, *_ = env
    write_newer_version(data_dir, gens["afinia"])
    original = records.mark_winners

    def every_valid_version_wins(frame):
        marked = original(frame)
        return marked.with_columns((marked["status"] == "valid").alias("is_winner"))

    monkeypatch.setattr(records, "mark_winners", every_valid_version_wins)
    result, out = _range(res)
    assert out[("no_duplicate_winners", AFINIA)] is False and out[("no_duplicate_winners", AIRE)] is True
    assert gens["afinia"].records[0]["numero_radicado"] in meta(
        evaluation(result, "no_duplicate_winners", AFINIA), "failing"
    )
    monkeypatch.setattr(records, "mark_winners", original)
    assert _range(res)[1][("no_duplicate_winners", AFINIA)] is True


def test_winners_in_table_blocks_s3_objects_and_recovers(env):
    res, ci, _, gens, *_ = env
    radicado = gens["afinia"].records[0]["numero_radicado"]
    with connect(ci) as conn:
        # The stored row altered behind the pipeline's back, and a rogue trigger that silently
        # discards every later UPDATE of it: the load cannot put the winner back.
        conn.execute(
            f"""UPDATE {T}.ov_afinia SET hash_registro = repeat('f', 64),
                            fecha_extraccion = '2000-01-01' WHERE numero_radicado = %s""",
            (radicado,),
        )
        conn.execute(f"""CREATE FUNCTION {T}.swallow() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN RETURN NULL; END $$""")
        conn.execute(
            f"CREATE TRIGGER swallow BEFORE UPDATE ON {T}.ov_afinia FOR EACH ROW "
            f"WHEN (OLD.numero_radicado = '{radicado}') EXECUTE FUNCTION {T}.swallow()"
        )
    result, out = _range(res)
    assert out[("winners_in_table", AFINIA)] is False and out[("winners_in_table", AIRE)] is True
    assert meta(evaluation(result, "winners_in_table", AFINIA), "failing") == [radicado]
    # Blocking: pqr_s3_objects does not run for the range (both partitions) in this run.
    assert not result.success
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("pqr_s3_objects")]
    with connect(ci) as conn:
        conn.execute(f"DROP TRIGGER swallow ON {T}.ov_afinia")
    result, out = _range(res)  # the load now replaces the altered row with the winner
    assert result.success and out[("winners_in_table", AFINIA)] is True


def test_no_older_replacement_fails_when_history_is_newer(env):
    res, ci, data_dir, gens, *_ = env
    write_newer_version(data_dir, gens["aire"])
    assert materialize(res, AIRE).success
    radicado = gens["aire"].records[0]["numero_radicado"]
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_aire_history SET fecha_extraccion = fecha_extraccion + interval '400 days' "
            "WHERE numero_radicado = %s",
            (radicado,),
        )
    result, out = _range(res)
    assert out[("no_older_replacement", AIRE)] is False and out[("no_older_replacement", AFINIA)] is True
    assert meta(evaluation(result, "no_older_replacement", AIRE), "failing") == [radicado]
    with connect(ci) as conn:
        conn.execute(
            f"UPDATE {T}.ov_aire_history SET fecha_extraccion = fecha_extraccion - interval '400 days' "
            "WHERE numero_radicado = %s",
            (radicado,),
        )
    assert _range(res)[1][("no_older_replacement", AIRE)] is True


def test_objects_match_bucket_proves_a_day_by_listing_and_still_sees_what_changed_after_the_put(
    pg_conninfo18, data_dir, s3_endpoint, s3_bucket
):
    """A day's objects written by the run are proven by a listing (~1,000 a request: each
    put's answer proved its SHA-256, the listing shows that write's ETag and size), not one
    request each; an object deleted right after its put, and one overwritten with other bytes
    of the same size, are not in the listing as written: re-read, they fail the check."""
    from ov_assets.objects.s3_store import LIST_FROM

    day_key = key(DAY_B, "afinia")
    generator.write_day(data_dir, "afinia", DAY_B, n=40, broken=False, versions=False)
    res = make_resources(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    changed: dict[str, str] = {}
    one_at_a_time = threading.Lock()  # (the puts, and so this listener, run on 16 threads)

    def tamper(name: str) -> None:
        with one_at_a_time:
            _tamper(name)

    def _tamper(name: str) -> None:
        if name != "s3_put" or len(changed) == 2:
            return
        listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="oficina-virtual/afinia/2025/10/09/")
        stored = sorted(o["Key"] for o in listing.get("Contents", ()) if o["Key"].endswith(".json"))
        if not stored:
            return
        if "deleted" not in changed:
            s3.delete_object(Bucket=s3_bucket, Key=stored[0])
            changed["deleted"] = stored[0]
        elif stored[0] != changed["deleted"]:
            body = s3.get_object(Bucket=s3_bucket, Key=stored[0])["Body"].read()
            s3.put_object(Bucket=s3_bucket, Key=stored[0], Body=body[:-1] + (b"X" if body[-1:] != b"X" else b"Y"))
            changed["overwritten"] = stored[0]

    checkpoints.add_listener(tamper)
    try:
        result = materialize(res, day_key)
    finally:
        checkpoints.remove_listener(tamper)
    assert set(changed) == {"deleted", "overwritten"}, changed
    ev = evaluation(result, "objects_match_bucket", day_key)
    assert not ev.passed
    assert sorted(meta(ev, "failing")) == sorted(changed.values())
    verified, listed = meta(ev, "verified"), meta(ev, "verified_by_listing")
    assert verified > LIST_FROM and listed == verified - 2  # all but the two changed ones

    # repaired (the two objects put back by the next run): every object proven again
    s3.delete_object(Bucket=s3_bucket, Key=changed["overwritten"])
    with connect(pg_conninfo18) as conn:
        conn.execute(
            f"UPDATE {T}.s3_files_registry SET upload_status = 'error' WHERE s3_key = ANY(%s)",
            (list(changed.values()),),
        )
    again = evaluation(materialize(res, day_key), "objects_match_bucket", day_key)
    assert again.passed and meta(again, "verified") == 2 and meta(again, "verified_by_listing") == 0


def test_objects_match_bucket_sees_a_deleted_object(env):
    """The check re-reads what its run stored (here a changed landing file, stored under a key
    of its own, deleted from the bucket right after its put); objects registered before the run
    are trusted, and the hourly reconciliation re-reads them (test_checks_reconciliation,
    test_noop_rerun)."""
    res, ci, data_dir, _, s3, bucket = env
    pdf = sorted(landing_dir(data_dir, "aire").glob("*.pdf"))[0]
    pdf.write_bytes(pdf.read_bytes() + b"\n% changed\n")
    deleted: list[str] = []

    def delete_after_put(name: str) -> None:
        if name != "s3_put" or deleted:
            return
        with connect(ci) as conn:
            (s3_key,) = conn.execute(
                f"SELECT s3_key FROM {T}.s3_files_registry WHERE s3_key LIKE %s", (f"%/{pdf.stem}~%",)
            ).fetchone()
        s3.delete_object(Bucket=bucket, Key=s3_key)
        deleted.append(s3_key)

    checkpoints.add_listener(delete_after_put)
    try:
        result, out = _range(res)
    finally:
        checkpoints.remove_listener(delete_after_put)
    assert deleted, "the changed file was stored under a key of its own"
    assert out[("objects_match_bucket", AIRE)] is False and out[("objects_match_bucket", AFINIA)] is True
    assert meta(evaluation(result, "objects_match_bucket", AIRE), "failing") == deleted


def test_objects_registered_does_not_trust_the_step(env):
    """A trigger that keeps one key 'pending' whatever the asset writes: the asset believes it
    stored the object, the check re-reads the registry and fails for that partition only."""
    res, ci, *_ = env
    with connect(ci) as conn:
        (s3_key,) = conn.execute(
            f"SELECT s3_key FROM {T}.s3_files_registry WHERE empresa = 'afinia' "
            "AND file_type = 'pdf' ORDER BY 1 LIMIT 1"
        ).fetchone()
        conn.execute(f"UPDATE {T}.s3_files_registry SET upload_status = 'error' WHERE s3_key = %s", (s3_key,))
        conn.execute(f"""CREATE FUNCTION {T}.keep_pending() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN IF NEW.s3_key = '{s3_key}' THEN NEW.upload_status := 'pending'; END IF; RETURN NEW; END $$""")
        conn.execute(
            f"CREATE TRIGGER keep_pending BEFORE UPDATE ON {T}.s3_files_registry "
            f"FOR EACH ROW EXECUTE FUNCTION {T}.keep_pending()"
        )
    result, out = _range(res)
    assert out[("objects_registered", AFINIA)] is False and out[("objects_registered", AIRE)] is True
    assert meta(evaluation(result, "objects_registered", AFINIA), "failing") == [s3_key]
    with connect(ci) as conn:
        conn.execute(f"DROP TRIGGER keep_pending ON {T}.s3_files_registry")
    assert _range(res)[1][("objects_registered", AFINIA)] is True
