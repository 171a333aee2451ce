"""The archive under S3 faults (a real fault-injecting proxy in front of moto) and under
concurrent or replaced landing files: nothing lost, nothing stalled, and no registry row that
claims bytes the bucket does not hold."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from ov_assets.objects.archive import (
    _archive_one,
    archive_objects,
    link_table_rows,
    plan_objects,
    register_pending,
)
from ov_assets.objects.registry_keys import versioned_key
from ov_assets.objects.stores import verify_object
from ov_assets_tests.archive_support import (
    bucket_keys,
    client,
    frame_for,
    prepare,
    registry,
    store_resource,
)
from ov_assets_tests.s3_fault_proxy import Fault, fault_proxy


def _archive(conninfo: dict[str, Any], store: Any, frame: pl.DataFrame, data_dir: Path) -> tuple[Any, list[Any]]:
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        counts, outcomes = archive_objects(conn, store, objects, 4)
        link_table_rows(conn, store, frame, "default", "oficina-virtual")
    return counts, outcomes


def _registry_is_true(conninfo: dict[str, Any], store: Any) -> None:
    """Every row that says stored describes exactly the bytes its key holds."""
    for key, row in registry(conninfo).items():
        if row["upload_status"] in ("uploaded", "pre_existing"):
            assert verify_object(store, key, row["file_size"], row["file_hash"]) is None, key


def _versions_kept_apart(
    conninfo: dict[str, Any],
    store: Any,
    frame: pl.DataFrame,
    data_dir: Path,
    first: Any,
    old_bytes: bytes,
    new_bytes: bytes,
) -> None:
    """``first``'s key still holds ``old_bytes``, its versioned key ``new_bytes``, the table
    links the versioned key, every stored row is true, and a rerun changes nothing."""
    new_sha = hashlib.sha256(new_bytes).hexdigest()
    new_key = versioned_key(first.key, new_sha)
    c = client(store.client.meta.endpoint_url)
    assert c.get_object(Bucket=store.bucket, Key=first.key)["Body"].read() == old_bytes  # not overwritten
    assert c.get_object(Bucket=store.bucket, Key=new_key)["Body"].read() == new_bytes
    _registry_is_true(conninfo, store)
    with psycopg.connect(**conninfo) as conn:
        (urls,) = conn.execute(
            "SELECT archivos_s3_urls FROM data_general.ov_afinia WHERE numero_radicado = %s", (first.numero_radicado,)
        ).fetchone()
    assert {u["s3_url"]: u["sha256"] for u in urls if u["filename"] == first.filename} == {
        f"s3://{store.bucket}/{new_key}": new_sha
    }
    before, keys = registry(conninfo), bucket_keys(c.meta.endpoint_url, store.bucket)
    _, outcomes = _archive(conninfo, store, frame, data_dir)
    assert outcomes == [] and registry(conninfo) == before and bucket_keys(c.meta.endpoint_url, store.bucket) == keys


@pytest.mark.parametrize("status", [503, 409])
def test_transient_answers_are_retried(
    status: int, data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """S3 answering 503 twice (botocore's retries), or 409 ConditionalRequestConflict twice (a
    conditional write racing another: ours), then succeeding: every object uploaded."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        proxy.faults.append(Fault("PUT", status, times=2))
        store = store_resource(endpoint, s3_bucket, data_dir, max_attempts=4).open()
        counts, outcomes = _archive(pg_conninfo18, store, frame, data_dir)
        assert [w for _, _, w in proxy.log].count(str(status)) == 2  # the faults did happen
    assert counts.s3_errors == 0 and counts.s3_uploaded == len(outcomes) > 0
    assert {(r["upload_status"], r["upload_source"]) for r in registry(pg_conninfo18).values()} == {("uploaded", "bot")}
    _registry_is_true(pg_conninfo18, store)


