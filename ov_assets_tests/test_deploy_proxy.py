"""The login in front of the Dagster UI (issue 18, acceptance 2): Debian's nginx with
deploy/nginx/ov-assets.conf (TLS, basic auth from a file of hashed passwords) in front of the
webserver of deploy/ (started with its unit's ExecStart, on 127.0.0.1 only, reading the code
server's definitions). Without credentials every path answers 401, the GraphQL API included;
with them the UI loads in Chromium and shows the asset graph.

nginx missing is a failure, not a skip: scripts/install.sh installs it (Debian's `nginx`).
The site file is used as it is but for its host paths and ports, moved to a temporary folder
and free ports on 127.0.0.1; the test's own main nginx.conf (pid, temp folders, `user root`
when run as root, so that the workers read the temporary htpasswd) wraps it."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ov_assets.devkit.servers import free_port, postgres_env, wait_for_port
from ov_assets_tests.deploy_support import DEPLOY, UNITS, Host, Service, read_unit, services, wait_until
from ov_assets_tests.support import configured_browser, sqlalchemy_url

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
SITE = DEPLOY / "nginx" / "ov-assets.conf"
BROWSER = configured_browser() or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = "analista"
ASSETS = ("raw_pqr_files", "pqr_records", "pqr_table", "pqr_s3_objects", "pqr_quality_daily")  # the partitioned ones


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.fail("nginx is not installed: `bash scripts/install.sh` installs Debian's nginx (apt-get install nginx)")
    return found


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost (key 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ov-assets test proxy")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pem.chmod(0o600)
    return crt, pem


def _htpasswd(path: Path, user: str, password: str) -> None:
    """The README's command: a SHA-512 crypt hash from `openssl passwd -6`, never the password."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert hashed.startswith("$6$") and password not in hashed
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o640)


def _replace(text: str, old: str, new: str, count: int) -> str:
    """Replace exactly ``count`` occurrences: the site file changed shape otherwise."""
    assert text.count(old) == count, f"{SITE.name}: expected {count} x {old!r}, found {text.count(old)}"
    return text.replace(old, new)


