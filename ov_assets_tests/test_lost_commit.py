"""A lost COMMIT acknowledgement (issue 21): the load's COMMIT succeeds on the server, but the
connection dies before its answer reaches the client, so PostgresResource.run retries the load
on a new connection. The retry must not append a second ov_load_audit row for the same run and
partition. The connection is a real one, cut by a TCP proxy in front of the embedded server at
the moment the server answers that COMMIT."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg
import pytest

from ov_assets.warehouse import loading
from ov_assets_tests.loadkit import days_back, landing_frames, migrate, partition_keys, resource

# PostgreSQL's CommandComplete message for COMMIT: 'C', int32 length (4 + len("COMMIT\0")), tag.
COMMIT_COMPLETE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class CommitCuttingProxy:
    """TCP on 127.0.0.1 -> the server's Unix socket. Once a client has sent a statement naming
    ``ov_load_audit``, the server's answer to that connection's next COMMIT is never forwarded:
    both sides are closed instead (once)."""

    def __init__(self, socket_dir: str, port: int) -> None:
        self.target = os.path.join(socket_dir, f".s.PGSQL.{port}")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = 0
        self._armed = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.target)
            seen_audit = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, seen_audit, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, seen_audit, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, seen_audit: threading.Event, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream and b"ov_load_audit" in data:
                    seen_audit.set()
                if not upstream and self._armed and seen_audit.is_set() and COMMIT_COMPLETE in data:
                    self._armed = False
                    self.cut += 1
                    break  # the commit happened; its answer is lost with the connection
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(pg_conninfo18: dict[str, Any]) -> Iterator[CommitCuttingProxy]:
    p = CommitCuttingProxy(str(pg_conninfo18["host"]), int(pg_conninfo18["port"]))
    try:
        yield p
    finally:
        p.close()


def test_retry_after_a_lost_commit_ack_appends_no_second_audit_row(pg_conninfo18, proxy, data_dir, caplog):
    frame = landing_frames(data_dir, days_back(2), empresas=("afinia",), n=5)
    migrate(pg_conninfo18)
    keys = partition_keys(frame)
    pg = resource({**pg_conninfo18, "host": "127.0.0.1", "port": proxy.port}, sslmode="disable", retries=2)
    counts = pg.run(lambda conn: loading.load_partitions(conn, keys, frame, "run-lost-ack"))
    assert proxy.cut == 1 and "transient failure" in caplog.text  # the first attempt's answer was lost
    winners = frame.filter(pl.col("is_winner")).height
    assert sum(c.db_duplicates for c in counts.values()) == winners  # the retry found it all committed
    with psycopg.connect(**pg_conninfo18) as conn:
        audit = conn.execute(
            "SELECT empresa, partition_date, db_inserted FROM data_general.ov_load_audit "
            "WHERE run_id = 'run-lost-ack' ORDER BY 2"
        ).fetchall()
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
    # One row per partition, and it is the committed load's: everything inserted.
    assert [(e, d) for e, d, _ in audit] == keys
    assert sum(n for _, _, n in audit) == winners == rows
