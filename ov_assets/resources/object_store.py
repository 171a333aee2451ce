"""Object storage: an S3 bucket (through dagster-aws's ``S3Resource`` settings) or, when no
bucket is configured, a local folder laid out exactly like the bucket.

Both stores answer the same small interface (``head``, ``put``, ``sha256_of``, ``copy``,
``delete``), so the upload code has one path; only configuration differs between them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import ClientError
from boto3.s3.transfer import TransferConfig
from dagster_aws.s3 import S3Resource
from pydantic import Field

from ov_assets.errors import ConfigurationError, translate_aws_error

LOCAL_BUCKET = "local"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredObject:
    """What the store says about an object: its size and SHA-256 (hex)."""

    size: int
    sha256: str | None


class ObjectStore(Protocol):
    bucket: str

    def url(self, key: str) -> str: ...
    def head(self, key: str) -> StoredObject | None: ...
    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str]) -> None: ...
    def sha256_of(self, key: str) -> str | None: ...
    def copy(self, src: str, dst: str) -> None: ...
    def delete(self, key: str) -> None: ...


class LocalObjectStore:
    """``$OV_DATA_DIR/object_store/{key}``: honest about being local (bucket ``local``)."""

    bucket = LOCAL_BUCKET

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return StoredObject(path.stat().st_size, sha256_file(path))

    def sha256_of(self, key: str) -> str | None:
        path = self._path(key)
        return sha256_file(path) if path.is_file() else None

    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(path, tmp)
        if sha256_file(tmp) != sha256:
            tmp.unlink()
            raise OSError(f"checksum mismatch writing {key}: the landing file changed while copying")
        os.replace(tmp, target)

    def copy(self, src: str, dst: str) -> None:
        target = self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(src), target)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3ObjectStore:
    """A bucket, with SHA-256 checksums, server-side encryption and metadata on every put."""

    def __init__(self, client: object, bucket: str, kms_key_id: str, region: str | None,
                 multipart_threshold: int) -> None:
        self.client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.region = region
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=max(8 << 20, multipart_threshold // 2),
                                       use_threads=False)

    def _fail(self, exc: Exception) -> Exception:
        return translate_aws_error(exc, self.bucket, self.region)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def head(self, key: str) -> StoredObject | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc) from exc
        except Exception as exc:
            raise self._fail(exc) from exc
        # S3's own full-object checksum is computed from the bytes; trust it over metadata.
        checksum = resp.get("ChecksumSHA256")
        if checksum and "-" not in checksum and resp.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            sha = base64.b64decode(checksum).hex()
        else:
            sha = resp.get("Metadata", {}).get("sha256")
        return StoredObject(int(resp["ContentLength"]), sha)

    def sha256_of(self, key: str) -> str | None:
        """Recompute the SHA-256 from the object's bytes (what verification trusts)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc) from exc
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def _extra_args(self, sha256: str, content_type: str, metadata: dict[str, str]) -> dict[str, object]:
        extra: dict[str, object] = {"ContentType": content_type, "Metadata": {**metadata, "sha256": sha256},
                                    "ChecksumAlgorithm": "SHA256"}
        if self.kms_key_id:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key_id)
        else:
            extra["ServerSideEncryption"] = "AES256"
        return extra

    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str]) -> None:
        extra = self._extra_args(sha256, content_type, metadata)
        try:
            if path.stat().st_size < self.transfer.multipart_threshold:
                with path.open("rb") as fh:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=fh,
                                           ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                                           **{k: v for k, v in extra.items() if k != "ChecksumAlgorithm"})
            else:
                self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
        except Exception as exc:
            raise self._fail(exc) from exc

    def copy(self, src: str, dst: str) -> None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=src)
            extra = self._extra_args(head.get("Metadata", {}).get("sha256", ""),
                                     head.get("ContentType", "application/octet-stream"),
                                     {k: v for k, v in head.get("Metadata", {}).items() if k != "sha256"})
            extra["MetadataDirective"] = "REPLACE"
            self.client.copy({"Bucket": self.bucket, "Key": src}, self.bucket, dst, ExtraArgs=extra,
                             Config=self.transfer)
        except Exception as exc:
            raise self._fail(exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._fail(exc) from exc


class ObjectStoreResource(dg.ConfigurableResource):
    """Where PQR files are archived: ``bucket`` set means S3, empty means the local store."""

    bucket: str = Field(default="", description="AWS_S3_BUCKET_NAME; empty: local store under data_dir")
    base_path: str = Field(default="oficina-virtual", description="S3_BASE_PATH")
    layout: str = Field(default="default", description="OV_S3_LAYOUT: default | central")
    kms_key_id: str = Field(default="", description="OV_S3_KMS_KEY_ID; empty: AES256")
    data_dir: str = Field(default="./data", description="OV_DATA_DIR")
    environment: str = Field(default="development", description="OV_ENV")
    s3: S3Resource = Field(default_factory=S3Resource, description="credentials, AWS_REGION, AWS_ENDPOINT_URL")
    max_workers: int = 8
    multipart_threshold_mb: int = 16

    def open(self) -> ObjectStore:
        """One store (one boto3 client with a pool sized for our workers) per run."""
        if self.layout not in ("default", "central"):
            raise ConfigurationError(f"OV_S3_LAYOUT must be 'default' or 'central', not {self.layout!r}")
        if not self.bucket:
            if self.environment == "production":
                raise ConfigurationError(
                    "OV_ENV=production requires AWS_S3_BUCKET_NAME: refusing to fall back to the local object store"
                )
            root = Path(self.data_dir).resolve() / "object_store"
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            return LocalObjectStore(root)
        s3 = self.s3
        session = boto3.session.Session(
            aws_access_key_id=s3.aws_access_key_id or None,
            aws_secret_access_key=s3.aws_secret_access_key or None,
            aws_session_token=s3.aws_session_token or None,
            profile_name=s3.profile_name or None,
            region_name=s3.region_name or None,
        )
        config = Config(
            max_pool_connections=self.max_workers + 4,
            retries={"mode": "adaptive", "max_attempts": max(s3.max_attempts, 5)},
            connect_timeout=10,
            read_timeout=120,
        )
        client = session.client("s3", endpoint_url=s3.endpoint_url or None, config=config,
                                use_ssl=s3.use_ssl, verify=s3.verify)
        return S3ObjectStore(client, self.bucket, self.kms_key_id, s3.region_name,
                             self.multipart_threshold_mb << 20)
