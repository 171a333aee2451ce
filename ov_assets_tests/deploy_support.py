"""The production topology of ``deploy/`` run by the tests from its own files.

``deploy/systemd/*.service`` are read (Environment=, EnvironmentFile=, WorkingDirectory=,
ExecStart=) and their ``ExecStart`` run as they are, with ``${VAR}`` expanded as systemd does
from the unit's environment and the environment file, and the host's paths moved into a
temporary "host" (``HOST_PATHS``): ``/opt/ov-assets/.venv/bin`` is this interpreter's venv,
``/opt/ov-assets`` the checkout, ``/etc/ov-assets`` and ``/var/lib/ov-assets`` folders of the
test. ``deploy/compose.yaml`` is read too, so a test can check that its services run the same
commands. Each service runs in its own session; stopping it ends its whole process group (the
code server's run workers included) and checks that nothing of it is left.

Real processes only; nothing here mocks anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNITS = {"code-server": "ov-code-server.service", "webserver": "ov-webserver.service", "daemon": "ov-daemon.service"}

# What systemd does before ExecStart and a shell does not: default SIGINT/SIGTERM dispositions
# (a process started from a non-interactive shell may inherit them ignored, NOTES) and the
# unit's UMask=.
_AS_SYSTEMD = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "os.umask(int(sys.argv[1], 8))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


# ------------------------------------------------------------------------------------------
# the files


@dataclass
class Unit:
    """What a systemd unit's [Service] section says (the keys the tests use)."""

    name: str
    service: dict[str, list[str]]
    unit: dict[str, list[str]]

    def one(self, key: str) -> str:
        values = self.service.get(key, [])
        assert len(values) == 1, f"{self.name}: expected one {key}=, found {values}"
        return values[0]

    @property
    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for line in self.service.get("Environment", []):
            for assignment in shlex.split(line):
                k, _, v = assignment.partition("=")
                env[k] = v
        return env

    @property
    def environment_files(self) -> list[str]:
        return [f.removeprefix("-") for f in self.service.get("EnvironmentFile", [])]

    @property
    def exec_start(self) -> list[str]:
        return shlex.split(self.one("ExecStart"))


def read_unit(name: str) -> Unit:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not a Key=Value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return Unit(name, sections.get("Service", {}), sections.get("Unit", {}))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= and compose's env_file read them."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        k, sep, v = line.partition("=")
        assert sep, f"{path}: not a KEY=value line: {raw!r}"
        env[k.strip()] = v.strip()
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            k, _, v = line[4:].strip().partition("=")
            env[k] = v
    return env


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand(token: str, env: Mapping[str, str]) -> str:
    """``${VAR}`` (systemd, compose) and ``${VAR:-default}`` (compose) from ``env``; an unset
    variable without a default is an error, not an empty string."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) in env:
            return env[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise KeyError(f"{m.group(1)} is not set for {token!r}")

    return _VAR.sub(one, token)


# ------------------------------------------------------------------------------------------
# a host in a temporary folder


@dataclass
class Host:
    """The host's folders of the README's "Production" section, under ``root``: the env file
    and workspace in ``etc``, the persistent volume in ``state`` (DAGSTER_HOME with
    deploy/dagster.yaml, OV_DATA_DIR), installed as the README says (owner-only)."""

    root: Path
    secrets: dict[str, str]
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.etc = self.root / "etc-ov-assets"
        self.state = self.root / "var-lib-ov-assets"
        self.logs = self.root / "logs"
        self.etc.mkdir(parents=True)
        self.logs.mkdir()
        self.state.mkdir(mode=0o700)
        shutil.copy(DEPLOY / "workspace.yaml", self.etc / "workspace.yaml")
        env_file = self.etc / "ov-assets.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.secrets.items()))
        env_file.chmod(0o400)
        home = self.path(read_unit(UNITS["daemon"]).environment["DAGSTER_HOME"])
        home.mkdir(mode=0o700, parents=True)
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        (home / "dagster.yaml").chmod(0o600)

    @property
    def mapping(self) -> list[tuple[str, str]]:
        """Host path prefixes -> where they are here, the most specific first."""
        return [
            ("/opt/ov-assets/.venv/bin", str(Path(sys.executable).parent)),
            ("/opt/ov-assets", str(REPO)),
            ("/etc/ov-assets", str(self.etc)),
            ("/var/lib/ov-assets", str(self.state)),
        ]

    def map(self, text: str) -> str:
        for prefix, here in self.mapping:
            if text.startswith(prefix):
                return here + text[len(prefix) :]
        return text

    def path(self, host_path: str) -> Path:
        mapped = self.map(host_path)
        assert mapped != host_path, f"{host_path} is not under a mapped host folder"
        return Path(mapped)

    def environment(self, unit: Unit) -> dict[str, str]:
        """What systemd gives the service: a clean environment, the unit's Environment=, then
        its EnvironmentFile= (which overrides)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(self.state)}
        # (values of the unit are paths, or lists of paths like PATH)
        env.update({k: ":".join(map(self.map, v.split(":"))) for k, v in unit.environment.items()})
        files = unit.environment_files
        assert files, f"{unit.name} has no EnvironmentFile="
        for f in files:
            env.update(read_env_file(self.path(f)))
        return env

    def command(self, service: str) -> tuple[list[str], dict[str, str], Path]:
        unit = read_unit(UNITS[service])
        env = self.environment(unit)
        argv = [self.map(expand(t, env)) for t in unit.exec_start]
        return argv, env, self.path(unit.one("WorkingDirectory"))

    def start(self, service: str) -> Service:
        argv, env, cwd = self.command(service)
        umask = read_unit(UNITS[service]).one("UMask")
        return Service(service, argv, env, cwd, self.logs / f"{service}.log", umask)


class Service:
    """One service's ExecStart running in its own session (a unit's control group here)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, umask: str = "0022"
    ) -> None:
        self.name, self.argv, self.log = name, argv, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _AS_SYSTEMD, umask, *argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the group (systemd's KillMode=control-group), SIGKILL after ``timeout``;
        raises if any process of the group survives."""
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            self.proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                if killed:
                    raise RuntimeError(f"{self.name}: processes of group {pgid} survive SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 10
            time.sleep(0.1)
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def services(host: Host, *names: str) -> Iterator[dict[str, Service]]:
    """Start the named services in order; stop every one still running at the end (in reverse).
    The dict may be updated by the test (a restarted service replaces its entry)."""
    running: dict[str, Service] = {}
    try:
        for name in names:
            running[name] = host.start(name)
        yield running
    finally:
        errors = []
        for svc in reversed(list(running.values())):
            try:
                svc.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(e)
        if errors:
            raise errors[0]


def wait_until(what: str, check: Any, timeout: float, *watch: Service, interval: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the services' log tails
    when ``timeout`` passes or a watched service exits."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - not ready yet: keep the reason for the message
            last = e
        dead = [s for s in watch if not s.alive()]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {s.name} ({'exited ' + str(s.proc.returncode) if not s.alive() else 'running'})\n{s.tail()}"
                for s in watch
            )
            raise AssertionError(
                f"{what}: {'a service exited' if dead else f'not after {timeout}s'}; last: {last!r}\n{logs}"
            )
        time.sleep(interval)
