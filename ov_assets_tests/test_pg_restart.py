"""The database restarts under a load (issue 4: "survive ... a restarted database"). A dedicated
cluster (never the session servers) is restarted with ``pg_ctl restart -m fast`` while a loader
process, going through PostgresResource.run as the ``pqr_table`` asset does, is held at a barrier
(half-way through COPY / everything written but not committed). With retries left the load
completes on a new connection; without, it fails with an operator message that says the
connection was lost and to rerun, and the rerun completes. Either way the end state equals an
uninterrupted run. The SSL variant is RDS with verify-full, where libpq words a lost connection
as "SSL connection has been closed unexpectedly"."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets.warehouse import loading
from ov_assets_tests.checkpoint_barrier import hold_spec, subprocess_environment
from ov_assets_tests.loadkit import (
    days_back,
    landing_frames,
    partition_keys,
    snapshot,
    wait_for_file,
    wait_until,
    without_audit,
)
from ov_assets_tests.pgcluster import TempCluster, embedded_bindir, require_ssl_bindir, temp_cluster

# A loader as the pqr_table asset runs it: PostgresResource.run (connect, migrate, retry on
# transient failures) around one load_partitions transaction. Exit 3 with the operator message.
_LOADER = r"""
import datetime as dt, json, logging, sys
import polars as pl
from ov_assets.warehouse import loading
from ov_assets.errors import OperatorError
from ov_assets.defs.resources.postgres import PostgresResource
from ov_assets_tests.checkpoint_barrier import hold_from_environment
hold_from_environment()
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
args = json.loads(sys.argv[1])
frame = pl.read_parquet(args["frame"])
keys = [(e, dt.date.fromisoformat(d)) for e, d in args["keys"]]
pg = PostgresResource(**args["resource"])
try:
    counts = pg.run(lambda conn: loading.load_partitions(conn, keys, frame, args["run_id"]))
except OperatorError as exc:
    print("OPERATOR ERROR: " + str(exc), file=sys.stderr, flush=True)
    sys.exit(3)
print(json.dumps({f"{e}/{d}": [c.db_inserted, c.db_updated, c.db_duplicates] for (e, d), c in counts.items()}))
"""


@pytest.fixture(scope="module")
def plain_cluster() -> Iterator[TempCluster]:
    """The embedded PostgreSQL 18 binaries, in a cluster of its own that the tests restart."""
    with temp_cluster(embedded_bindir()) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ssl_cluster() -> Iterator[TempCluster]:
    """An OpenSSL build (Debian's) with a certificate for ``localhost``, SSL-only TCP."""
    with temp_cluster(require_ssl_bindir(), ssl=True) as cluster:
        yield cluster


def _cluster(request: pytest.FixtureRequest, ssl: bool) -> TempCluster:
    return request.getfixturevalue("ssl_cluster" if ssl else "plain_cluster")


def _settings(cluster: TempCluster, dbname: str, retries: int) -> dict[str, Any]:
    """POSTGRES_* as an operator sets them: verify-full against the CA when the server has SSL."""
    out: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": cluster.port,
        "dbname": dbname,
        "user": "postgres",
        "password": cluster.conninfo()["password"],
        "retries": retries,
        "connect_timeout_s": 5,
    }
    if cluster.certs is not None:
        out.update(host="localhost", sslmode="verify-full", sslrootcert=str(cluster.certs.ca))
    return out


