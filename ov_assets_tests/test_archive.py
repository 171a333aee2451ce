"""Archiving a partition to moto's S3 with the registry in PostgreSQL: both layouts, checksums,
pre-existing and tampered objects, an endpoint that was down, table links, idempotency."""

from __future__ import annotations

import hashlib

import polars as pl
import psycopg
import pytest

from ov_assets.core.contract import EMPRESA_DISPLAY
from ov_assets.defs.checks.partition import objects_match_bucket
from ov_assets.devkit.servers import free_port
from ov_assets.objects import archive
from ov_assets.objects.archive import archive_objects, link_table_rows, plan_objects
from ov_assets_tests.archive_support import DAY, bucket_keys, client, prepare, registry, store_resource


def _run(conninfo, store, frame, layout="default", base="oficina-virtual", workers=4):
    objects = plan_objects(frame, store_root(frame), layout, base)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        counts, outcomes = archive_objects(conn, store, objects, workers)
        link_table_rows(conn, store, frame, layout, base)
    return objects, counts, outcomes


_ROOT = {}


def store_root(frame):
    return _ROOT["data_dir"]


@pytest.fixture
def env(data_dir, pg_conninfo18):
    _ROOT["data_dir"] = data_dir
    return data_dir, pg_conninfo18


@pytest.mark.parametrize("layout", ["default", "central"])
def test_every_valid_version_stored_verified_and_linked(env, s3_endpoint, s3_bucket, layout):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo)
    store = store_resource(s3_endpoint, s3_bucket, data_dir, layout=layout).open()
    objects, counts, _ = _run(conninfo, store, frame, layout)
    valid = frame.filter(pl.col("status") == "valid")
    names = {f["filename"] for files in valid["files"].to_list() for f in files}
    assert {o.filename for o in objects} == names
    assert counts.s3_uploaded == len(objects) and counts.s3_errors == 0
    # rejected files stay in the landing folder
    rejected = set(frame.filter(pl.col("status") == "rejected")["file_name"].to_list())
    assert rejected and not any(k.rsplit("/", 1)[1] in rejected for k in bucket_keys(s3_endpoint, s3_bucket))
    prefix = (
        f"oficina-virtual/afinia/{DAY:%Y/%m/%d}/"
        if layout == "default"
        else f"Central_De_Escritos/{EMPRESA_DISPLAY['afinia']}/01_raw_data/oficina_virtual/"
    )
    assert all(o.key.startswith(prefix) for o in objects)
    assert bucket_keys(s3_endpoint, s3_bucket) == {o.key for o in objects}
    reg = registry(conninfo)
    c = client(s3_endpoint)
    for o in objects:
        row = reg[o.key]
        assert (row["upload_status"], row["upload_source"], row["attempts"]) == ("uploaded", "bot", 1)
        assert row["s3_url"] == f"s3://{s3_bucket}/{o.key}" and row["file_hash"] == o.sha256
        assert row["content_type"] == archive.content_type(o.filename) and row["uploaded_at"] is not None
        head = c.head_object(Bucket=s3_bucket, Key=o.key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["Metadata"]["sha256"] == o.sha256 and head["Metadata"]["numero_radicado"] == o.numero_radicado
        assert (
            head["ContentType"]
            == {"json": "application/json", "pdf": "application/pdf", "jpg": "image/jpeg"}[o.filename.rsplit(".", 1)[1]]
        )
        body = c.get_object(Bucket=s3_bucket, Key=o.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == o.sha256 == hashlib.sha256(o.path.read_bytes()).hexdigest()
    with psycopg.connect(**conninfo) as conn:
        rows = conn.execute(
            "SELECT numero_radicado, archivos_s3_urls, procesado_flag FROM data_general.ov_afinia"
        ).fetchall()
    assert rows and all(flag for _, _, flag in rows)
    for _radicado, urls, _ in rows:
        assert urls and all(u["s3_url"].startswith(f"s3://{s3_bucket}/{prefix}") for u in urls)
        assert {u["file_type"] for u in urls} >= {"json", "pdf"}

    # Idempotent: a rerun stores nothing and changes no registry row.
    before = registry(conninfo)
    _, again, outcomes = _run(conninfo, store, frame, layout)
    assert (again.s3_uploaded, again.s3_pre_existing, outcomes) == (0, 0, [])
    assert again.s3_already_registered == len(objects)
    assert registry(conninfo) == before


def test_pre_existing_and_tampered_objects(env, s3_endpoint, s3_bucket):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    winner_files = {f["filename"] for fs in frame.filter(pl.col("is_winner"))["files"].to_list() for f in fs}
    tampered = next(o for o in objects if o.filename in winner_files)  # (a winner's: its row's flag matters)
    same = next(o for o in objects if o is not tampered)
    c = client(s3_endpoint)
    c.put_object(Bucket=s3_bucket, Key=same.key, Body=same.path.read_bytes())  # e.g. the old system's copy
    c.put_object(Bucket=s3_bucket, Key=tampered.key, Body=b"not the landing file")
    _, counts, _ = _run(conninfo, store, frame)
    assert counts.s3_pre_existing == 1 and counts.s3_errors == 1
    assert counts.s3_uploaded == len(objects) - 2
    reg = registry(conninfo)
    assert (reg[same.key]["upload_status"], reg[same.key]["upload_source"]) == ("pre_existing", "pre_existing")
    assert reg[tampered.key]["upload_status"] == "error"
    assert "different content" in reg[tampered.key]["last_error"]
    # never overwritten, reported again on every run
    assert c.get_object(Bucket=s3_bucket, Key=tampered.key)["Body"].read() == b"not the landing file"
    _, counts, _ = _run(conninfo, store, frame)
    assert counts.s3_errors == 1 and counts.s3_uploaded == 0
    assert registry(conninfo)[tampered.key]["attempts"] == 2
    # a winner whose object is in error is not marked processed
    with psycopg.connect(**conninfo) as conn:
        (flag,) = conn.execute(
            "SELECT procesado_flag FROM data_general.ov_afinia WHERE numero_radicado = %s", (tampered.numero_radicado,)
        ).fetchone()
    assert flag is False


def test_tampering_after_upload_is_reported_by_reconciliation(env, s3_endpoint, s3_bucket):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects, counts, _ = _run(conninfo, store, frame)
    assert counts.s3_uploaded == len(objects)
    client(s3_endpoint).put_object(Bucket=s3_bucket, Key=objects[0].key, Body=b"swapped")
    with psycopg.connect(**conninfo) as conn:
        verdict = objects_match_bucket(conn, store, "afinia", DAY)
    assert verdict.passed is False


def test_pending_objects_retried_after_endpoint_was_down(env, s3_endpoint, s3_bucket):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo)
    down = store_resource(
        f"http://127.0.0.1:{free_port()}", s3_bucket, data_dir, max_attempts=2, connect_timeout_s=1
    ).open()
    objects, counts, _ = _run(conninfo, down, frame, workers=2)
    assert counts.fatal and "cannot reach the endpoint" in counts.fatal and "AWS_ENDPOINT_URL" in counts.fatal
    assert counts.s3_uploaded == 0 and counts.s3_errors + counts.s3_not_attempted == len(objects)
    assert counts.s3_not_attempted > 0  # stopped at the first failure instead of hammering a dead endpoint
    reg = registry(conninfo)
    assert {r["upload_status"] for r in reg.values()} <= {"pending", "error"}
    assert archive.pending_partitions(psycopg.connect(**conninfo)) == [("afinia", DAY)]
    with psycopg.connect(**conninfo) as conn:
        assert not any(f for (f,) in conn.execute("SELECT procesado_flag FROM data_general.ov_afinia"))

    up = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    _, counts, _ = _run(conninfo, up, frame)
    assert counts.s3_uploaded == len(objects) and counts.fatal is None
    reg = registry(conninfo)
    assert {r["upload_status"] for r in reg.values()} == {"uploaded"}
    assert all(r["last_error"] is None for r in reg.values())
    assert max(r["attempts"] for r in reg.values()) == 2
    assert archive.pending_partitions(psycopg.connect(**conninfo)) == []
    with psycopg.connect(**conninfo) as conn:
        assert all(f for (f,) in conn.execute("SELECT procesado_flag FROM data_general.ov_afinia"))


def test_multipart_attachment_through_the_archive(env, s3_endpoint, s3_bucket):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo, big=6 << 20)
    store = store_resource(s3_endpoint, s3_bucket, data_dir, multipart_threshold_mb=5, multipart_chunksize_mb=5).open()
    objects, counts, _ = _run(conninfo, store, frame)
    big = [o for o in objects if o.size > 5 << 20]
    assert big and counts.s3_uploaded == len(objects)
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key=big[0].key)
    assert "-" in head["ETag"] and head["Metadata"]["sha256"] == big[0].sha256
    assert store.verified_sha256(big[0].key) == big[0].sha256


