"""The production topology of deploy/ (issue 18, acceptance 1), run from its own files: the code
server, the webserver and the daemon as three processes, each started with the ExecStart of its
systemd unit (deploy_support), on an instance in PostgreSQL (deploy/dagster.yaml, a database of
the embedded server) with the pipeline's resources on the embedded PostgreSQL and moto's S3.

Files dropped into the landing folder are loaded by a run the landing sensor launches; the code
server is restarted (a redeploy) and the next dropped files load too; the webserver restarted
still shows every earlier run. The compose file and the Dockerfile are checked to run the same
commands with the same environment (no Docker engine here to run them)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from typing import Any

import psycopg
import pytest
import yaml

from ov_assets.core.contract import today_bogota
from ov_assets.defs.partitions import partition_key
from ov_assets.devkit import generator
from ov_assets.devkit.servers import free_port, graphql, postgres_env
from ov_assets_tests.conftest import s3_client
from ov_assets_tests.deploy_support import (
    DEPLOY,
    UNITS,
    Host,
    compose,
    dockerfile_env,
    expand,
    read_env_file,
    read_unit,
    services,
    wait_until,
)
from ov_assets_tests.support import sqlalchemy_url

_RUNS = "query { runsOrError(limit: 1000) { ... on Runs { results { runId status tags { key value } } } } }"
_LOCATION = """query { workspaceLocationEntryOrError(name: "ov_assets") { __typename
  ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename
    ... on RepositoryLocation { serverId } ... on PythonError { message } } } } }"""
_DAEMONS = "query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


# ------------------------------------------------------------------------------------------
# the files agree with each other


def test_units_compose_and_image_run_the_same_commands() -> None:
    units = {name: read_unit(file) for name, file in UNITS.items()}
    services_ = compose()["services"]
    assert set(services_) == set(units)
    image_env = dockerfile_env()
    for name, unit in units.items():
        assert unit.one("Restart") == "always", name
        assert unit.one("User") == "ov-assets" and unit.one("UMask") == "0077", name
        assert unit.environment_files == ["/etc/ov-assets/ov-assets.env"], name
        assert unit.one("WorkingDirectory") == services_[name]["working_dir"] == "/opt/ov-assets"
        assert unit.environment == image_env, f"{name}: Environment= and the Dockerfile's ENV differ"
        assert services_[name]["restart"] == "always"
        assert services_[name]["env_file"] == unit.environment_files
        assert services_[name]["network_mode"] == "host"  # 127.0.0.1 is the host's, as with systemd
        # Same argv with the defaults, and with ports moved in the environment.
        for env in ({}, {"OV_CODE_SERVER_PORT": "5001", "OV_WEBSERVER_PORT": "5002"}):
            assert [expand(t, {**unit.environment, **env}) for t in unit.exec_start] == [
                expand(t, env) for t in services_[name]["command"]
            ], name
    for name in ("code-server", "webserver"):  # nothing of Dagster listens beyond 127.0.0.1
        argv = units[name].exec_start
        assert argv[argv.index("-h") + 1] == "127.0.0.1", name
    # The webserver and the daemon read the workspace that points at the code server.
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace["load_from"] == [
        {"grpc_server": {"host": "127.0.0.1", "port": {"env": "OV_CODE_SERVER_PORT"}, "location_name": "ov_assets"}}
    ]
    for name in ("webserver", "daemon"):
        argv = units[name].exec_start
        assert argv[argv.index("-w") + 1] == "/etc/ov-assets/workspace.yaml"
        assert "/etc/ov-assets/workspace.yaml:/etc/ov-assets/workspace.yaml:ro" in services_[name]["volumes"]
    # The env file template names every setting a production host needs, and holds no value
    # that is a secret.
    example = read_env_file(DEPLOY / "ov-assets.env.example")
    for key in (
        "DAGSTER_POSTGRES_URL",
        "POSTGRES_HOST",
        "POSTGRES_PASSWORD",
        "AWS_S3_BUCKET_NAME",
        "OV_AFINIA_PASSWORD",
        "OV_AIRE_PASSWORD",
    ):
        assert key in example, key
    assert all(example[k] == "" for k in example if "PASSWORD" in k or k == "DAGSTER_POSTGRES_URL")
    # The instance: PostgreSQL storage, the run queue's tag limits, monitoring and retries.
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = {t["key"] for t in instance["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert {"dagster/partition", "ov/partition", "ov/empresa", "ov/portal"} <= limits
    assert instance["run_monitoring"]["enabled"] is True
    assert instance["run_retries"]["enabled"] is True and instance["run_retries"]["max_retries"] >= 1


def test_readme_production_section_names_every_file_of_deploy() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    start = readme.index("\n## Production\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    files = sorted(
        str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert files and [f for f in files if f"`{f}`" not in section] == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify() -> None:
    """systemd's own parser: a misspelt key or value is reported. The executables are not on this
    host (they are /opt/ov-assets/.venv/bin/... on the production host): only that is allowed."""
    files = [str(DEPLOY / "systemd" / f) for f in (*UNITS.values(), "ov-assets.target")]
    out = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True, text=True, timeout=120)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    unexpected = [
        line for line in lines if not (": Command /opt/ov-assets/.venv/bin/" in line and "is not executable" in line)
    ]
    assert unexpected == []


# ------------------------------------------------------------------------------------------
# the topology running


def _runs(base: str) -> dict[str, dict[str, Any]]:
    return {
        r["runId"]: {"status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
        for r in graphql(base, _RUNS)["runsOrError"]["results"]
    }


def _server_id(base: str) -> str | None:
    entry = graphql(base, _LOCATION, timeout=10)["workspaceLocationEntryOrError"]
    location = entry.get("locationOrLoadError") or {}
    if entry.get("loadStatus") == "LOADED" and location.get("__typename") == "PythonError":
        raise AssertionError(f"ov_assets failed to load: {location.get('message')}")
    return location.get("serverId") if entry.get("loadStatus") == "LOADED" else None


def _healthy_daemons(base: str) -> list[dict[str, Any]] | None:
    """The required daemons once every one of them is healthy (None before)."""
    required = [d for d in graphql(base, _DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"] if d["required"]]
    return required if required and all(d["healthy"] for d in required) else None


def _code_server_healthy(host: Host) -> bool:
    """The compose file's healthcheck command, run as the container would run it."""
    test = compose()["services"]["code-server"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    env = host.environment(read_unit(UNITS["code-server"]))
    argv = [host.map(expand(t, env)) for t in test[1:]]
    return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode == 0


def _sensor_run(base: str, key: str) -> dict[str, Any] | None:
    """The landing sensor's run of ``key`` once it has finished (None before)."""
    runs = [
        r
        for r in _runs(base).values()
        if r["tags"].get("dagster/sensor_name") == "landing_sensor" and r["tags"].get("dagster/partition") == key
    ]
    done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    return done[0] if done else None


def _loaded(conninfo: dict[str, Any], bucket: str, s3: Any, day: dt.date, gen: Any) -> bool:
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM data_general.ov_afinia WHERE numero_radicado = ANY(%s)", (sorted(gen.radicados),)
        ).fetchone()
        keys = [
            k
            for (k,) in conn.execute(
                "SELECT s3_key FROM data_general.s3_files_registry WHERE s3_bucket = %s AND upload_status = 'uploaded' "
                "AND numero_radicado = ANY(%s)",
                (bucket, sorted(gen.radicados)),
            ).fetchall()
        ]
    stored = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    return rows == len(gen.radicados) and len(keys) == len(gen.files) and set(keys) <= stored


