"""``ov-assets portal-check`` (issue 14 part 5) against the replica portal, in real Chromium: ready
on the replica; not ready, naming the selector, when the portal renamed one (the replica seen
through a real HTTP proxy that renames it in every page it serves)."""

from __future__ import annotations

import ast
import datetime as dt
import http.client
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ov_assets import cli
from ov_assets.devkit.replica import ReplicaPortal
from ov_assets.portal import pages, probe
from ov_assets.portal.scraper import prune_artifacts
from ov_assets_tests.support import leaked, personal_search_terms

DAY = dt.date(2025, 10, 8)
USER, PASSWORD = "analista.ov", "Pw-check-no-en-salida"
SELECTORS = (
    pages.USER_INPUT,
    pages.PASSWORD_INPUT,
    pages.FILTER_ESTADO,
    pages.FILTER_DESDE,
    pages.FILTER_HASTA,
    pages.SEARCH_BUTTON,
    pages.RESULT_ROWS,
    pages.RESULT_CELL,
    pages.RANGE_LABEL,
    pages.NEXT_BUTTON,
    pages.EYE_LINK,
    pages.DETAIL_LABEL,
    pages.SGC_INPUT,
    pages.ATTACHMENT_LINK,
)


class _RenamingProxy:
    """Forwards every request to the replica and replaces ``old`` by ``new`` in the HTML it
    answers (markup and inline scripts alike): the same portal with one selector renamed."""

    def __init__(self, upstream: str, old: str, new: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("accept-encoding", "connection")}
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                if "text/html" in (answer.getheader("Content-Type") or ""):
                    data = data.replace(old.encode(), new.encode())
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _not_found(out: str) -> list[str]:
    """The report's lines of required checks that are not found."""
    return [
        line
        for line in out.splitlines()
        if line.split(" ")[0] in ("missing", "different", "unverified") and "(optional)" not in line
    ]


@pytest.fixture
def renamed_sgc_portal() -> Iterator[tuple[ReplicaPortal, _RenamingProxy]]:
    with ReplicaPortal(per_day=12, username=USER, password=PASSWORD) as portal:
        proxy = _RenamingProxy(portal.base_url, "NumeroReclamoSGC", "NumeroReclamoSgcV2")
        try:
            yield portal, proxy
        finally:
            proxy.close()


def _aged(path: Path, days: float) -> Path:
    """``path`` written ``days`` ago (its mtime, what the pruning reads)."""
    path.write_bytes(b"png")
    then = time.time() - days * 86400
    os.utime(path, (then, then))
    return path


def test_ready_on_the_replica_it_starts_itself(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No portal configured: the command starts the local replica as the scraper does, says so,
    and finds every selector and behaviour; nothing personal is printed, no screenshot taken.
    Earlier runs' screenshots older than OV_RETENTION_DAYS (30) are deleted, newer ones kept."""
    artifacts = data_dir / "artifacts"
    artifacts.mkdir(mode=0o700)
    old = _aged(artifacts / "portal-check-afinia-20250801T000000-detail.png", 40)
    recent = _aged(artifacts / "portal-check-afinia-20251001T000000-login.png", 2)
    assert cli.main(["portal-check", "--empresa", "afinia", "--day", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "local replica portal" in out and "READY: all" in out
    for selector in (*SELECTORS, pages.MODAL_CLOSE):
        assert f": {selector}" in out, selector
    for label in pages.LABELS:
        assert f"label '{label}' (exact)" in out
    assert _not_found(out) == []
    # The replica the command started serves these records (its defaults: 20 a day, seed 0).
    records = ReplicaPortal(per_day=20).records("afinia", DAY)
    assert leaked(out, personal_search_terms(records)) == []
    assert list(artifacts.glob("portal-check-*")) == [recent] and not old.exists()


def test_not_ready_naming_the_renamed_selector(
    renamed_sgc_portal: tuple[ReplicaPortal, _RenamingProxy],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    portal, proxy = renamed_sgc_portal
    monkeypatch.setenv("OV_AIRE_PORTAL_URL", f"{proxy.base_url}/aire")
    monkeypatch.setenv("OV_AIRE_USER", USER)
    monkeypatch.setenv("OV_AIRE_PASSWORD", PASSWORD)
    assert cli.main(["portal-check", "--empresa", "aire", "--day", DAY.isoformat()]) == 1
    out = capsys.readouterr().out
    not_found = _not_found(out)
    assert len(not_found) == 1 and not_found[0].endswith(f"SGC input: {pages.SGC_INPUT}")
    assert not_found[0].startswith("missing") and "NOT READY: 1 of" in out
    assert "OV_AIRE_PORTAL_URL" in out and "local replica" not in out
    assert PASSWORD not in out and leaked(out, personal_search_terms(portal.records("aire", DAY))) == []
    # The screenshot of the detail as the probe saw it: private folder, private file.
    artifacts = data_dir / "artifacts"
    shots = list(artifacts.glob("portal-check-aire-*-detail.png"))
    assert len(shots) == 1 and str(shots[0]) in out
    assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700 and stat.S_IMODE(shots[0].stat().st_mode) == 0o600


def test_portal_check_screenshots_are_pruned_with_the_scrapers_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They show the portal's pages as the scraper's failure screenshots do: same retention
    (OV_RETENTION_DAYS); other files of the folder are not the pruning's business."""
    monkeypatch.setenv("OV_RETENTION_DAYS", "7")
    old_check = _aged(tmp_path / "portal-check-aire-20251001T000000-detail.png", 10)
    old_fail = _aged(tmp_path / "fail-aire-20251001-list-20251001T000000.png", 10)
    recent_check = _aged(tmp_path / "portal-check-aire-20251009T000000-login.png", 3)
    other = _aged(tmp_path / "notes-portal-check.png", 10)
    assert sorted(prune_artifacts(tmp_path)) == sorted([old_check, old_fail])
    assert sorted(tmp_path.iterdir()) == sorted([recent_check, other])


def test_the_probe_uses_only_public_names_of_the_page_code() -> None:
    """The probe runs the scraper's own page code; a private name of ``pages`` (or of any other
    ov_assets module) may change without notice, so the probe reaches for none."""
    tree = ast.parse(Path(probe.__file__).read_text(encoding="utf-8"))
    modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ov_assets")
        for alias in node.names
    }
    private = [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ov_assets")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == [] and imported == []
