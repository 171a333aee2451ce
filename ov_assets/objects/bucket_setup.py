"""The bucket configuration kept in ``aws/`` (package data): apply it (versioning, the
lifecycle rule, default encryption, public access block) and render the IAM policies with the
real bucket, base path, region and key.

``ov-assets s3-setup`` (``ov_assets.cli``) runs it with *admin* credentials
(``aws/iam-policy-admin.json``), never with the pipeline's: the runtime policy
(``aws/iam-policy-runtime.json``) grants object access only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AWS_DIR = Path(__file__).resolve().parent / "aws"  # package data
FILES = {
    "runtime": "iam-policy-runtime.json",
    "admin": "iam-policy-admin.json",
    "versioning": "bucket-versioning.json",
    "lifecycle": "bucket-lifecycle.json",
}


def render(
    name: str,
    bucket: str,
    base_path: str = "oficina-virtual",
    region: str = "",
    account_id: str = "",
    kms_key_id: str = "",
) -> dict[str, Any]:
    """One file of ``aws/`` with its placeholders filled in (unknown ones are left as they are)."""
    text = (AWS_DIR / FILES[name]).read_text()
    values = {
        "BUCKET_NAME": bucket,
        "S3_BASE_PATH": base_path.strip("/"),
        "AWS_REGION": region,
        "ACCOUNT_ID": account_id,
        "KMS_KEY_ID": kms_key_id,
    }
    for placeholder, value in values.items():
        if value:
            text = text.replace(placeholder, value)
    doc = json.loads(text)
    if name == "runtime" and not kms_key_id:
        # Without SSE-KMS the KMS statement has nothing to grant.
        doc["Statement"] = [s for s in doc["Statement"] if not any(a.startswith("kms:") for a in s["Action"])]
    return doc


def apply(
    client: Any, bucket: str, base_path: str = "oficina-virtual", kms_key_id: str = "", dry_run: bool = False
) -> list[str]:
    """Apply versioning, lifecycle, default encryption and public access block; returns what
    was (or, with ``dry_run``, would be) done."""
    steps: list[tuple[str, Any]] = [
        (
            "versioning: Enabled",
            lambda: client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration=render("versioning", bucket, base_path)
            ),
        ),
        (
            f"lifecycle: STANDARD_IA after 30 days, GLACIER after 90 under {base_path.strip('/')}/; "
            "incomplete multipart uploads aborted after 7 days",
            lambda: client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration=render("lifecycle", bucket, base_path)
            ),
        ),
        (
            f"default encryption: {'aws:kms ' + kms_key_id if kms_key_id else 'AES256'}",
            lambda: client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": (
                                {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}
                                if kms_key_id
                                else {"SSEAlgorithm": "AES256"}
                            ),
                            "BucketKeyEnabled": bool(kms_key_id),
                        }
                    ]
                },
            ),
        ),
        (
            "public access: blocked",
            lambda: client.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            ),
        ),
    ]
    done = []
    for label, call in steps:
        if not dry_run:
            call()
        done.append(label)
    return done