class Load:
    """A load of every partition of ``frame`` into a fresh database of ``cluster``."""

    def __init__(self, cluster: TempCluster, frame: pl.DataFrame, tmp: Path) -> None:
        self.cluster, self.frame = cluster, frame
        self.dbname = cluster.create_database()
        self.keys = partition_keys(frame)
        self.frame_path = tmp / "frame.parquet"
        frame.write_parquet(self.frame_path)
        self.stderr = tmp / "loader.stderr"
        self.barriers = tmp / "barriers"
        self.barriers.mkdir(exist_ok=True)

    def start(self, retries: int, barrier: str | None = None, run_id: str = "interrupted") -> subprocess.Popen:
        env = subprocess_environment()
        if barrier:
            env.update(hold_spec(barrier, self.barriers))
        args = {
            "frame": str(self.frame_path),
            "run_id": run_id,
            "keys": [(e, d.isoformat()) for e, d in self.keys],
            "resource": _settings(self.cluster, self.dbname, retries),
        }
        with open(self.stderr, "w") as err:
            return subprocess.Popen(
                [sys.executable, "-c", _LOADER, json.dumps(args)],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def rerun(self, run_id: str = "rerun", dbname: str | None = None) -> dict[tuple[str, dt.date], loading.LoadCounts]:
        """The load in this process, uninterrupted (into ``dbname`` if given)."""
        pg = PostgresResource(**_settings(self.cluster, dbname or self.dbname, retries=0))
        return pg.run(lambda conn: loading.load_partitions(conn, self.keys, self.frame, run_id))

    def snapshot(self, dbname: str | None = None) -> dict[str, list[tuple]]:
        return snapshot(self.cluster.conninfo(dbname or self.dbname))

    def reference(self) -> dict[str, list[tuple]]:
        """The same load, uninterrupted, into another fresh database of the same server."""
        other = self.cluster.create_database()
        self.rerun(run_id="reference", dbname=other)
        return self.snapshot(other)


@pytest.fixture
def frame(data_dir: Path) -> pl.DataFrame:
    return landing_frames(data_dir, days_back(1), n=10)  # one day, both empresas: two partitions


def _assert_like_uninterrupted(load: Load) -> None:
    end, reference = load.snapshot(), load.reference()
    assert without_audit(end) == without_audit(reference)
    assert end["audit"] == reference["audit"]  # one audit row per partition: the failed attempt left none
    assert end["ov_afinia_history"] == end["ov_aire_history"] == []
    winners = load.frame.filter(pl.col("is_winner")).height
    assert len(end["ov_afinia"]) + len(end["ov_aire"]) == winners > 0


def _restart_at(load: Load, proc: subprocess.Popen, point: str) -> None:
    """Hold the loader at ``point``, restart the server (its backend is terminated and the open
    transaction rolled back), then let the loader go on with a dead connection."""
    wait_for_file(load.barriers / f"{point}.reached", proc)
    load.cluster.restart()
    (load.barriers / f"{point}.release").touch()


@pytest.mark.parametrize(
    ("point", "ssl"),
    [("copy", False), ("commit", False), ("copy", True), ("commit", True)],
    ids=["copy", "commit", "copy-ssl", "commit-ssl"],
)
def test_restart_during_load_is_retried(request, frame, tmp_path, point: str, ssl: bool) -> None:
    """A restart while the load's transaction is open: the retry on a new connection redoes the
    whole transaction and the result is exactly an uninterrupted run's."""
    load = Load(_cluster(request, ssl), frame, tmp_path)
    proc = load.start(retries=4, barrier=point)
    try:
        _restart_at(load, proc, point)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, load.log()
    assert "transient failure" in load.log()  # it was the retry that completed it
    counts = json.loads(out)
    winners = frame.filter(pl.col("is_winner"))
    assert sum(inserted for inserted, _, _ in counts.values()) == winners.height
    _assert_like_uninterrupted(load)


@pytest.mark.parametrize("ssl", [False, True], ids=["plain", "ssl"])
def test_restart_without_retries_says_rerun_and_rerun_completes(request, frame, tmp_path, ssl: bool) -> None:
    """No retries left (retries=0): the run fails, saying the connection was lost and to rerun
    (not an SSL configuration problem in the SSL case); nothing of it is in the database; the
    rerun ends as an uninterrupted run."""
    load = Load(_cluster(request, ssl), frame, tmp_path)
    proc = load.start(retries=0, barrier="commit")
    try:
        _restart_at(load, proc, "commit")
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = load.log()
    assert proc.returncode == 3, log
    message = log.split("OPERATOR ERROR: ", 1)[1]
    assert "connection to the server was lost" in message and "rerun" in message
    assert "POSTGRES_SSLMODE" not in message and "Traceback" not in log
    empty = load.snapshot()
    assert all(rows == [] for rows in empty.values()), empty  # no half-written partition

    load.rerun()
    _assert_like_uninterrupted(load)


def test_server_down_when_the_load_starts_then_back(plain_cluster: TempCluster, frame, tmp_path) -> None:
    """The server is down (restart, failover) when the run connects: the connection is retried
    with backoff and the load runs once the server is back."""
    load = Load(plain_cluster, frame, tmp_path)
    plain_cluster.stop()
    try:
        proc = load.start(retries=8)
        wait_until(
            lambda: "transient failure" in load.log() or proc.poll() is not None,
            timeout=30,
            what="the loader retrying its connection",
        )
    finally:
        plain_cluster.start()
    _out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, load.log()
    assert "Connection refused" in load.log()  # what the retries met while the server was down
    _assert_like_uninterrupted(load)


def test_ssl_connection_lost_mid_copy_is_retried(ssl_cluster: TempCluster, caplog: pytest.LogCaptureFixture) -> None:
    """Over SSL, a restart while a large COPY is streaming reads "SSL connection has been closed
    unexpectedly" (no SQLSTATE): a lost connection to retry, not an SSL configuration error
    (an RDS failover during a big partition's COPY)."""
    pg = PostgresResource(**_settings(ssl_cluster, ssl_cluster.create_database(), retries=3))
    line = b"x" * 999 + b"\n"
    attempts: list[int] = []

    def copy_a_lot(conn: Any) -> int:
        attempts.append(len(attempts) + 1)
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS big (a text)")
            with conn.cursor().copy("COPY big FROM STDIN") as copy:
                copy.write(line * 1000)
                if len(attempts) == 1:
                    ssl_cluster.restart()
                for _ in range(40):  # 40 MB more: far beyond what the socket buffers hold
                    copy.write(line * 1000)
        return conn.execute("SELECT count(*) FROM big").fetchone()[0]

    with caplog.at_level(logging.WARNING, logger="ov_assets.defs.resources.postgres"):
        assert pg.run(copy_a_lot, migrate=False) == 41_000
    assert attempts == [1, 2]
    retried = [r.getMessage() for r in caplog.records if "transient failure" in r.getMessage()]
    assert len(retried) == 1 and "SSL" in retried[0], caplog.text