def _site(folder: Path, nginx_dir: Path, http_port: int, https_port: int, web_port: int) -> Path:
    default_port = read_unit(UNITS["webserver"]).environment["OV_WEBSERVER_PORT"]
    # (its comments, which repeat the paths for the reader, left out)
    text = "".join(line for line in SITE.read_text().splitlines(keepends=True) if not line.lstrip().startswith("#"))
    text = _replace(text, f"proxy_pass http://127.0.0.1:{default_port};", f"proxy_pass http://127.0.0.1:{web_port};", 1)
    text = _replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = _replace(text, "listen [::]:80;", "", 1)
    text = _replace(text, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;", 1)
    text = _replace(text, "listen [::]:443 ssl;", "", 1)
    text = _replace(text, "/etc/nginx/ov-assets/", f"{nginx_dir}/", 3)
    text = _replace(text, "/var/log/nginx/", f"{folder}/", 2)
    site = folder / "ov-assets.conf"
    site.write_text(text)
    return site


def _main_conf(folder: Path, site: Path) -> Path:
    temps = "\n".join(
        f"    {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
{temps}
    access_log {folder}/access.log;
    include {site};
}}
""")
    return conf


def _get(
    url: str, tls: ssl.SSLContext, auth: tuple[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"} if data else {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=tls), NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr)
            if len(raw) == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(str(ipaddress.IPv6Address(words)))
    return found


def test_ui_only_through_tls_and_login(pg_server, pg_conninfo18, tmp_path) -> None:
    nginx = _nginx()
    password = secrets.token_urlsafe(18)
    dagster_db = pg_server.create_database(prefix="dagster")
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    host = Host(
        tmp_path / "host",
        {
            "DAGSTER_POSTGRES_URL": sqlalchemy_url(pg_server.conninfo(dagster_db)),
            **postgres_env(pg_conninfo18),
            "OV_CODE_SERVER_PORT": str(free_port()),
            "OV_WEBSERVER_PORT": str(web_port),
        },
    )
    proxy_dir = tmp_path / "nginx"
    nginx_dir = proxy_dir / "etc"  # /etc/nginx/ov-assets
    nginx_dir.mkdir(parents=True)
    crt, _key = _certificate(nginx_dir)
    _htpasswd(nginx_dir / "htpasswd", USER, password)
    conf = _main_conf(proxy_dir, _site(proxy_dir, nginx_dir, http_port, https_port, web_port))
    argv = [nginx, "-p", str(proxy_dir), "-c", str(conf), "-e", str(proxy_dir / "error.log")]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    tls = ssl.create_default_context(cafile=str(crt))  # verifies the chain and 127.0.0.1
    https = f"https://127.0.0.1:{https_port}"
    try:
        with services(host, "code-server", "webserver") as svc:
            proxy = Service("nginx", [*argv, "-g", "daemon off;"], dict(os.environ), proxy_dir, proxy_dir / "nginx.log")
            try:
                watch = [*svc.values(), proxy]
                wait_for_port("127.0.0.1", https_port, timeout=30)
                # The webserver answers through the proxy once it has loaded the code server's
                # definitions.
                wait_until(
                    "webserver behind the proxy",
                    lambda: (
                        b'"LOADED"'
                        in _get(
                            f"{https}/graphql",
                            tls,
                            (USER, password),
                            json.dumps(
                                {
                                    "query": "{ workspaceOrError { ... on Workspace { locationEntries "
                                    "{ loadStatus } } } }"
                                }
                            ).encode(),
                        )[2]
                    ),
                    240,
                    *watch,
                )

                # The webserver itself listens on 127.0.0.1 only; nginx is the way in.
                assert _listening_addresses(web_port) == {"127.0.0.1"}

                # Without credentials, or with wrong ones: 401, for the UI and the API alike.
                for path, body in (
                    ("/", None),
                    ("/locations/ov_assets/asset-groups/oficina_virtual", None),
                    ("/graphql", b'{"query": "{ version }"}'),
                    ("/server_info", None),
                ):
                    for auth in (None, (USER, password + "x"), ("nadie", password)):
                        status, headers, _ = _get(https + path, tls, auth, body)
                        assert status == 401, (path, auth and auth[0], status)
                        assert headers.get("WWW-Authenticate", "").startswith("Basic"), headers
                # With them: the UI's page and the API.
                status, headers, page = _get(https + "/", tls, (USER, password))
                assert status == 200 and b"Dagster" in page
                assert headers.get("Strict-Transport-Security", "").startswith("max-age=")
                status, _, body = _get(https + "/graphql", tls, (USER, password), b'{"query": "{ version }"}')
                assert status == 200 and json.loads(body)["data"]["version"]
                # Plain HTTP only redirects to HTTPS.
                status, headers, _ = _get(f"http://127.0.0.1:{http_port}/graphql", tls)
                assert status == 301 and headers["Location"].startswith("https://127.0.0.1")

                _browser(https, password)
            finally:
                proxy.stop()
        # The site's own logs (its access_log / error_log lines): the login is logged, the password never.
        access = (proxy_dir / "ov-assets.access.log").read_text()
        assert f" {USER} " in access and " 401 " in access and " 200 " in access
        logs = "".join(p.read_text(errors="replace") for p in proxy_dir.glob("*.log"))
        assert password not in logs
    finally:
        pg_server.drop_database(dagster_db)


def _browser(https: str, password: str) -> None:
    if not Path(BROWSER).exists():
        pytest.skip(f"no Chromium at {BROWSER} (set OV_BROWSER_PATH)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    graph = f"{https}/locations/ov_assets/asset-groups/oficina_virtual"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=ARGS)
        try:
            # The certificate is a throwaway one: the TLS checks above verify it; here the login.
            # Without credentials Chromium gets the 401 and shows nothing.
            anonymous = browser.new_context(ignore_https_errors=True)
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                anonymous.new_page().goto(graph)
            anonymous.close()

            context = browser.new_context(
                ignore_https_errors=True,
                viewport={"width": 1500, "height": 1000},
                http_credentials={"username": USER, "password": password},
            )
            page = context.new_page()
            page.set_default_timeout(60_000)
            try:
                response = page.goto(graph)
                assert response is not None and response.status == 200
                for asset in ASSETS:
                    expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=120_000)
                # Each node's partitions, read through the proxy's GraphQL by the page itself.
                expect(page.get_by_text(re.compile(r"^[\d,]+ partitions$"))).to_have_count(len(ASSETS), timeout=120_000)
                # "Join the Dagster community" shows on first load unless telemetry is off, as it
                # is in deploy/dagster.yaml: dismissed if it is there, for the screenshot.
                skip = page.get_by_role("button", name="Skip")
                if skip.is_visible():
                    skip.click()
                page.screenshot(path=str(ARTIFACTS / "deploy_proxy_asset_graph.png"))
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "deploy_proxy_failure.png"))
                raise
        finally:
            browser.close()