def test_put_whose_answer_is_lost_ends_uploaded(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """The object is stored but the client never sees the answer: botocore sends the put again,
    S3 refuses it (the key is taken), and the object holds exactly this row's bytes with this
    row's metadata: our own upload, ``uploaded`` by the bot, never ``error`` (and not
    ``pre_existing``, which would say somebody else stored it)."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        proxy.faults.append(Fault("PUT", "lose_answer", times=1))
        store = store_resource(endpoint, s3_bucket, data_dir, max_attempts=4).open()
        counts, outcomes = _archive(pg_conninfo18, store, frame, data_dir)
        assert any(w == "answer lost" for _, _, w in proxy.log)
    assert counts.s3_errors == 0 and counts.s3_pre_existing == 0 and counts.s3_uploaded == len(outcomes)
    assert {(r["upload_status"], r["upload_source"]) for r in registry(pg_conninfo18).values()} == {("uploaded", "bot")}
    _registry_is_true(pg_conninfo18, store)


def test_an_object_stored_by_someone_else_stays_pre_existing(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """The same bytes already under the key, not put for this row (the old system's copy, a
    manual upload): ``pre_existing``, as before."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    first = objects[0]
    client(s3_endpoint).put_object(
        Bucket=s3_bucket, Key=first.key, Body=first.path.read_bytes(), Metadata={"sha256": first.sha256}
    )
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    counts, _ = _archive(pg_conninfo18, store, frame, data_dir)
    assert (counts.s3_pre_existing, counts.s3_uploaded, counts.s3_errors) == (1, len(objects) - 1, 0)
    row = registry(pg_conninfo18)[first.key]
    assert (row["upload_status"], row["upload_source"], row["file_hash"]) == (
        "pre_existing",
        "pre_existing",
        first.sha256,
    )
    _registry_is_true(pg_conninfo18, store)


def test_outcome_of_bytes_the_row_no_longer_describes_is_not_written(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """While this run's put is in flight, another run re-registers the key for other bytes
    (its landing file was replaced): this run's ``uploaded`` is about other bytes than the row
    now describes, so it is not written to it."""
    frame = prepare(data_dir, pg_conninfo18, n=2)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    victim = objects[0]
    other = "e" * 64

    def concurrent_registration(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == victim.key:
            with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
                conn.execute(
                    "UPDATE data_general.s3_files_registry SET file_hash = %s WHERE s3_key = %s", (other, victim.key)
                )

    store.client.meta.events.register("before-parameter-build.s3.PutObject", concurrent_registration)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        archive_objects(conn, store, objects, 1)
    row = registry(pg_conninfo18)[victim.key]
    assert row["file_hash"] == other and row["upload_status"] == "pending"  # left to its own run
    _registry_is_true(pg_conninfo18, store)


def test_landing_file_replaced_by_hand_is_a_new_version(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """Same name, other bytes after the upload: the first bytes keep their object and their
    ``uploaded`` row; the new bytes are stored under a key of their own (the name with a
    SHA-256 suffix) with a row of their own, linked from the table; nothing is overwritten,
    nothing stalls in ``error``, and a rerun stores nothing."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    _archive(pg_conninfo18, store, frame, data_dir)
    winners = {f["filename"] for fs in frame.filter(pl.col("is_winner"))["files"].to_list() for f in fs}
    first = next(
        o
        for o in plan_objects(frame, data_dir, "default", "oficina-virtual")
        if o.file_type == "pdf" and o.filename in winners
    )
    old_bytes = first.path.read_bytes()
    first.path.write_bytes(old_bytes + b"\n% replaced by hand\n")
    new_sha = hashlib.sha256(first.path.read_bytes()).hexdigest()

    frame = frame_for(data_dir)
    counts, _ = _archive(pg_conninfo18, store, frame, data_dir)
    assert (counts.s3_uploaded, counts.s3_errors) == (1, 0)
    reg = registry(pg_conninfo18)
    new_key = versioned_key(first.key, new_sha)
    assert new_key != first.key and new_key.endswith(".pdf") and new_sha[:16] in new_key
    assert (reg[first.key]["upload_status"], reg[first.key]["file_hash"]) == ("uploaded", first.sha256)
    assert (reg[new_key]["upload_status"], reg[new_key]["file_hash"], reg[new_key]["filename"]) == (
        "uploaded",
        new_sha,
        first.filename,
    )
    _versions_kept_apart(pg_conninfo18, store, frame, data_dir, first, old_bytes, first.path.read_bytes())


def test_own_put_of_earlier_bytes_keeps_its_row_and_the_new_bytes_get_their_own_key(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """A run registered a file ``pending``, stored its bytes A under the row's id and was killed
    before writing the outcome; then the landing file was replaced by hand with bytes B. The
    next run finds its own object under the key: the row is recorded ``uploaded`` against A
    (what the key holds), B is stored under its own versioned key with a row of its own and
    linked from the table; nothing is overwritten, and a rerun changes nothing."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    winners = {f["filename"] for fs in frame.filter(pl.col("is_winner"))["files"].to_list() for f in fs}
    first = next(o for o in objects if o.file_type == "pdf" and o.filename in winners)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        ids = register_pending(conn, store, [first])
    stored = _archive_one(store, first, ids[first.key], threading.Event(), [])  # its outcome never written
    assert stored.status == "uploaded" and registry(pg_conninfo18)[first.key]["upload_status"] == "pending"
    bytes_a = first.path.read_bytes()
    first.path.write_bytes(bytes_a + b"\n% replaced by hand\n")
    bytes_b = first.path.read_bytes()
    sha_b = hashlib.sha256(bytes_b).hexdigest()

    frame = frame_for(data_dir)
    counts, _ = _archive(pg_conninfo18, store, frame, data_dir)
    assert (counts.s3_uploaded, counts.s3_errors, counts.s3_pre_existing) == (len(objects), 0, 0)
    reg = registry(pg_conninfo18)
    row, new_key = reg[first.key], versioned_key(first.key, sha_b)
    assert new_key != first.key and new_key.endswith(f"~{sha_b[:16]}.pdf")
    assert (row["id"], row["upload_status"], row["upload_source"], row["file_hash"], row["file_size"]) == (
        ids[first.key],
        "uploaded",
        "bot",
        first.sha256,
        len(bytes_a),
    )
    assert (reg[new_key]["upload_status"], reg[new_key]["file_hash"], reg[new_key]["filename"]) == (
        "uploaded",
        sha_b,
        first.filename,
    )
    _versions_kept_apart(pg_conninfo18, store, frame, data_dir, first, bytes_a, bytes_b)


@pytest.mark.parametrize("where", ["s3", "local"])
def test_landing_file_swapped_for_a_link_is_not_uploaded(
    where: str, data_dir: Path, pg_conninfo18: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Indexed, then swapped for a symbolic link to the same bytes outside the folder: the link
    is never followed, so nothing is stored under its key; its row is ``error`` naming the
    file, and the other files are stored as usual."""
    frame = prepare(data_dir, pg_conninfo18, n=3)
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    victim = next(o for o in objects if o.file_type == "pdf")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = victim.path.rename(outside / victim.filename)
    victim.path.symlink_to(target)
    if where == "s3":
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        store = store_resource(endpoint, bucket, data_dir).open()
    else:
        store = store_resource("", "", data_dir).open()
    counts, _ = _archive(pg_conninfo18, store, frame, data_dir)
    assert (counts.s3_errors, counts.s3_uploaded) == (1, len(objects) - 1)
    assert store.head(victim.key) is None
    row = registry(pg_conninfo18)[victim.key]
    assert row["upload_status"] == "error"
    assert row["last_error"].startswith(f"{victim.filename}: a symbolic link") and "not uploaded" in row["last_error"]
    _registry_is_true(pg_conninfo18, store)


def test_copy_answered_409_is_retried(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    """The layout migration's server-side copy is a conditional write too."""
    data = b"%PDF-1.4 copy me"
    path = tmp_path / "a.pdf"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        store = store_resource(endpoint, s3_bucket, tmp_path).open()
        store.put("src/a.pdf", path, sha, "application/pdf", {}, only_if_absent=True)
        proxy.faults.append(Fault("PUT", 409, times=2, match=lambda p: "/dst/" in p))
        store.copy("src/a.pdf", "dst/a.pdf", sha)
        assert [w for _, p, w in proxy.log if "/dst/" in p].count("409") == 2
    assert verify_object(store, "dst/a.pdf", len(data), sha) is None


def test_multipart_completion_whose_answer_is_lost_ends_uploaded(
    data_dir: Path, pg_conninfo18: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    """CompleteMultipartUpload done, its answer lost, the completion sent again: the object is
    there with this row's bytes and metadata, so ``uploaded`` (never ``error``)."""
    frame = prepare(data_dir, pg_conninfo18, n=3, big=6 << 20)
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        proxy.faults.append(Fault("POST", "lose_answer", times=1, match=lambda p: "uploadId=" in p))
        store = store_resource(
            endpoint, s3_bucket, data_dir, max_attempts=4, multipart_threshold_mb=5, multipart_chunksize_mb=5
        ).open()
        counts, outcomes = _archive(pg_conninfo18, store, frame, data_dir)
        assert [w for m, _, w in proxy.log if m == "POST"].count("answer lost") == 1
    assert counts.s3_errors == 0 and counts.s3_uploaded == len(outcomes)
    assert {(r["upload_status"], r["upload_source"]) for r in registry(pg_conninfo18).values()} == {("uploaded", "bot")}
    _registry_is_true(pg_conninfo18, store)
