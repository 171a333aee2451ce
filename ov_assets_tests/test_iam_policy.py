"""The shipped runtime IAM policy is exactly what the code uses.

Every S3 operation the pipeline calls during a full run (all four assets and their checks, with
a multipart attachment) and during the layout migration is recorded through botocore's event
hooks on the store's real client, mapped to IAM actions through a fixed table, and checked
against ``aws/iam-policy-runtime.json``: a call the policy does not allow fails the test, and so
do a ``*`` resource and an allowed action that was never used and is not one of the documented
exceptions. ``ov-assets s3-setup`` is checked the same way against the admin policy.
"""

from __future__ import annotations

import fnmatch
import threading

import pytest

from ov_assets.defs.resources import ObjectStoreResource
from ov_assets.objects import bucket_setup as s3_setup
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import ObjectStore

# Fixed table: S3 API operation -> the IAM actions it needs, and on what ("object", "source"
# for a copy's source object, "bucket").
OPERATION_TO_ACTIONS: dict[str, list[tuple[str, str]]] = {
    "PutObject": [("s3:PutObject", "object")],
    "CreateMultipartUpload": [("s3:PutObject", "object")],
    "UploadPart": [("s3:PutObject", "object")],
    "CompleteMultipartUpload": [("s3:PutObject", "object")],
    "AbortMultipartUpload": [("s3:AbortMultipartUpload", "object")],
    "ListParts": [("s3:ListMultipartUploadParts", "object")],
    "HeadObject": [("s3:GetObject", "object")],
    "GetObject": [("s3:GetObject", "object")],
    "GetObjectAttributes": [("s3:GetObject", "object"), ("s3:GetObjectAttributes", "object")],
    "CopyObject": [("s3:GetObject", "source"), ("s3:PutObject", "object")],
    "UploadPartCopy": [("s3:GetObject", "source"), ("s3:PutObject", "object")],
    "DeleteObject": [("s3:DeleteObject", "object")],
    "DeleteObjects": [("s3:DeleteObject", "object")],
    "ListObjectsV2": [("s3:ListBucket", "bucket")],
    "ListObjects": [("s3:ListBucket", "bucket")],
    "HeadBucket": [("s3:ListBucket", "bucket")],
    "PutBucketVersioning": [("s3:PutBucketVersioning", "bucket")],
    "GetBucketVersioning": [("s3:GetBucketVersioning", "bucket")],
    "PutBucketLifecycleConfiguration": [("s3:PutLifecycleConfiguration", "bucket")],
    "GetBucketLifecycleConfiguration": [("s3:GetLifecycleConfiguration", "bucket")],
    "PutBucketEncryption": [("s3:PutEncryptionConfiguration", "bucket")],
    "GetBucketEncryption": [("s3:GetEncryptionConfiguration", "bucket")],
    "PutPublicAccessBlock": [("s3:PutBucketPublicAccessBlock", "bucket")],
    "GetPublicAccessBlock": [("s3:GetBucketPublicAccessBlock", "bucket")],
}
# Granted although no call records them (the policy's statements say why).
DOCUMENTED_EXCEPTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}


class Recorder:
    """Registers botocore hooks on a client; keeps (operation, Bucket, Key, CopySource)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        self.operations: list[str] = []
        self._lock = threading.Lock()

    def attach(self, client) -> None:
        client.meta.events.register("before-parameter-build.s3.*", self._params)
        client.meta.events.register("before-call.s3.*", self._call)

    def _params(self, params, model, **kwargs) -> None:
        source = params.get("CopySource") or ""
        if isinstance(source, dict):
            source = f"{source['Bucket']}/{source['Key']}"
        with self._lock:
            self.calls.append((model.name, params.get("Bucket", ""), params.get("Key", ""), source))

    def _call(self, model, **kwargs) -> None:
        with self._lock:
            self.operations.append(model.name)


def needed(calls) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) for every recorded call; an unknown operation is an error."""
    out = []
    for op, bucket, key, source in calls:
        if op not in OPERATION_TO_ACTIONS:
            raise AssertionError(f"operation {op} is not in the operation->IAM action table")
        for action, on in OPERATION_TO_ACTIONS[op]:
            arn = {
                "object": f"arn:aws:s3:::{bucket}/{key}",
                "bucket": f"arn:aws:s3:::{bucket}",
                "source": f"arn:aws:s3:::{source}",
            }[on]
            out.append((action, arn))
    return out