def test_local_store_registry_says_local(env):
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo, n=3)
    from ov_assets.defs.resources import ObjectStoreResource

    store = ObjectStoreResource(data_dir=str(data_dir)).open()
    objects, counts, _ = _run(conninfo, store, frame)
    assert counts.s3_uploaded == len(objects)
    reg = registry(conninfo)
    assert {r["s3_bucket"] for r in reg.values()} == {"local"}
    assert all(r["s3_url"].startswith("file://") for r in reg.values())
    assert all((data_dir / "object_store" / o.key).read_bytes() == o.path.read_bytes() for o in objects)


def test_outcomes_recorded_in_one_statement_per_key_round_apply_in_order(env):
    """Outcomes are written set-based; two for one key apply one after the other, as before
    (an error counted, then the upload), and an outcome about other bytes changes nothing."""
    data_dir, conninfo = env
    frame = prepare(data_dir, conninfo, n=3)
    from ov_assets.defs.resources import ObjectStoreResource

    store = ObjectStoreResource(data_dir=str(data_dir)).open()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    a, b, c = objects[:3]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        archive.register_pending(conn, store, [a, b, c])
        archive.record_outcomes(
            conn,
            store,
            [
                archive.Outcome(a.key, "error", "bot", "boom", a.sha256),
                archive.Outcome(b.key, "uploaded", "bot", None, b.sha256, size=b.size),
                archive.Outcome(a.key, "uploaded", "bot", None, a.sha256),
                archive.Outcome(c.key, "uploaded", "bot", None, "f" * 64),  # not the row's bytes
            ],
        )
    reg = registry(conninfo)
    assert (reg[a.key]["upload_status"], reg[a.key]["attempts"], reg[a.key]["last_error"]) == ("uploaded", 2, None)
    assert reg[a.key]["uploaded_at"] is not None
    assert (reg[b.key]["upload_status"], reg[b.key]["attempts"], reg[b.key]["file_size"]) == ("uploaded", 1, b.size)
    assert (reg[c.key]["upload_status"], reg[c.key]["attempts"], reg[c.key]["file_hash"]) == ("pending", 0, c.sha256)
