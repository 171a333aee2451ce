"""``ov-assets doctor`` (issue 16, acceptance 2) against real components: the embedded PostgreSQL
(and throwaway clusters with password and TLS authentication), moto's S3 server (enforcing IAM
for the denied action), the replica portal in Chromium and a real ``dagster-daemon``. Everything
configured right: every line OK, exit 0. Then one thing wrong at a time (database password,
bucket, an action the policy denies, portal password): one FAIL line naming what to fix, exit 1,
and every other check still reported OK."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ov_assets import cli
from ov_assets.devkit.replica import ReplicaPortal
from ov_assets.devkit.servers import postgres_env
from ov_assets.objects import bucket_setup
from ov_assets.warehouse import migrations
from ov_assets.warehouse.health import postgres_health
from ov_assets_tests.archive_support import client
from ov_assets_tests.pgcluster import PASSWORD as CLUSTER_PASSWORD
from ov_assets_tests.pgcluster import embedded_bindir, require_ssl_bindir, temp_cluster
from ov_assets_tests.support import leaked, personal_search_terms
from ov_assets_tests.test_aws_errors import enforcing_moto  # noqa: F401 - the fixture, shared (moto enforcing IAM)

DAY = dt.date(2025, 10, 8)  # a Wednesday: the replica lists PQRs
USER, PASSWORD = "analista.doctor", "Pw-doctor-no-en-salida"  # pragma: allowlist secret
POSTGRES = {"postgres", "postgres version", "postgres tls", "postgres migrations", "postgres privileges"}
BUCKET = {"bucket", "bucket region", "bucket versioning", "bucket encryption", "bucket lifecycle", "bucket write"}
PORTALS = {"portal afinia", "portal aire"}
DAGSTER = {"dagster instance", "dagster daemon"}


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An instance with a real ``dagster-daemon`` beating in it (over definitions with nothing
    in them: the heartbeats are what doctor reads); stopped after the module."""
    import dagster as dg

    root = tmp_path_factory.mktemp("doctor-dagster")
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (root / "defs.py").write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # the storage made first: two processes creating it at once collide
        required = set(instance.get_required_daemon_types())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OV_", "DAGSTER_"))} | {"DAGSTER_HOME": str(home)}
    log = root / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-f", str(root / "defs.py")],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while not required <= set(instance.get_daemon_heartbeats()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dagster-daemon did not beat:\n{log.read_text()[-4000:]}")
                time.sleep(0.3)
        yield home
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def replica() -> Iterator[ReplicaPortal]:
    with ReplicaPortal(per_day=6, username=USER, password=PASSWORD) as portal:
        yield portal


@pytest.fixture
def configured(
    pg_conninfo18: dict[str, Any],
    s3_endpoint: str,
    s3_bucket: str,
    data_dir: Path,
    dagster_home: Path,
    replica: ReplicaPortal,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Everything set up as `Going live` leaves it: migrated, the bucket configured by s3-setup,
    afinia's portal configured (aire's not: development falls back to the replica)."""
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        migrations.apply_all(conn)
    bucket_setup.apply(client(s3_endpoint), s3_bucket, "oficina-virtual")
    for name, value in {
        **postgres_env(pg_conninfo18),
        "AWS_S3_BUCKET_NAME": s3_bucket,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "OV_AFINIA_PORTAL_URL": replica.url("afinia"),
        "OV_AFINIA_USER": USER,
        "OV_AFINIA_PASSWORD": PASSWORD,
        "DAGSTER_HOME": str(dagster_home),
    }.items():
        monkeypatch.setenv(name, value)
    return {"bucket": s3_bucket, "endpoint": s3_endpoint}


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    """Exit status, ``{check name: its line}`` and the whole output of one ``ov-assets doctor``."""
    status = cli.main(["doctor", "--day", DAY.isoformat(), *args])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("OK", "FAIL"):
            lines[rest.split(":", 1)[0]] = line
    return status, lines, out


def only_failure(lines: dict[str, str], name: str) -> str:
    failed = [n for n, line in lines.items() if line.startswith("FAIL")]
    assert failed == [name], lines
    return lines[name]


def test_all_ok(configured: dict[str, Any], replica: ReplicaPortal, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, out = doctor(capsys, "--write")
    assert status == 0, out
    assert set(lines) == POSTGRES | BUCKET | PORTALS | DAGSTER, out
    assert all(line.startswith("OK ") for line in lines.values()), out
    assert "doctor: all 15 checks passed" in out
    assert "not configured" in lines["portal aire"] and "all" in lines["portal afinia"]
    assert "daemons beating" in lines["dagster daemon"]
    # the probe key is gone (versioning keeps a delete marker, no current object)
    listed = client(configured["endpoint"]).list_objects_v2(Bucket=configured["bucket"], Prefix="oficina-virtual/")
    assert listed.get("KeyCount", 0) == 0
    assert PASSWORD not in out and "testing" not in out
    assert leaked(out, personal_search_terms(replica.records("afinia", DAY))) == []


def test_wrong_postgres_password(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that asks for a password (scram, over TCP), given the wrong one: one line, and the
    bucket, the portals and the instance are checked all the same."""
    with temp_cluster(embedded_bindir()) as cluster:
        wrong = "wrong-" + uuid.uuid4().hex[:8]
        for name, value in postgres_env(cluster.conninfo("postgres", password=wrong)).items():
            monkeypatch.setenv(name, value)
        status, lines, out = doctor(capsys, "--write")
    assert status == 1
    line = only_failure(lines, "postgres")
    assert "authentication failed" in line and "POSTGRES_PASSWORD" in line
    assert set(lines) == {"postgres"} | BUCKET | PORTALS | DAGSTER
    assert wrong not in out and CLUSTER_PASSWORD not in out