def _listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def violations(policy: dict, calls, exceptions=DOCUMENTED_EXCEPTIONS) -> list[str]:
    problems = []
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    for s in policy["Statement"]:
        if s["Effect"] != "Allow" or "NotAction" in s or "NotResource" in s:
            problems.append(f"statement {s.get('Sid')}: only plain Allow statements are expected")
        for r in _listed(s.get("Resource", [])):
            if r == "*" or r.startswith("arn:aws:s3:::*") or r.endswith(":*"):
                problems.append(f"statement {s.get('Sid')}: resource {r!r} is a wildcard")
        for a in _listed(s.get("Action", [])):
            if "*" in a:
                problems.append(f"statement {s.get('Sid')}: action {a!r} is a wildcard")
    used = needed(calls)
    for action, arn in sorted(set(used)):
        if not any(
            action in _listed(s["Action"]) and any(fnmatch.fnmatchcase(arn, r) for r in _listed(s["Resource"]))
            for s in allows
        ):
            problems.append(f"not allowed: {action} on {arn}")
    granted = {a for s in allows for a in _listed(s["Action"])}
    for extra in sorted(granted - {a for a, _ in used} - exceptions):
        problems.append(f"granted but never used: {extra}")
    return problems


def test_checker_catches_what_it_must():
    calls = [
        ("PutObject", "b", "oficina-virtual/x", ""),
        ("HeadObject", "b", "oficina-virtual/x", ""),
        ("ListObjectsV2", "b", "", ""),
    ]
    ok = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": ["arn:aws:s3:::b/oficina-virtual/*"],
            },
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::b"]},
        ]
    }
    assert violations(ok, calls) == []
    missing = {
        "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::b/oficina-virtual/*"]}]
    }
    assert violations(missing, calls) == [
        "not allowed: s3:GetObject on arn:aws:s3:::b/oficina-virtual/x",
        "not allowed: s3:ListBucket on arn:aws:s3:::b",
    ]
    star = {"Statement": [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "*"}]}
    assert any("wildcard" in v for v in violations(star, calls))
    extra = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                "Resource": ["arn:aws:s3:::b/oficina-virtual/*"],
            },
            ok["Statement"][1],
        ]
    }
    assert violations(extra, calls) == ["granted but never used: s3:DeleteObject"]
    elsewhere = [("PutObject", "b", "other-prefix/x", "")]
    assert violations(ok, elsewhere + calls) == ["not allowed: s3:PutObject on arn:aws:s3:::b/other-prefix/x"]
    with pytest.raises(AssertionError, match="table"):
        needed([("PutBucketPolicy", "b", "", "")])


_RECORDERS: list[Recorder] = []  # the current test's recorder (the runs below are in this process)


class RecordingStoreResource(ObjectStoreResource):
    """The object store resource the runs use, whose S3 clients report every call (botocore's
    event hooks on the client ``open()`` returns) to the current test's recorder."""

    def open(self) -> ObjectStore:
        store = super().open()
        assert isinstance(store, S3ObjectStore), "the recorded runs use S3"
        for rec in _RECORDERS:
            rec.attach(store.client)
        return store


@pytest.fixture
def recorder():
    rec = Recorder()
    _RECORDERS.append(rec)
    yield rec
    _RECORDERS.remove(rec)


def test_full_run_and_layout_migration_use_exactly_the_runtime_policy(
    data_dir, pg_conninfo18, s3_endpoint, s3_bucket, recorder
):
    import dagster as dg

    from ov_assets.defs.assets import pqr_assets
    from ov_assets.defs.jobs import layout_migration_job
    from ov_assets.defs.partitions import partition_key
    from ov_assets.defs.resources import LandingResource, PartitionedFrameIOManager, PortalResource, PostgresResource
    from ov_assets.devkit import generator
    from ov_assets_tests.archive_support import DAY, bucket_keys, registry, store_resource

    out = generator.write_day(data_dir, "afinia", DAY, n=5, seed=3)
    big = next(p for p in out.files if "_adjunto_" in p.name)
    big.write_bytes(big.read_bytes() * (1 + (6 << 20) // big.stat().st_size))  # multipart
    conninfo = pg_conninfo18
    postgres = PostgresResource(
        host=conninfo["host"],
        port=int(conninfo["port"]),
        dbname=conninfo["dbname"],
        user=conninfo["user"],
        data_dir=str(data_dir),
    )
    resources = {
        "landing": LandingResource(data_dir=str(data_dir)),
        "postgres": postgres,
        "object_store": store_resource(
            s3_endpoint,
            s3_bucket,
            data_dir,
            multipart_threshold_mb=5,
            multipart_chunksize_mb=5,
            resource_class=RecordingStoreResource,
        ),
        "frames_io_manager": PartitionedFrameIOManager(data_dir=str(data_dir)),
        "portal": PortalResource(extract=False, data_dir=str(data_dir)),
    }
    result = dg.materialize(pqr_assets, partition_key=partition_key(DAY, "afinia"), resources=resources)
    assert result.success
    assert {r["upload_status"] for r in registry(conninfo).values()} == {"uploaded"}
    run_ops = set(recorder.operations)
    assert {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"} <= run_ops

    # the same run again (idempotent) and the migration to the other layout
    assert dg.materialize(pqr_assets, partition_key=partition_key(DAY, "afinia"), resources=resources).success
    moved = layout_migration_job.execute_in_process(
        resources={
            "postgres": postgres,
            "object_store": store_resource(
                s3_endpoint, s3_bucket, data_dir, layout="central", resource_class=RecordingStoreResource
            ),
        },
        run_config={"ops": {"migrate_object_layout": {"config": {"backup": False}}}},  # (test_backups.py)
    )
    assert moved.success
    assert all(k.startswith("Central_De_Escritos/") for k in bucket_keys(s3_endpoint, s3_bucket))
    assert {"CopyObject", "DeleteObject", "HeadObject"} <= set(recorder.operations)
    assert len(recorder.operations) == len(recorder.calls)

    policy = s3_setup.render("runtime", s3_bucket, "oficina-virtual")
    assert violations(policy, recorder.calls) == []
    # with SSE-KMS the KMS statement appears, still without wildcards
    kms = s3_setup.render("runtime", s3_bucket, "oficina-virtual", "us-east-1", "123456789012", "key-id")
    assert violations(kms, recorder.calls) == []
    assert any(a.startswith("kms:") for s in kms["Statement"] for a in s["Action"])


def test_s3_setup_applies_bucket_configuration_with_the_admin_policy(s3_endpoint, s3_bucket):
    from ov_assets_tests.archive_support import client

    c = client(s3_endpoint)
    rec = Recorder()
    rec.attach(c)
    done = s3_setup.apply(c, s3_bucket, "oficina-virtual")
    assert len(done) == 4
    assert c.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    rules = {r["ID"]: r for r in c.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    tiering = rules["ov-assets-tiering"]
    assert tiering["Filter"]["Prefix"] == "oficina-virtual/"
    assert [(t["Days"], t["StorageClass"]) for t in tiering["Transitions"]] == [(30, "STANDARD_IA"), (90, "GLACIER")]
    assert (
        rules["ov-assets-abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        == 7
    )
    enc = c.get_bucket_encryption(Bucket=s3_bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    admin = s3_setup.render("admin", s3_bucket)
    setup_calls = [c_ for c_ in rec.calls if c_[0].startswith("Put")]
    problems = violations(
        admin, setup_calls, exceptions={a for s in admin["Statement"] for a in s["Action"] if ":Get" in a}
    )
    assert problems == []
    # and the runtime policy grants none of it
    runtime = s3_setup.render("runtime", s3_bucket)
    assert not (
        {a for s in runtime["Statement"] for a in s["Action"]} & {a for s in admin["Statement"] for a in s["Action"]}
    )


def test_s3_setup_command_applies_to_the_configured_bucket(s3_endpoint, s3_bucket, data_dir, monkeypatch, capsys):
    """``ov-assets s3-setup``: the bucket, region and endpoint come from the environment; a dry
    run changes nothing, the real run enables versioning, ``--print-policy`` fills the bucket in."""
    import json

    from ov_assets import cli
    from ov_assets_tests.archive_support import client

    monkeypatch.setenv("AWS_S3_BUCKET_NAME", s3_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    c = client(s3_endpoint)
    assert cli.main(["s3-setup", "--dry-run"]) == 0
    assert f"would apply to s3://{s3_bucket}: versioning: Enabled" in capsys.readouterr().out
    assert c.get_bucket_versioning(Bucket=s3_bucket).get("Status") is None
    assert cli.main(["s3-setup"]) == 0
    assert capsys.readouterr().out.count(f"applied to s3://{s3_bucket}: ") == 4
    assert c.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    assert cli.main(["s3-setup", "--print-policy", "runtime"]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert policy == s3_setup.render("runtime", s3_bucket, "oficina-virtual", "us-east-1")
