"""The object store as a Dagster resource: S3 when a bucket is configured, else the local
store; the stores themselves live in ``ov_assets.objects.stores``.

How to reach S3 is dagster-aws's ``S3Resource`` (credentials, region, endpoint, profile): the
settings every Dagster user knows, configured from the environment; the client itself is built
with our own botocore ``Config`` (pool size, retries, checksums). boto3 is imported when a store
is opened, not when the definitions load.

Inside a Dagster run the opened store is kept for the run: one client (with its connection
pool) and one bucket confirmation for every step and check, not one per ``open()``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from ov_assets.errors import ConfigurationError
from ov_assets.fs import private_dir
from ov_assets.objects.stores import LocalObjectStore, ObjectStore

if TYPE_CHECKING:  # botocore loads with the first S3 store
    from botocore.config import Config


class ObjectStoreResource(dg.ConfigurableResource):
    """Where PQR files are archived: ``bucket`` set means S3, empty means the local store."""

    bucket: str = Field(default="", description="AWS_S3_BUCKET_NAME; empty: local store under data_dir")
    base_path: str = Field(default="oficina-virtual", description="S3_BASE_PATH")
    layout: str = Field(default="default", description="OV_S3_LAYOUT: default | central")
    kms_key_id: str = Field(default="", description="OV_S3_KMS_KEY_ID; empty: AES256")
    data_dir: str = Field(default="./data", description="OV_DATA_DIR")
    environment: str = Field(default="development", description="OV_ENV")
    s3: S3Resource = Field(default_factory=S3Resource, description="credentials, AWS_REGION, AWS_ENDPOINT_URL")
    max_workers: int = Field(default=16, description="parallel uploads; the HTTP pool is sized to match")
    max_attempts: int = Field(
        default=8,
        description="attempts per request (throttling, 5xx, network): exponential backoff with jitter between them",
    )
    retry_mode: str = Field(default="adaptive", description="botocore retry mode: adaptive | standard")
    multipart_threshold_mb: int = 16
    multipart_chunksize_mb: int = 8
    connect_timeout_s: float = 10
    read_timeout_s: float = 120
    # The store opened in this run (kept only while the resource is set up for a run).
    _run_store: ObjectStore | None = PrivateAttr(default=None)
    _in_run: bool = PrivateAttr(default=False)
    _open_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Once per run: the steps and checks of the run share one opened store."""
        self._in_run = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._in_run, self._run_store = False, None

    def client_config(self) -> Config:
        """botocore configuration: a connection per worker, retries with backoff and jitter."""
        from botocore.config import Config

        return Config(
            max_pool_connections=self.max_workers + 2,
            retries={"mode": self.retry_mode, "max_attempts": max(1, self.max_attempts)},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            # We send our own SHA-256 (never a CRC nobody verifies); responses are validated
            # where S3 returns a checksum.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # SigV4 for presigned URLs too (`ov-assets docs`): botocore may presign with SigV2,
            # which S3 refuses for SSE-KMS objects and in newer regions.
            signature_version="s3v4",
        )

    def open(self) -> ObjectStore:
        """One store (one boto3 client with a pool sized for our workers) per run: inside a run
        every call returns the store its first call opened."""
        if not self._in_run:
            return self._open()
        with self._open_lock:
            if self._run_store is None:
                self._run_store = self._open()
            return self._run_store

    def _open(self) -> ObjectStore:
        if self.layout not in ("default", "central"):
            raise ConfigurationError(f"OV_S3_LAYOUT must be 'default' or 'central', not {self.layout!r}")
        if not self.bucket:
            if self.environment == "production":
                raise ConfigurationError(
                    "OV_ENV=production requires AWS_S3_BUCKET_NAME: refusing to fall back to the local object store"
                )
            root = Path(self.data_dir).resolve() / "object_store"
            private_dir(root)
            return LocalObjectStore(root)
        import boto3

        from ov_assets.objects.s3_store import S3ObjectStore

        s3 = self.s3
        session = boto3.session.Session(
            aws_access_key_id=s3.aws_access_key_id or None,
            aws_secret_access_key=s3.aws_secret_access_key or None,
            aws_session_token=s3.aws_session_token or None,
            profile_name=s3.profile_name or None,
            region_name=s3.region_name or None,
        )
        client = session.client(
            "s3",
            endpoint_url=s3.endpoint_url or None,
            config=self.client_config(),
            use_ssl=s3.use_ssl,
            verify=s3.verify,
        )
        return S3ObjectStore(
            client,
            self.bucket,
            self.kms_key_id,
            session.region_name,
            self.multipart_threshold_mb << 20,
            self.multipart_chunksize_mb << 20,
        )
