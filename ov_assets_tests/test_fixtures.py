"""The fixtures talk to real servers: PostgreSQL 18/15 and an S3 endpoint over HTTP."""

from __future__ import annotations

import hashlib
import os
import stat
import urllib.request

import psycopg
import pytest

from ov_assets.devkit.servers import free_port, graphql, postgres_env
from ov_assets_tests.support import sqlalchemy_url


def test_pg_conninfo_is_a_fresh_database_on_the_right_version(pg_conninfo, request):
    expected_major = {"pg18": 18, "pg15": 15}[request.node.callspec.params["pg_conninfo"]]
    assert set(pg_conninfo) == {"host", "port", "user", "password", "dbname"}
    with psycopg.connect(**pg_conninfo) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        assert int(version.split(".")[0]) == expected_major, version
        assert conn.execute("SELECT current_database()").fetchone()[0] == pg_conninfo["dbname"]
        # Fresh: no user tables yet; and we can create schemas (superuser).
        n = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]
        assert n == 0
        conn.execute("CREATE SCHEMA data_general")
        conn.execute("CREATE TABLE data_general.t (id int PRIMARY KEY, j jsonb)")
        conn.execute("INSERT INTO data_general.t VALUES (1, '[\"x\"]')")
        assert conn.execute("SELECT j FROM data_general.t").fetchone()[0] == ["x"]


def test_pg_conninfo18_databases_are_isolated_and_dropped(pg_server, pg_conninfo18):
    assert pg_server.server_version.startswith("18")
    dbname = pg_conninfo18["dbname"]
    with psycopg.connect(**pg_conninfo18) as conn:
        conn.execute("CREATE TABLE t (x int)")
    other = pg_server.create_database()
    try:
        with psycopg.connect(**pg_server.conninfo(other)) as conn:
            assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None
    finally:
        pg_server.drop_database(other)
    with pg_server.connect() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert dbname in names and other not in names


def test_helpers_build_env_and_urls(pg_conninfo18):
    env = postgres_env(pg_conninfo18)
    assert env["POSTGRES_DB"] == pg_conninfo18["dbname"]
    url = sqlalchemy_url(pg_conninfo18)
    assert url.startswith("postgresql+psycopg2://postgres@/")
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
    finally:
        engine.dispose()


def test_s3_bucket_round_trip_over_http(s3_endpoint, s3_bucket):
    import boto3

    assert s3_endpoint.startswith("http://127.0.0.1:")
    # The server answers plain HTTP on that port (it is a real server, not an in-process mock).
    with urllib.request.urlopen(f"{s3_endpoint}/{s3_bucket}?list-type=2", timeout=10) as resp:
        assert resp.status == 200
        assert s3_bucket.encode() in resp.read()

    # Credentials and region come from the session environment the fixture set.
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    body = b"%PDF-1.4 hola\n"
    digest = hashlib.sha256(body).hexdigest()
    client.put_object(
        Bucket=s3_bucket,
        Key="oficina-virtual/afinia/2025/10/08/R1/x.pdf",
        Body=body,
        ChecksumAlgorithm="SHA256",
        ServerSideEncryption="AES256",
        Metadata={"sha256": digest},
    )
    head = client.head_object(
        Bucket=s3_bucket, Key="oficina-virtual/afinia/2025/10/08/R1/x.pdf", ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["sha256"] == digest
    assert head["ServerSideEncryption"] == "AES256"
    assert "ChecksumSHA256" in head
    got = client.get_object(Bucket=s3_bucket, Key="oficina-virtual/afinia/2025/10/08/R1/x.pdf")
    assert got["Body"].read() == body


def test_each_test_gets_its_own_bucket(s3_endpoint, s3_bucket):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


def test_data_dir_is_private_and_exported(data_dir):
    assert data_dir.is_dir()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert os.environ["OV_DATA_DIR"] == str(data_dir)


def test_developer_config_is_scrubbed():
    for name in (
        "POSTGRES_HOST",
        "POSTGRES_PASSWORD",
        "AWS_S3_BUCKET_NAME",
        "AWS_ENDPOINT_URL",
        "OV_ENV",
        "OV_AFINIA_PORTAL_URL",
        "OV_AIRE_PORTAL_URL",
        "PGHOST",
        "DAGSTER_HOME",
    ):
        assert name not in os.environ, name


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_graphql_reports_http_errors():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = free_port()
    with pytest.raises(OSError):  # nothing listening
        graphql(f"http://127.0.0.1:{port}", "{ version }", timeout=2)

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RuntimeError, match=r"GraphQL HTTP 500 from .*/graphql: boom"):
            graphql(f"http://127.0.0.1:{server.server_port}", "{ version }", timeout=5)
    finally:
        server.shutdown()
