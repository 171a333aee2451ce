"""The S3 store against moto's server: checksums, encryption, metadata, conditional puts,
multipart, server-side copies; and the local store's same promises."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from ov_assets.fs import NotARegularFile
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import IntegrityError, LocalObjectStore, ObjectExists, b64_of_hex
from ov_assets_tests.archive_support import client, store_resource


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_put_sends_sha256_sse_metadata_and_content_type(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path).open()
    assert isinstance(store, S3ObjectStore)
    path, sha = _file(tmp_path, "RE1_20251008_093221.pdf", b"%PDF-1.4 hola\n" * 50)
    store.put("k/RE1_20251008_093221.pdf", path, sha, "application/pdf", {"empresa": "afinia", "numero_radicado": "1"})
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key="k/RE1_20251008_093221.pdf", ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/pdf"
    assert head["Metadata"] == {"empresa": "afinia", "numero_radicado": "1", "sha256": sha}
    assert head["ChecksumSHA256"] == b64_of_hex(sha)
    body = client(s3_endpoint).get_object(Bucket=s3_bucket, Key="k/RE1_20251008_093221.pdf")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha == store.verified_sha256("k/RE1_20251008_093221.pdf")
    assert store.head("k/RE1_20251008_093221.pdf").sha256 == sha
    assert store.head("k/missing") is None


def test_kms_key_means_sse_kms(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path, kms_key_id="alias/ov-assets").open()
    path, sha = _file(tmp_path, "a.json", b'{"a": 1}')
    store.put("k/a.json", path, sha, "application/json", {})
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key="k/a.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/ov-assets")


def test_put_never_overwrites(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path).open()
    client(s3_endpoint).put_object(Bucket=s3_bucket, Key="k/x.pdf", Body=b"someone else's bytes")
    path, sha = _file(tmp_path, "x.pdf", b"ours")
    with pytest.raises(ObjectExists):
        store.put("k/x.pdf", path, sha, "application/pdf", {}, only_if_absent=True)
    body = client(s3_endpoint).get_object(Bucket=s3_bucket, Key="k/x.pdf")["Body"].read()
    assert body == b"someone else's bytes"
    assert store.verified_sha256("k/x.pdf") == hashlib.sha256(body).hexdigest()


def test_changed_landing_file_is_refused(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path).open()
    path, sha = _file(tmp_path, "x.json", b"indexed bytes")
    path.write_bytes(b"changed since")
    with pytest.raises(IntegrityError):
        store.put("k/x.json", path, sha, "application/json", {})
    assert store.head("k/x.json") is None


@pytest.mark.parametrize("where", ["s3", "s3-multipart", "local"])
def test_put_never_follows_a_symbolic_link(where, tmp_path, request):
    """A landing file swapped for a link to the same bytes elsewhere (after it was indexed):
    every put refuses it by name, reads nothing through the link and stores nothing."""
    outside = tmp_path / "outside"
    outside.mkdir()
    big = where == "s3-multipart"
    target, sha = _file(outside, "RE1_20251008_093221.pdf", b"%PDF-1.4 outside\n" * ((6 << 20) // 17 if big else 3))
    landing = tmp_path / "landing"
    landing.mkdir()
    link = landing / target.name
    os.symlink(target, link)
    if where == "local":
        store = LocalObjectStore(tmp_path / "store")
    else:
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        store = store_resource(endpoint, bucket, tmp_path, multipart_threshold_mb=5, multipart_chunksize_mb=5).open()
    for only_if_absent in (True, False):
        with pytest.raises(NotARegularFile, match=r"^RE1_20251008_093221\.pdf: a symbolic link"):
            store.put("k/RE1_20251008_093221.pdf", link, sha, "application/pdf", {}, only_if_absent=only_if_absent)
    assert store.head("k/RE1_20251008_093221.pdf") is None


def test_multipart_sends_part_checksums_and_verifies_composite(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path, multipart_threshold_mb=5, multipart_chunksize_mb=5).open()
    data = os.urandom((5 << 20) * 2 + 12345)
    path, sha = _file(tmp_path, "big.jpg", data)
    store.put("k/big.jpg", path, sha, "image/jpeg", {"empresa": "aire"})
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key="k/big.jpg", ChecksumMode="ENABLED")
    assert "-" in head["ETag"]  # really multipart
    assert head["ServerSideEncryption"] == "AES256" and head["Metadata"]["sha256"] == sha
    parts = [data[i : i + (5 << 20)] for i in range(0, len(data), 5 << 20)]
    composite = base64.b64encode(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite
    stored = store.head("k/big.jpg")
    assert stored.sha256 == sha and not stored.verified  # from metadata: a composite is not a file hash
    assert store.verified_sha256("k/big.jpg") == sha  # recomputed from the bytes


def test_copy_computes_full_sha256_and_refuses_taken_keys(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path, multipart_threshold_mb=5, multipart_chunksize_mb=5).open()
    data = os.urandom((5 << 20) + 10)
    path, sha = _file(tmp_path, "big.jpg", data)
    store.put("old/big.jpg", path, sha, "image/jpeg", {"empresa": "aire"})
    store.copy("old/big.jpg", "new/big.jpg", sha)
    stored = store.head("new/big.jpg")
    assert stored.verified and stored.sha256 == sha  # S3's own full-object SHA-256 of the copy
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key="new/big.jpg")
    assert head["ContentType"] == "image/jpeg" and head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"empresa": "aire", "sha256": sha}
    with pytest.raises(ObjectExists):
        store.copy("old/big.jpg", "new/big.jpg", sha)
    with pytest.raises(IntegrityError):
        store.copy("old/big.jpg", "other/big.jpg", "0" * 64)


def test_client_config_bounds_pool_and_retries(tmp_path):
    res = store_resource("http://127.0.0.1:9", "b-b-b", tmp_path, max_workers=24, max_attempts=6)
    cfg = res.client_config()
    assert cfg.max_pool_connections == 26
    assert cfg.retries == {"mode": "adaptive", "max_attempts": 6}
    store = res.open()
    assert store.client.meta.config.max_pool_connections == 26


def test_local_store_same_promises(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    path, sha = _file(tmp_path, "a.pdf", b"abc")
    store.put("x/a.pdf", path, sha, "application/pdf", {})
    assert store.bucket == "local" and store.url("x/a.pdf").startswith("file://")
    with pytest.raises(ObjectExists):
        store.put("x/a.pdf", path, sha, "application/pdf", {}, only_if_absent=True)
    store.put("x/a.pdf", path, sha, "application/pdf", {})  # reports are rewritten in place
    with pytest.raises(IntegrityError):
        store.put("x/b.pdf", path, "0" * 64, "application/pdf", {})
    store.copy("x/a.pdf", "y/a.pdf", sha)
    assert store.verified_sha256("y/a.pdf") == sha
    store.delete("x/a.pdf")
    assert store.head("x/a.pdf") is None


def test_local_store_is_owner_only(tmp_path):
    """The local store holds personal data: every folder it makes is 0700 and every object (and
    its metadata) 0600, whatever the process umask lets through."""
    from ov_assets.defs.resources import ObjectStoreResource

    data_dir = tmp_path / "data"
    previous = os.umask(0o022)
    try:
        store = ObjectStoreResource(data_dir=str(data_dir)).open()
        path, sha = _file(tmp_path, "a.pdf", b"abc")
        store.put(
            "oficina-virtual/afinia/2025/10/08/RE1/a.pdf",
            path,
            sha,
            "application/pdf",
            {"empresa": "afinia"},
            only_if_absent=True,
        )
        store.copy("oficina-virtual/afinia/2025/10/08/RE1/a.pdf", "Central/RE1/a.pdf", sha)
    finally:
        os.umask(previous)
    for root, leaf in ((data_dir / "object_store", "a.pdf"), (data_dir / "object_store.meta", "a.pdf.json")):
        written = [root, *root.rglob("*")]
        assert any(p.name == leaf for p in written)
        modes = {str(p.relative_to(data_dir)): oct(p.stat().st_mode & 0o777) for p in written}
        assert modes == {k: oct(0o700 if (data_dir / k).is_dir() else 0o600) for k in modes}
    assert store.head("Central/RE1/a.pdf").metadata == {"empresa": "afinia", "sha256": sha}


def test_local_store_keys_stay_inside_the_store(tmp_path):
    """Keys are checked by name (``..``, absolute, empty parts) and, where the disk is touched,
    for a link inside the store that leads out of it: nothing is read or written outside."""
    root = tmp_path / "store"
    root.mkdir()
    store = LocalObjectStore(root)
    path, sha = _file(tmp_path, "a.pdf", b"abc")
    for key in ("../a.pdf", "/abs/a.pdf", "x//a.pdf", "x/./a.pdf", "x/../../a.pdf", ""):
        with pytest.raises(ValueError, match="escapes the store"):
            store.url(key)
        with pytest.raises(ValueError, match="escapes the store"):
            store.put(key, path, sha, "application/pdf", {})
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "linked")
    with pytest.raises(ValueError, match="escapes the store"):
        store.put("linked/a.pdf", path, sha, "application/pdf", {})
    with pytest.raises(ValueError, match="escapes the store"):
        store.head("linked/a.pdf")
    assert list(outside.iterdir()) == []
    store.put("x/a.pdf", path, sha, "application/pdf", {"empresa": "afinia"})
    assert store.url("x/a.pdf") == (root.resolve() / "x" / "a.pdf").as_uri()
    head = store.head("x/a.pdf")
    assert head is not None and head.sha256 == sha and head.metadata["empresa"] == "afinia"
    assert (tmp_path / "store.meta" / "x" / "a.pdf.json").is_file()
    # a link to outside as the object's own name is refused
    (root / "y").mkdir()
    store.put("y/b.pdf", path, sha, "application/pdf", {})
    os.symlink(outside / "a.pdf", root / "y" / "c.pdf")
    with pytest.raises(ValueError, match="escapes the store"):
        store.head("y/c.pdf")
    assert store.url("x/ñ a.pdf") == (root.resolve() / "x" / "ñ a.pdf").as_uri()


def test_still_as_written_proves_only_this_stores_writes_unchanged_and_as_registered(s3_endpoint, s3_bucket, tmp_path):
    """The listing proof of the run's check: a key counts only when this store wrote it (its
    answer proving the SHA-256), the registry's size and SHA-256 are that write's, and the
    listing shows that write's ETag and size. Deleted, overwritten (same size), registered with
    other bytes, written by someone else, or too few keys to list: not proven."""
    from ov_assets.objects.s3_store import LIST_FROM

    store = store_resource(s3_endpoint, s3_bucket, tmp_path).open()
    assert isinstance(store, S3ObjectStore)
    rows = []
    for i in range(LIST_FROM + 10):
        path, sha = _file(tmp_path, f"f{i:03d}.json", f'{{"n": {i:03d}}}'.encode())
        key = f"base/afinia/2025/10/08/RE{i:03d}/f{i:03d}.json"
        store.put(key, path, sha, "application/json", {}, only_if_absent=True)
        rows.append((key, path.stat().st_size, sha))
    s3 = client(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="base/afinia/2025/10/08/RE999/other.json", Body=b"{}")
    assert store.still_as_written(rows) == {k for k, _, _ in rows}

    deleted, overwritten, other_sha, other_size = (r[0] for r in rows[:4])
    s3.delete_object(Bucket=s3_bucket, Key=deleted)
    s3.put_object(Bucket=s3_bucket, Key=overwritten, Body=b'{"n": 999}')  # the same size, other bytes
    registered = [(k, size + (k == other_size), "0" * 64 if k == other_sha else sha) for k, size, sha in rows] + [
        ("base/afinia/2025/10/08/RE999/other.json", 2, hashlib.sha256(b"{}").hexdigest())
    ]
    proven = store.still_as_written(registered)
    assert proven == {k for k, _, _ in rows[4:]}
    assert store.still_as_written(rows[4 : 4 + LIST_FROM - 1]) == set()  # too few: each is read instead
    assert LocalObjectStore(tmp_path / "store").still_as_written(rows) == set()
