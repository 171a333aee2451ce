"""Resources: configuration-only differences between environments (CONTRACT §8)."""

from __future__ import annotations

from typing import TypedDict

import dagster as dg
from dagster_aws.s3 import S3Resource

from ov_assets import settings
from ov_assets.defs.resources.frames import PartitionedFrameIOManager
from ov_assets.defs.resources.landing import LandingResource
from ov_assets.defs.resources.object_store import ObjectStoreResource
from ov_assets.defs.resources.portal import PortalResource
from ov_assets.defs.resources.postgres import PostgresResource


def secret(name: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (value hidden in the UI), else empty."""
    return dg.EnvVar(name) if settings.env_str(name) else ""


class EnvResources(TypedDict):
    """The definitions' resources by key (each one typed, for the commands that open one)."""

    landing: LandingResource
    postgres: PostgresResource
    object_store: ObjectStoreResource
    frames_io_manager: PartitionedFrameIOManager
    portal: PortalResource


def resources_from_env(data_dir: str | None = None, replica_per_day: int | None = None) -> EnvResources:
    """Every resource of the definitions, configured from the environment; ``data_dir`` and
    ``replica_per_day``, when given (the demo), take the place of OV_DATA_DIR and OV_REPLICA_PER_DAY."""
    data_dir = data_dir or settings.private_data_dir()
    env = settings.environment()
    return {
        "landing": LandingResource(data_dir=data_dir),
        "postgres": PostgresResource(
            host=settings.env_str("POSTGRES_HOST"),
            port=settings.env_int("POSTGRES_PORT", 5432),
            dbname=settings.env_str("POSTGRES_DB", "ov_assets"),
            user=settings.env_str("POSTGRES_USER"),
            password=secret("POSTGRES_PASSWORD"),
            sslmode=settings.env_str("POSTGRES_SSLMODE"),
            sslrootcert=settings.env_str("POSTGRES_SSLROOTCERT"),
            allow_insecure=settings.env_flag("OV_ALLOW_INSECURE_DB"),
            data_dir=data_dir,
            environment=env,
        ),
        "object_store": ObjectStoreResource(
            bucket=settings.env_str("AWS_S3_BUCKET_NAME"),
            base_path=settings.env_str("S3_BASE_PATH", "oficina-virtual"),
            layout=settings.env_str("OV_S3_LAYOUT", "default"),
            kms_key_id=settings.env_str("OV_S3_KMS_KEY_ID"),
            data_dir=data_dir,
            environment=env,
            s3=S3Resource(
                region_name=settings.env_str("AWS_REGION") or None,
                endpoint_url=settings.env_str("AWS_ENDPOINT_URL") or None,
                aws_access_key_id=secret("AWS_ACCESS_KEY_ID") or None,
                aws_secret_access_key=secret("AWS_SECRET_ACCESS_KEY") or None,
            ),
        ),
        "frames_io_manager": PartitionedFrameIOManager(data_dir=data_dir),
        "portal": PortalResource(
            afinia_url=settings.env_str("OV_AFINIA_PORTAL_URL"),
            afinia_user=settings.env_str("OV_AFINIA_USER"),
            afinia_password=secret("OV_AFINIA_PASSWORD"),
            aire_url=settings.env_str("OV_AIRE_PORTAL_URL"),
            aire_user=settings.env_str("OV_AIRE_USER"),
            aire_password=secret("OV_AIRE_PASSWORD"),
            browser_path=settings.browser_path(),
            concurrency=settings.env_int("OV_SCRAPER_CONCURRENCY", 4),
            max_per_min=float(settings.env_str("OV_SCRAPER_MAX_PER_MIN", "120")),
            replica_per_day=settings.env_int("OV_REPLICA_PER_DAY", 20) if replica_per_day is None else replica_per_day,
            data_dir=data_dir,
            environment=env,
        ),
    }


__all__ = [
    "EnvResources",
    "LandingResource",
    "ObjectStoreResource",
    "PartitionedFrameIOManager",
    "PortalResource",
    "PostgresResource",
    "dg",
    "resources_from_env",
]
