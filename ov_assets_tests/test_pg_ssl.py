"""POSTGRES_SSLMODE=verify-full against a real SSL server (issue 4, CONTRACT §8): a CA and a
server certificate for ``localhost`` are made at test time, a throwaway cluster serves them
with ``ssl=on`` and accepts TCP connections over SSL only. The project's PostgresResource
connects encrypted and loads a partition; a wrong CA or a host name the certificate does not
hold fail at once (no retries) with a message that says which POSTGRES_* setting to fix."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.errors import OperatorError
from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import days_back, landing_frames, partition_keys, resource, snapshot
from ov_assets_tests.pgcluster import TempCluster, require_ssl_bindir, temp_cluster


@pytest.fixture(scope="module")
def ssl_cluster() -> Iterator[TempCluster]:
    """A dedicated SSL cluster (the embedded PostgreSQL 18 is built without OpenSSL, so Debian's
    build is used; .ci/run installs it). Missing on a developer machine without it: skipped,
    unless OV_TEST_PG15_DSN says Debian PostgreSQL is meant to be there."""
    with temp_cluster(require_ssl_bindir(), ssl=True) as cluster:
        yield cluster


@pytest.fixture
def ssl_db(ssl_cluster: TempCluster) -> str:
    return ssl_cluster.create_database()


def _resource(
    cluster: TempCluster,
    dbname: str,
    host: str = "localhost",
    ca: Path | None = None,
    sslmode: str = "verify-full",
    **kw: object,
) -> PostgresResource:
    """The resource exactly as POSTGRES_HOST/PORT/DB/USER/PASSWORD/SSLMODE/SSLROOTCERT build it."""
    assert cluster.certs is not None
    return resource(
        cluster.conninfo(dbname, host=host),
        sslmode=sslmode,
        sslrootcert="" if sslmode == "disable" else str(ca or cluster.certs.ca),
        **kw,
    )


def test_verify_full_connects_encrypted_and_loads(ssl_cluster: TempCluster, ssl_db: str, data_dir: Path) -> None:
    """verify-full with the CA that signed the server's certificate: the session is TLS, the
    migrations and a two-partition load run over it, and the rows are there."""
    pg = _resource(ssl_cluster, ssl_db)
    ssl, version, cipher = pg.run(
        lambda conn: conn.execute(
            "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    )
    assert ssl is True and version.startswith("TLS") and cipher

    frame = landing_frames(data_dir, days_back(1), n=10)
    keys = partition_keys(frame)
    counts = pg.run(lambda conn: loading.load_partitions(conn, keys, frame, "ssl-run"))
    winners = frame.filter(pl.col("is_winner"))
    assert sum(c.db_inserted for c in counts.values()) == winners.height > 0
    # Read back over verify-full too (the server takes no unencrypted TCP connection).
    snap = snapshot(
        {
            **ssl_cluster.conninfo(ssl_db, host="localhost"),
            "sslmode": "verify-full",
            "sslrootcert": str(ssl_cluster.certs.ca),
        }
    )
    assert len(snap["ov_afinia"]) + len(snap["ov_aire"]) == winners.height
    assert [n for *_, n in snap["audit"]] == [1] * len(keys)


def test_verify_full_with_another_ca_fails_at_once(
    ssl_cluster: TempCluster, ssl_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A CA bundle that did not sign the server's certificate (an outdated RDS bundle): a
    permanent error, not retried, naming POSTGRES_SSLROOTCERT."""
    assert ssl_cluster.certs is not None
    pg = _resource(ssl_cluster, ssl_db, ca=ssl_cluster.certs.other_ca, retries=4)
    with (
        caplog.at_level(logging.WARNING, logger="ov_assets.defs.resources.postgres"),
        pytest.raises(OperatorError) as info,
    ):
        pg.run(lambda conn: None)
    assert "transient failure" not in caplog.text  # no retry: retrying cannot help
    message = str(info.value)
    assert "certificate could not be verified against POSTGRES_SSLROOTCERT" in message
    assert "certificate verify failed" in message and "global-bundle.pem" in message


def test_verify_full_host_not_in_certificate(
    ssl_cluster: TempCluster, ssl_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The certificate names ``localhost``; POSTGRES_HOST=127.0.0.1 is the right server and CA
    but not a name the certificate holds: verify-full refuses, verify-ca (no name check)
    connects."""
    pg = _resource(ssl_cluster, ssl_db, host="127.0.0.1", retries=4)
    with (
        caplog.at_level(logging.WARNING, logger="ov_assets.defs.resources.postgres"),
        pytest.raises(OperatorError) as info,
    ):
        pg.run(lambda conn: None)
    assert "transient failure" not in caplog.text
    message = str(info.value)
    assert "SSL host name mismatch" in message and '"127.0.0.1"' in message
    assert "POSTGRES_HOST to a name the certificate holds" in message
    verify_ca = _resource(ssl_cluster, ssl_db, host="127.0.0.1", sslmode="verify-ca")
    assert verify_ca.run(
        lambda conn: conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    ) == (True,)


def test_server_requires_ssl_but_sslmode_disable(ssl_cluster: TempCluster, ssl_db: str) -> None:
    """POSTGRES_SSLMODE=disable against a server that takes SSL only (as RDS with
    rds.force_ssl): the message says to turn SSL on, not to check the password."""
    pg = _resource(ssl_cluster, ssl_db, sslmode="disable")
    with pytest.raises(OperatorError, match=r"accepts only SSL connections.*POSTGRES_SSLMODE=verify-full"):
        pg.run(lambda conn: None)
