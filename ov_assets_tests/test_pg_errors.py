"""Operator messages for PostgreSQL failures and retries on transient ones, with real servers."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ov_assets.core import checkpoints
from ov_assets.devkit.servers import free_port
from ov_assets.errors import ConfigurationError, OperatorError, WithheldDataError
from ov_assets.warehouse import loading
from ov_assets_tests.checkpoint_barrier import hold_at
from ov_assets_tests.loadkit import (
    days_back,
    landing_frames,
    migrate,
    partitions_of,
    resource,
    wait_for_file,
    wait_until,
)


def test_authentication_failure(pg15_server):
    ci = pg15_server.conninfo("postgres")
    pg = resource({**ci, "password": "wrong-" + str(ci.get("password"))}, retries=3)
    with pytest.raises(OperatorError, match=r"authentication failed.*POSTGRES_USER and POSTGRES_PASSWORD") as e:
        pg.run(lambda conn: None, migrate=False)
    assert str(ci.get("password")) not in str(e.value)


def test_unknown_database(pg_conninfo):
    pg = resource({**pg_conninfo, "dbname": "ov_no_such_db"}, retries=3)
    with pytest.raises(OperatorError, match="database in POSTGRES_DB does not exist"):
        pg.run(lambda conn: None)


def test_unreachable_host():
    pg = resource(
        {"host": "127.0.0.1", "port": free_port(), "dbname": "x", "user": "x"}, retries=1, connect_timeout_s=2
    )
    with pytest.raises(OperatorError, match=r"cannot connect. Check POSTGRES_HOST and POSTGRES_PORT"):
        pg.run(lambda conn: None)


def test_missing_relation_says_run_the_migrations(pg_conninfo, data_dir):
    frame = landing_frames(data_dir, days_back(1), empresas=("aire",), n=3)
    ((day, empresa),) = partitions_of(frame)
    pg = resource(pg_conninfo, retries=0)
    with pytest.raises(OperatorError, match=r"Run the migrations: `ov-assets migrate`"):
        pg.run(lambda conn: loading.load_partition(conn, empresa, day, frame, "r"), migrate=False)


def test_ssl_settings(pg_conninfo, tmp_path):
    with pytest.raises(ConfigurationError, match=r"POSTGRES_SSLROOTCERT=.*does not exist"):
        resource(pg_conninfo, sslmode="verify-full", sslrootcert=str(tmp_path / "missing.pem")).conninfo()
    with pytest.raises(ConfigurationError, match="POSTGRES_SSLMODE='bogus'"):
        resource(pg_conninfo, sslmode="bogus").conninfo()
    # verify-full without a CA file trusts the system CAs (CONTRACT §8)
    assert resource(pg_conninfo, sslmode="verify-full").conninfo()["sslrootcert"] == "system"
    if str(pg_conninfo["host"]).startswith("/"):
        return  # Unix socket: libpq never uses SSL there
    # The test server speaks no SSL: verify-full fails at once with the SSL message, no retries.
    pg = resource(pg_conninfo, sslmode="verify-full", retries=3)
    with pytest.raises(OperatorError, match=r"SSL failed.*POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT"):
        pg.run(lambda conn: None)


def test_load_survives_a_terminated_backend(pg_conninfo, data_dir, tmp_path, request):
    """The backend is terminated (as in a failover) while the load waits before COMMIT; the
    retry on a new connection completes it, and exactly one audit row is written."""
    frame = landing_frames(data_dir, days_back(1), empresas=("afinia",), n=8)
    migrate(pg_conninfo)
    ((day, empresa),) = partitions_of(frame)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    listener = hold_at("commit", barrier)  # the load thread stops before COMMIT
    request.addfinalizer(lambda: checkpoints.remove_listener(listener))
    pg = resource(pg_conninfo, retries=3)
    result: dict[str, object] = {}

    def load() -> None:
        try:
            result["counts"] = pg.run(lambda conn: loading.load_partition(conn, empresa, day, frame, "failover"))
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=load)
    t.start()
    wait_for_file(barrier / "commit.reached")
    with psycopg.connect(**pg_conninfo, autocommit=True) as admin:
        (pid,) = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'ov-assets' "
            "AND state = 'idle in transaction'"
        ).fetchone()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,),
            what="backend gone",
        )
    (barrier / "commit.release").touch()
    t.join(timeout=120)
    assert "error" not in result, result.get("error")
    counts = result["counts"]
    assert counts.db_inserted == frame.filter(frame["is_winner"]).height
    with psycopg.connect(**pg_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM data_general.ov_load_audit").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone() == (counts.db_inserted,)


def test_row_values_in_a_database_error_are_withheld(pg_conninfo18) -> None:
    """PostgreSQL quotes the failing row in DETAIL; that must never reach a run's event log."""
    postgres = resource(pg_conninfo18)
    with pytest.raises(WithheldDataError) as info, postgres.connect() as conn:
        conn.execute("CREATE TEMP TABLE t (a text NOT NULL, b text)")
        conn.execute("INSERT INTO t VALUES (NULL, %s)", ("María José Pérez Ñáñez",))
    message = str(info.value)
    assert "23502" in message and "not-null" in message
    assert "María" not in message and info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value.__context__, psycopg.errors.NotNullViolation)  # kept in-process only

    # A data error quotes the value in its primary message.
    with pytest.raises(WithheldDataError) as info, postgres.connect() as conn:
        conn.execute("SELECT %s::integer", ("María José Pérez Ñáñez",))
    assert "22P02" in str(info.value) and "InvalidTextRepresentation" in str(info.value)
    assert "María" not in str(info.value)
    assert "María" in str(info.value.__context__)  # (what was withheld)

    # Any error during a COPY carries the line it was at in its CONTEXT: here a trigger's.
    with pytest.raises(WithheldDataError) as info, postgres.connect() as conn:
        conn.execute("CREATE TEMP TABLE c (a text)")
        conn.execute(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON c FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()")
        with conn.cursor().copy("COPY c (a) FROM STDIN") as copy:
            copy.write_row(("María José Pérez Ñáñez",))
    assert "refused by a trigger" in str(info.value) and "P0001" in str(info.value)
    assert "María" not in str(info.value)
    assert "María" in str(info.value.__context__)  # (what was withheld)


_DEADLOCK = (
    "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01', MESSAGE = 'deadlock detected', "
    "DETAIL = 'Process 1 waits for ShareLock on transaction 2; blocked by process 3.'; END $$"
)


def test_a_deadlock_is_retried_though_its_detail_is_withheld(pg_conninfo18) -> None:
    """A deadlock always carries a DETAIL (the processes and their locks), so its message is
    withheld; it is still transient: the transaction runs again on a new connection."""
    attempts: list[int] = []

    def once(conn: psycopg.Connection) -> str:
        attempts.append(1)
        if len(attempts) == 1:  # the server raises what a deadlock raises, the first time
            conn.execute(_DEADLOCK)
        return "committed"

    assert resource(pg_conninfo18, retries=2).run(once, migrate=False) == "committed"
    assert len(attempts) == 2

    def always(conn: psycopg.Connection) -> None:
        attempts.append(1)
        conn.execute(_DEADLOCK)

    attempts.clear()
    with pytest.raises(WithheldDataError, match="40P01"):  # once the retries are spent
        resource(pg_conninfo18, retries=1).run(always, migrate=False)
    assert len(attempts) == 2


def _held_partition(conninfo, data_dir):
    """A migrated database, one partition's frame, and another session holding that
    partition's lock (a load that is still running): (frame, day, empresa, holder)."""
    frame = landing_frames(data_dir, days_back(1), empresas=("aire",), n=3)
    ((day, empresa),) = partitions_of(frame)
    migrate(conninfo)
    holder = psycopg.connect(**conninfo, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (loading.lock_key(empresa, day),))
    return frame, day, empresa, holder


def test_lock_timeout_is_retried_then_loads(pg_conninfo, data_dir, caplog):
    """Issue 21: a lock wait past lock_timeout (55P03) is retried with backoff; when the other
    load finishes meanwhile the retry loads."""
    frame, day, empresa, holder = _held_partition(pg_conninfo, data_dir)
    attempts = []

    def load(conn):
        attempts.append(len(attempts) + 1)
        if len(attempts) == 2:
            holder.close()  # the other load ends before the retry
        return loading.load_partition(conn, empresa, day, frame, "r")

    try:
        counts = resource(pg_conninfo, lock_timeout_ms=200, retries=3).run(load)
    finally:
        holder.close()
    assert attempts == [1, 2]
    assert counts.db_inserted == frame.filter(frame["is_winner"]).height
    assert "retry 1 of 3" in caplog.text


def test_lock_timeout_after_the_retries_says_what_to_do(pg_conninfo, data_dir):
    frame, day, empresa, holder = _held_partition(pg_conninfo, data_dir)
    attempts = []

    def load(conn):
        attempts.append(1)
        return loading.load_partition(conn, empresa, day, frame, "r")

    try:
        with pytest.raises(
            OperatorError,
            match=r"lock_timeout.*another load holds this partition.*"
            r"Nothing was written\. Wait for it to finish and rerun.*pg_blocking_pids",
        ) as e:
            resource(pg_conninfo, lock_timeout_ms=100, retries=2).run(load)
    finally:
        holder.close()
    assert len(attempts) == 3  # the first try and two retries
    assert e.value.__cause__ is None  # (a wait inside a COPY quotes the CSV line: never chained)
    with psycopg.connect(**pg_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM data_general.ov_aire").fetchone() == (0,)


@pytest.mark.parametrize("sslmode", ["", "prefer", "require", "verify-ca"])
def test_production_requires_verify_full(sslmode, monkeypatch, data_dir):
    """Issue 21: OV_ENV=production refuses a connection that does not verify the server's
    certificate (unset is libpq's prefer), naming what to set."""
    from ov_assets.defs.resources import resources_from_env

    for name, value in {
        "OV_ENV": "production",
        "POSTGRES_HOST": "db.example.invalid",
        "POSTGRES_SSLMODE": sslmode,
        "POSTGRES_USER": "ov",
        "POSTGRES_PASSWORD": "not-a-real-one",
    }.items():
        monkeypatch.setenv(name, value)
    pg = resources_from_env()["postgres"]
    with pytest.raises(
        ConfigurationError,
        match=r"OV_ENV=production requires POSTGRES_SSLMODE=verify-full.*"
        r"OV_ALLOW_INSECURE_DB=1",
    ) as e:
        pg.conninfo()
    assert "not-a-real-one" not in str(e.value)
    monkeypatch.setenv("POSTGRES_SSLMODE", "verify-full")
    assert resources_from_env()["postgres"].conninfo()["sslmode"] == "verify-full"


def test_production_insecure_opt_out_is_loud(monkeypatch, caplog, data_dir):
    from ov_assets.defs.resources import resources_from_env

    for name, value in {
        "OV_ENV": "production",
        "POSTGRES_HOST": "optout.example.invalid",
        "OV_ALLOW_INSECURE_DB": "1",
    }.items():
        monkeypatch.setenv(name, value)
    info = resources_from_env()["postgres"].conninfo()
    assert "sslmode" not in info
    assert "INSECURE DATABASE CONNECTION" in caplog.text and "OV_ALLOW_INSECURE_DB=1" in caplog.text
