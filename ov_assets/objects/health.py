"""``ov-assets doctor``'s bucket lines: reachable with the runtime credentials, in AWS_REGION,
configured as ``ov-assets s3-setup`` leaves it (versioning, default encryption, lifecycle) and,
when asked, writable: a probe object put, read back and deleted through the store the pipeline
uses. The configuration is read with whatever client the caller gives (the runtime policy grants
no bucket configuration; an admin profile does)."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ov_assets.core.health import Health, first_line
from ov_assets.errors import translate_aws_error
from ov_assets.objects import bucket_setup
from ov_assets.objects.s3_store import S3ObjectStore
from ov_assets.objects.stores import ObjectStore

SETUP = "run `ov-assets s3-setup --profile <admin>` (ov_assets/objects/aws/README.md)"
PROBE_BODY = b"ov-assets doctor probe: safe to delete\n"


def _code(exc: BaseException) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def _message(exc: BaseException, bucket: str, region: str | None) -> str:
    translated = translate_aws_error(exc, bucket, region)
    if translated is not exc:
        return first_line(str(translated))
    return f"{type(exc).__name__} {_code(exc)}".strip() + f": {first_line(str(exc), 200)}"


def bucket_health(
    store: ObjectStore, base_path: str, kms_key_id: str, config_client: Any | None, write: bool
) -> list[Health]:
    """One line per check of ``store``'s bucket. ``config_client`` reads the bucket's
    configuration (None: the store's own client); ``write`` adds the probe object."""
    if not isinstance(store, S3ObjectStore):
        out = [
            Health(
                "bucket",
                True,
                "AWS_S3_BUCKET_NAME unset: objects go to the local store under OV_DATA_DIR (development only)",
            )
        ]
        return out + ([_write_probe(store, base_path)] if write else [])
    try:
        listed = store.client.list_objects_v2(Bucket=store.bucket, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - said as one line; the bucket's other checks would fail alike
        return [Health("bucket", False, _message(exc, store.bucket, store.region))]
    out = [Health("bucket", True, f"s3://{store.bucket} exists and answers the runtime credentials (ListBucket)")]
    out.append(_region(store, listed))
    reader = config_client or store.client
    for check in (_versioning, _encryption, _lifecycle):
        out.append(_config_line(check, reader, store, base_path, kms_key_id))
    if write:
        out.append(_write_probe(store, base_path))
    return out


def _region(store: S3ObjectStore, listed: dict[str, Any]) -> Health:
    """The bucket's region, as S3 tells it (a listing's or HeadBucket's ``x-amz-bucket-region``);
    a listing signed for another region would have failed, so without the header the bucket
    answered in AWS_REGION."""
    headers = listed.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    actual = headers.get("x-amz-bucket-region")
    if not actual:
        try:
            head = store.client.head_bucket(Bucket=store.bucket)
            actual = (head.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}).get("x-amz-bucket-region")
        except Exception:  # noqa: BLE001 - HeadBucket only adds evidence; the listing already answered
            actual = None
    if actual and store.region and actual != store.region:
        return Health(
            "bucket region", False, f"the bucket is in {actual}, AWS_REGION is {store.region}: set AWS_REGION={actual}"
        )
    if not store.region:
        return Health(
            "bucket region", False, f"AWS_REGION unset{f' (the bucket is in {actual})' if actual else ''}: set it"
        )
    return Health("bucket region", True, f"{store.region}{'' if actual else ' (answered there)'}")


def _config_line(check: Any, client: Any, store: S3ObjectStore, base_path: str, kms_key_id: str) -> Health:
    name = f"bucket {check.__name__.strip('_')}"
    try:
        return check(client, store.bucket, base_path, kms_key_id)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if _code(exc) in ("AccessDenied", "403") or status == 403:
            return Health(
                name,
                False,
                f"these credentials may not read it ({exc.operation_name} denied; the runtime policy grants no bucket "
                "configuration): rerun with --profile <a profile holding ov_assets/objects/aws/iam-policy-admin.json>",
            )
        return Health(name, False, _message(exc, store.bucket, store.region))
    except Exception as exc:  # noqa: BLE001 - one check's failure is its own line
        return Health(name, False, _message(exc, store.bucket, store.region))


def _versioning(client: Any, bucket: str, base_path: str, kms_key_id: str) -> Health:
    status = client.get_bucket_versioning(Bucket=bucket).get("Status") or "never enabled"
    if status != "Enabled":
        return Health("bucket versioning", False, f"{status}: {SETUP}")
    return Health("bucket versioning", True, "Enabled")


def _encryption(client: Any, bucket: str, base_path: str, kms_key_id: str) -> Health:
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    algorithms = {d.get("SSEAlgorithm") for d in defaults}
    if kms_key_id:
        keys = {str(d.get("KMSMasterKeyID", "")) for d in defaults if d.get("SSEAlgorithm") == "aws:kms"}
        if not any(k == kms_key_id or k.endswith(f"/{kms_key_id}") for k in keys):
            return Health("bucket encryption", False, f"default is not SSE-KMS with OV_S3_KMS_KEY_ID: {SETUP}")
        return Health("bucket encryption", True, "default aws:kms with OV_S3_KMS_KEY_ID (puts also say so)")
    if not algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
        return Health("bucket encryption", False, f"no default encryption: {SETUP}")
    return Health(
        "bucket encryption", True, f"default {', '.join(sorted(a for a in algorithms if a))} (puts say AES256)"
    )


def _lifecycle(client: Any, bucket: str, base_path: str, kms_key_id: str) -> Health:
    """The rules of ``aws/bucket-lifecycle.json`` (with S3_BASE_PATH) present and enabled."""
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if _code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    have = {r.get("ID"): r for r in rules if r.get("Status") == "Enabled"}
    wanted = bucket_setup.render("lifecycle", bucket, base_path)["Rules"]
    missing = [
        w["ID"]
        for w in wanted
        if w["ID"] not in have or have[w["ID"]].get("Filter", {}).get("Prefix") != w["Filter"]["Prefix"]
    ]
    if missing:
        return Health("bucket lifecycle", False, f"rule(s) {', '.join(missing)} missing or different: {SETUP}")
    return Health("bucket lifecycle", True, f"{', '.join(w['ID'] for w in wanted)} enabled")


def _write_probe(store: ObjectStore, base_path: str) -> Health:
    """Put (conditional, checksummed, encrypted: the archive's own put), head, delete a probe
    key under ``{S3_BASE_PATH}/doctor/``: what the runtime policy must allow."""
    key = f"{base_path.strip('/')}/doctor/probe-{uuid.uuid4().hex}.txt"
    step, digest = "put", hashlib.sha256(PROBE_BODY).hexdigest()
    try:
        with tempfile.TemporaryDirectory(prefix="ov-doctor-") as folder:
            path = Path(folder) / "probe.txt"
            path.write_bytes(PROBE_BODY)
            store.put(key, path, digest, "text/plain", {}, only_if_absent=True)
        step = "head"
        stored = store.head(key)
        if stored is None or stored.size != len(PROBE_BODY) or stored.sha256 not in (None, digest):
            return Health(
                "bucket write", False, f"{key} was put but reads back {'missing' if stored is None else 'different'}"
            )
        step = "delete"
        store.delete(key)
    except Exception as exc:  # noqa: BLE001 - said as one line naming the step
        bucket = getattr(store, "bucket", "")
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        message = str(exc) if type(exc).__module__.startswith("ov_assets") else _message(cause, bucket, None)
        return Health("bucket write", False, f"{step} of a probe key failed: {first_line(message, 500)}")
    how = (
        "checksummed, encrypted, conditional: as the archive puts"
        if isinstance(store, S3ObjectStore)
        else "local store"
    )
    return Health("bucket write", True, f"put, head and delete of {key} ({how})")
