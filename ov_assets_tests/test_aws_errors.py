"""Operator errors in one actionable line: against moto's server where moto can produce them
(no credentials, access denied, no such bucket, unreachable endpoint), and for the wrong
region through botocore's real parsing of the answers S3 sends (moto never sends them)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from ov_assets.devkit.servers import free_port
from ov_assets.errors import OperatorError, StoreAccessError, translate_aws_error
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets_tests.archive_support import store_resource


def _put(store, tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_bytes(b"{}")
    import hashlib

    store.put(
        "oficina-virtual/a.json", path, hashlib.sha256(b"{}").hexdigest(), "application/json", {}, only_if_absent=True
    )


def _one_line(exc: BaseException) -> str:
    assert isinstance(exc, StoreAccessError) and isinstance(exc, OperatorError)
    text = str(exc)
    assert "\n" not in text and "testing" not in text  # one line, never a secret
    return text


def test_no_credentials(s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = store_resource(s3_endpoint, s3_bucket, tmp_path, key_id="", secret="").open()
    with pytest.raises(StoreAccessError) as err:
        _put(store, tmp_path)
    assert "no credentials" in _one_line(err.value) and "AWS_ACCESS_KEY_ID" in str(err.value)


def test_no_such_bucket(s3_endpoint, tmp_path):
    store = store_resource(s3_endpoint, "ov-no-such-bucket", tmp_path).open()
    with pytest.raises(StoreAccessError) as err:
        _put(store, tmp_path)
    assert "bucket 'ov-no-such-bucket' does not exist" in _one_line(err.value)
    assert "AWS_S3_BUCKET_NAME" in str(err.value)
    # A HEAD's 404 has no body: the same for a missing key and a missing bucket. The checks ask
    # for objects by HEAD; they must not read a missing bucket as every object missing.
    with pytest.raises(StoreAccessError) as err:
        store.head("oficina-virtual/a.json")
    assert "bucket 'ov-no-such-bucket' does not exist" in _one_line(err.value)


def test_missing_key_in_an_existing_bucket_is_just_missing(s3_endpoint, s3_bucket, tmp_path):
    store = store_resource(s3_endpoint, s3_bucket, tmp_path).open()
    assert store.head("oficina-virtual/none.json") is None


def test_unreachable_endpoint(tmp_path):
    store = store_resource(f"http://127.0.0.1:{free_port()}", "b-b-b", tmp_path, max_attempts=1).open()
    with pytest.raises(StoreAccessError) as err:
        _put(store, tmp_path)
    assert "cannot reach the endpoint" in _one_line(err.value) and "AWS_ENDPOINT_URL" in str(err.value)


@pytest.fixture
def enforcing_moto(s3_endpoint):
    """moto with IAM enforced (its in-process server reads these settings per request)."""
    from moto import settings
    from moto.core.responses import ActionAuthenticatorMixin

    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1")

    def user(name: str, policy: dict) -> tuple[str, str]:
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    state = {}

    def enforce() -> None:
        state["on"] = True
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

    yield user, enforce
    settings.INITIAL_NO_AUTH_ACTION_COUNT = before


def test_access_denied(enforcing_moto, s3_endpoint, s3_bucket, tmp_path):
    import uuid

    make_user, enforce = enforcing_moto
    key_id, secret = make_user(
        f"ov-other-{uuid.uuid4().hex[:8]}",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::some-other-bucket/*"]}
            ],
        },
    )
    store = store_resource(s3_endpoint, s3_bucket, tmp_path, key_id=key_id, secret=secret).open()
    enforce()
    with pytest.raises(StoreAccessError) as err:
        _put(store, tmp_path)
    text = _one_line(err.value)
    assert f"access denied to bucket '{s3_bucket}'" in text and "aws/iam-policy-runtime.json" in text


def test_runtime_policy_suffices_when_enforced(enforcing_moto, s3_endpoint, s3_bucket, data_dir, pg_conninfo18):
    """The shipped runtime policy, enforced by moto: a partition archived and migrated."""
    import uuid

    import psycopg

    from ov_assets.objects import bucket_setup as s3_setup
    from ov_assets.objects.archive import archive_objects, plan_objects
    from ov_assets.objects.layout_migration import migrate_layout
    from ov_assets_tests.archive_support import prepare

    frame = prepare(data_dir, pg_conninfo18, n=3, big=6 << 20)
    make_user, enforce = enforcing_moto
    key_id, secret = make_user(
        f"ov-runtime-{uuid.uuid4().hex[:8]}", s3_setup.render("runtime", s3_bucket, "oficina-virtual")
    )
    store = store_resource(
        s3_endpoint,
        s3_bucket,
        data_dir,
        key_id=key_id,
        secret=secret,
        multipart_threshold_mb=5,
        multipart_chunksize_mb=5,
    ).open()
    enforce()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        counts, outcomes = archive_objects(conn, store, objects, 4)
        assert counts.s3_uploaded == len(objects), [o.error for o in outcomes if o.error]
        migrated = migrate_layout(conn, store, "central", "oficina-virtual", 4)
    assert migrated.moved == len(objects) and not migrated.errors


# -- wrong region: botocore parsing S3's real answers ------------------------------------------


class _WrongRegion(BaseHTTPRequestHandler):
    """Answers like S3 does when a bucket in eu-west-1 is addressed as us-east-1."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>'
            b"<Message>The authorization header is malformed; the region 'us-east-1' is wrong; "
            b"expecting 'eu-west-1'</Message><Region>eu-west-1</Region><RequestId>R</RequestId>"
            b"<HostId>H</HostId></Error>"
        )
        self.send_response(400)
        self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_PUT = do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def wrong_region_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongRegion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_wrong_region_from_botocores_real_exception(wrong_region_endpoint, tmp_path):
    store = store_resource(wrong_region_endpoint, "ov-archive", tmp_path, max_attempts=1).open()
    assert isinstance(store, S3ObjectStore)
    with pytest.raises(StoreAccessError) as err:
        _put(store, tmp_path)
    text = _one_line(err.value)
    assert "not in region us-east-1" in text and "eu-west-1" in text and "AWS_REGION" in text
    assert isinstance(err.value.__cause__, ClientError)  # botocore's own exception, translated
    with pytest.raises(StoreAccessError, match="eu-west-1"):
        store.head("oficina-virtual/a.json")  # HEAD: no body, the region comes from the header


def test_permanent_redirect_shape_and_unknown_errors_pass_through():
    redirect = ClientError(
        {
            "Error": {
                "Code": "PermanentRedirect",
                "Endpoint": "b.s3.eu-west-1.amazonaws.com",
                "Message": "The bucket you are attempting to access must be addressed using the specified endpoint.",
            },
            "ResponseMetadata": {"HTTPStatusCode": 301, "HTTPHeaders": {"x-amz-bucket-region": "eu-west-1"}},
        },
        "PutObject",
    )
    out = translate_aws_error(redirect, "b", "us-east-1")
    assert isinstance(out, StoreAccessError) and "The bucket is in eu-west-1" in str(out)
    slow = ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },
        "PutObject",
    )
    assert translate_aws_error(slow, "b", "us-east-1") is slow  # retried by botocore, not an operator's problem