def test_missing_bucket(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_S3_BUCKET_NAME", f"ov-no-such-{uuid.uuid4().hex[:8]}")
    status, lines, out = doctor(capsys, "--write", "--skip-portal")
    assert status == 1
    line = only_failure(lines, "bucket")
    assert "does not exist" in line and "AWS_S3_BUCKET_NAME" in line
    assert set(lines) == POSTGRES | {"bucket"} | DAGSTER  # one line for the bucket, the rest still checked
    assert "SKIP portals" in out


def test_denied_action(
    configured: dict[str, Any],
    enforcing_moto: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """IAM enforced: the runtime credentials lack s3:PutObject, so --write's probe is refused; the
    bucket's configuration is read through --profile with the admin policy."""
    make_user, enforce = enforcing_moto
    bucket = configured["bucket"]
    runtime = bucket_setup.render("runtime", bucket, "oficina-virtual")
    for statement in runtime["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != "s3:PutObject"]
    key_id, secret = make_user(f"ov-doctor-runtime-{uuid.uuid4().hex[:8]}", runtime)
    admin = bucket_setup.render("admin", bucket)
    # moto authorizes GetBucketEncryption as s3:ListBucket (AWS: s3:GetEncryptionConfiguration)
    admin["Statement"].append({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]})
    admin_id, admin_secret = make_user(f"ov-doctor-admin-{uuid.uuid4().hex[:8]}", admin)
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[admin]\naws_access_key_id = {admin_id}\naws_secret_access_key = {admin_secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    enforce()
    status, lines, out = doctor(capsys, "--write", "--skip-portal", "--profile", "admin")
    assert status == 1
    line = only_failure(lines, "bucket write")
    assert "put of a probe key failed" in line and "access denied" in line and "PutObject" in line
    assert "aws/iam-policy-runtime.json" in line
    assert set(lines) == POSTGRES | BUCKET | DAGSTER
    assert secret not in out and admin_secret not in out


def test_wrong_portal_password(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OV_AFINIA_PASSWORD", "not-" + PASSWORD)
    status, lines, out = doctor(capsys)
    assert status == 1
    line = only_failure(lines, "portal afinia")
    assert "refused the login" in line and "OV_AFINIA_USER and OV_AFINIA_PASSWORD" in line
    assert set(lines) == POSTGRES | BUCKET - {"bucket write"} | PORTALS | DAGSTER
    assert PASSWORD not in out


def test_pending_migrations_and_no_daemon(
    configured: dict[str, Any],
    pg_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database never migrated and an instance no daemon runs on: each said with its command."""
    fresh = pg_server.create_database()
    try:
        monkeypatch.setenv("POSTGRES_DB", fresh)
        home = tmp_path / "quiet_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        status, lines, _ = doctor(capsys, "--skip-portal")
    finally:
        pg_server.drop_database(fresh)
    assert status == 1
    assert lines["postgres migrations"].startswith("FAIL") and "run `ov-assets migrate`" in lines["postgres migrations"]
    assert (
        lines["postgres privileges"].startswith("FAIL")
        and "data_general does not exist" in lines["postgres privileges"]
    )
    assert lines["dagster daemon"].startswith("FAIL") and "dagster-daemon run" in lines["dagster daemon"]
    assert lines["dagster instance"].startswith("OK") and lines["bucket"].startswith("OK")


def test_privileges_of_a_loader_and_of_a_bare_login(pg_conninfo18: dict[str, Any]) -> None:
    """A login in ov_loader may do what the pipeline does (no CREATE: the owner migrates); a login
    without it is told which grant is missing."""
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        migrations.apply_all(conn)
        loader, bare = f"ov_doc_loader_{uuid.uuid4().hex[:8]}", f"ov_doc_bare_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {loader} LOGIN IN ROLE ov_loader")
        conn.execute(f"CREATE ROLE {bare} LOGIN")
        try:
            ok = {h.name: h for h in postgres_health({**pg_conninfo18, "user": loader}, "db", "development")}
            denied = {h.name: h for h in postgres_health({**pg_conninfo18, "user": bare}, "db", "development")}
        finally:
            conn.execute(f"DROP ROLE {loader}")
            conn.execute(f"DROP ROLE {bare}")
    assert ok["postgres privileges"].ok and "no CREATE" in ok["postgres privileges"].detail
    assert ok["postgres migrations"].ok
    assert not denied["postgres privileges"].ok
    assert "USAGE on schema data_general" in denied["postgres privileges"].detail
    assert "GRANT ov_loader" in denied["postgres privileges"].detail


def test_doctor_checks_every_table_the_loader_is_granted(pg_conninfo18: dict[str, Any]) -> None:
    """The privileges doctor checks are the ones the migrations grant ov_loader on its tables, so
    a table a later migration adds (and grants) cannot be missed by doctor."""
    from ov_assets.warehouse.health import PIPELINE_TABLES

    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        migrations.apply_all(conn)
        rows = conn.execute(
            "SELECT c.relname, p.privilege FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'data_general' "
            "CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p(privilege) "
            "WHERE c.relkind IN ('r', 'p') AND has_table_privilege('ov_loader', c.oid, p.privilege)"
        ).fetchall()
    granted: dict[str, set[str]] = {}
    for table, privilege in rows:
        granted.setdefault(table, set()).add(privilege)
    checked = {table: set(privileges) for table, privileges in PIPELINE_TABLES.items()}
    assert checked == {t: p for t, p in granted.items() if "INSERT" in p}  # the tables it writes


def test_tls_verified_or_not(tmp_path: Path) -> None:
    """Over TCP to a server with TLS: verify-full is OK (encrypted, certificate and host checked);
    sslmode=require in production encrypts without verifying anything: FAIL saying what to set."""
    with temp_cluster(require_ssl_bindir(), ssl=True) as cluster:
        assert cluster.certs is not None
        base = cluster.conninfo("postgres", host="localhost")
        verified = {
            h.name: h
            for h in postgres_health(
                {**base, "sslmode": "verify-full", "sslrootcert": str(cluster.certs.ca)}, "localhost", "production"
            )
        }
        unverified = {h.name: h for h in postgres_health({**base, "sslmode": "require"}, "localhost", "production")}
    tls = verified["postgres tls"]
    assert tls.ok and "encrypted (TLS" in tls.detail and "verify-full" in tls.detail, tls
    tls = unverified["postgres tls"]
    assert not tls.ok and "not verified" in tls.detail and "POSTGRES_SSLMODE=verify-full" in tls.detail
    assert CLUSTER_PASSWORD not in json.dumps([h.detail for h in (*verified.values(), *unverified.values())])


def test_unknown_admin_profile_is_one_line(
    configured: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    status, lines, _ = doctor(capsys, "--skip-portal", "--profile", "no-such-profile")
    assert status == 1
    line = only_failure(lines, "bucket profile")
    assert "'no-such-profile' not found" in line and "--profile" in line
    assert set(lines) == POSTGRES | BUCKET - {"bucket write"} | {"bucket profile"} | DAGSTER


def test_production_instance_keeps_its_storage_in_postgres(tmp_path: Path) -> None:
    """The instance storage answers, but SQLite is not what deploy/dagster.yaml gives production."""
    from ov_assets.defs.instance_health import instance_health

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    development = {h.name: h for h in instance_health(home, "development")}
    production = {h.name: h for h in instance_health(home, "production")}
    assert development["dagster instance"].ok
    assert not production["dagster instance"].ok and "deploy/dagster.yaml" in production["dagster instance"].detail
    assert instance_health(tmp_path / "missing")[0].detail.endswith("deploy/dagster.yaml for production)")


def test_wrong_aws_credentials(
    configured: dict[str, Any],
    enforcing_moto: Any,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """IAM enforced and an access key IAM never issued: one line for the bucket, saying which variables to fix."""
    _, enforce = enforcing_moto
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + uuid.uuid4().hex[:16].upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + uuid.uuid4().hex)
    enforce()
    status, lines, out = doctor(capsys, "--write", "--skip-portal")
    assert status == 1
    line = only_failure(lines, "bucket")
    assert "credentials are invalid" in line and "AWS_SECRET_ACCESS_KEY" in line
    assert set(lines) == POSTGRES | {"bucket"} | DAGSTER
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in out