def test_code_server_webserver_daemon_on_postgres(pg_server, pg_conninfo18, s3_endpoint, s3_bucket, tmp_path) -> None:
    dagster_db = pg_server.create_database(prefix="dagster")
    web_port = free_port()
    secrets = {
        "DAGSTER_POSTGRES_URL": sqlalchemy_url(pg_server.conninfo(dagster_db)),
        **postgres_env(pg_conninfo18),
        "AWS_S3_BUCKET_NAME": s3_bucket,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # Free ports instead of 4266/3000 (several test runs share this machine).
        "OV_CODE_SERVER_PORT": str(free_port()),
        "OV_WEBSERVER_PORT": str(web_port),
        # OV_ENV stays unset: production would start the schedules, and a cron tick during the
        # test would extract from portals that are not configured here.
    }
    base = f"http://127.0.0.1:{web_port}"
    s3 = s3_client(s3_endpoint)
    try:
        host = Host(tmp_path / "host", secrets)
        env_file = host.etc / "ov-assets.env"
        assert env_file.stat().st_mode & 0o777 == 0o400
        data_dir = host.path(read_unit(UNITS["code-server"]).environment["OV_DATA_DIR"])
        home = host.path(read_unit(UNITS["daemon"]).environment["DAGSTER_HOME"])

        with services(host, "code-server", "webserver", "daemon") as svc:
            everything = list(svc.values())
            wait_until("code server healthy", lambda: _code_server_healthy(host), 180, *everything)
            first_server = wait_until(
                "webserver loaded ov_assets from the code server", lambda: _server_id(base), 180, *everything
            )
            daemons = wait_until("daemons healthy", lambda: _healthy_daemons(base), 180, *everything)
            assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= {d["daemonType"] for d in daemons}

            # 1. Files dropped in the landing folder: the sensor's run loads them.
            day1 = today_bogota() - dt.timedelta(days=1)
            gen1 = generator.write_day(data_dir, "afinia", day1, n=3, seed=1, versions=False, broken=False)
            key1 = str(partition_key(day1, "afinia"))
            run1 = wait_until(f"sensor run of {key1}", lambda: _sensor_run(base, key1), 300, *everything)
            assert run1["status"] == "SUCCESS", run1
            wait_until(
                "first drop in PostgreSQL and S3",
                lambda: _loaded(pg_conninfo18, s3_bucket, s3, day1, gen1),
                60,
                *everything,
            )

            # 2. A redeploy: the code server restarted. The webserver and the daemon, not
            # restarted, reach the new server; the next drop loads too.
            svc["code-server"].stop()
            svc["code-server"] = host.start("code-server")
            everything = list(svc.values())
            wait_until("code server healthy again", lambda: _code_server_healthy(host), 180, *everything)
            second_server = wait_until(
                "webserver on the new code server",
                lambda: (s := _server_id(base)) not in (None, first_server) and s,
                180,
                *everything,
            )
            assert second_server != first_server
            day2 = today_bogota() - dt.timedelta(days=2)
            gen2 = generator.write_day(data_dir, "afinia", day2, n=2, seed=2, versions=False, broken=False)
            key2 = str(partition_key(day2, "afinia"))
            run2 = wait_until(
                f"sensor run of {key2} after the redeploy", lambda: _sensor_run(base, key2), 300, *everything
            )
            assert run2["status"] == "SUCCESS", run2
            wait_until(
                "second drop in PostgreSQL and S3",
                lambda: _loaded(pg_conninfo18, s3_bucket, s3, day2, gen2),
                60,
                *everything,
            )
            before = _runs(base)
            assert all(r["status"] == "SUCCESS" for r in before.values()), before

            # 3. The webserver restarted shows every earlier run, as it was.
            svc["webserver"].stop()
            svc["webserver"] = host.start("webserver")
            everything = list(svc.values())
            wait_until(
                "restarted webserver loaded ov_assets", lambda: _server_id(base) == second_server, 180, *everything
            )
            after = _runs(base)
            assert {k: v["status"] for k, v in after.items()} == {k: v["status"] for k, v in before.items()}
            assert len(after) >= 2 and {r["tags"]["dagster/partition"] for r in after.values()} >= {key1, key2}

        # Every process of the three services has ended (services() checked their groups).
        # The runs live in the instance database, not in SQLite files under DAGSTER_HOME.
        with pg_server.connect(dagster_db) as conn:
            ids = {r for (r,) in conn.execute("SELECT run_id FROM runs").fetchall()}
        assert ids == set(after)
        assert [p.name for p in home.rglob("*.db")] == []
        # The persistent volume is owner-only, whatever the services wrote there (UMask=0077).
        assert data_dir.stat().st_mode & 0o777 == 0o700
        assert list(data_dir.rglob("*")) and list((home / "compute_logs").rglob("*"))
        assert [str(p) for p in host.state.rglob("*") if p.stat().st_mode & 0o077] == []
    finally:
        pg_server.drop_database(dagster_db)
