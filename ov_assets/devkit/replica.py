"""A local replica of the Oficina Virtual portal (CONTRACT §9), for tests, benchmarks and the demo.

It reproduces the DOM of CONTRACT §9 for both empresa variants and, always, how the real portal
behaves (§9 "How the real portal behaves"): script-driven DotNetNuke logins, 401 XHRs after a
session expires, the 500 ms datepicker debounce, a range label that moves before the rows, toasts
that leave the old view, the ``#Detail`` route rewrite; so a scraper that passes here has proven
what it reads. Data is deterministic (``generator.fake_pqr`` for (empresa, day, seed)); faults
(HTTP 500s, session expiry, slow answers, ...) are switched on with ``Faults``, or by POSTing them
to ``/__admin/faults`` of a standalone replica; ``request_log()`` (``/__admin/requests``) lists
every API and download request.

    with ReplicaPortal(per_day=37, username="u", password="p") as portal:
        portal.url("afinia")   # http://127.0.0.1:PORT/afinia  (login page: {url}/login)

Run alone (for the demo): ``python -m ov_assets.devkit.replica --port 8765``; the user and
password are ``--user`` / ``--password`` (default ``demo`` / ``demo``: the replica guards nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ov_assets.core.contract import EMPRESAS, today_bogota
from ov_assets.devkit.replica_pages import (
    ENCODED_FLAG,
    LIST_COLUMNS,
    PASSWORD_INPUT,
    USER_INPUT,
    app_page,
    index_page,
    login_page,
    posted_password,
    return_url,
)
from ov_assets.devkit.replica_state import (
    FIRST_DAY,
    Attachment,
    Faults,
    LoggedRequest,
    PerDay,
    ReplicaState,
    detail_id_for,
)

# What tests and the demo import from here, though it lives in the two modules beside.
__all__ = [
    "ENCODED_FLAG",
    "LIST_PATH",
    "PASSWORD_INPUT",
    "USER_INPUT",
    "Attachment",
    "Faults",
    "LoggedRequest",
    "ReplicaPortal",
    "detail_id_for",
    "main",
]

LIST_PATH = "Listado-Radicación-PQR"


class ReplicaPortal:
    """The replica portal on 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        per_day: PerDay = 25,
        seed: int = 0,
        username: str = "demo",
        password: str = "demo",
        faults: Faults | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.state = ReplicaState(per_day, seed, username, password, faults or Faults())
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ReplicaPortal:
        state = self.state

        class Handler(_Handler):
            pass

        Handler.state = state
        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ov-replica", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ReplicaPortal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server, "replica not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, empresa: str) -> str:
        """The portal base URL of an empresa (the login page is ``{url}/login``)."""
        if empresa not in EMPRESAS:
            raise ValueError(f"unknown empresa {empresa!r}")
        return f"{self.base_url}/{empresa}"

    def records(self, empresa: str, day: dt.date) -> list[dict[str, str]]:
        """The business fields of the day's PQRs as the portal currently shows them."""
        return [dict(p.fields) for p in self.state.day(empresa, day)]

    def attachments(self, empresa: str, day: dt.date) -> dict[str, list[Attachment]]:
        """radicado -> its attachments."""
        return {p.fields["numero_radicado"]: list(p.attachments) for p in self.state.day(empresa, day)}

    def set_fields(self, empresa: str, numero_radicado: str, **values: str) -> None:
        """Change a PQR as the portal would (e.g. ``estado_solicitud="Finalizado"``)."""
        with self.state.lock:
            self.state.overrides.setdefault((empresa, numero_radicado), {}).update(values)

    def set_faults(self, faults: Faults) -> None:
        with self.state.lock:
            self.state.faults = faults
            self.state.api_requests = 0

    def request_log(self) -> list[LoggedRequest]:
        """Every API, detail and download request so far, in arrival order (also served as JSON
        by a standalone replica at ``/__admin/requests``)."""
        with self.state.lock:
            return list(self.state.requests)

    @property
    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.stats)


# ----------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    state: ReplicaState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, body: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, body.encode("utf-8"), "text/html; charset=utf-8", headers)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(302, b"", "text/plain", {"Location": location, **(headers or {})})

    def _session(self, empresa: str) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get(f"ov_session_{empresa}")
        if not morsel:
            return None
        token = morsel.value
        with self.state.lock:
            entry = self.state.sessions.get(token)
            if not entry or entry[0] != empresa:
                return None
            ttl = self.state.faults.session_ttl_s
            if ttl and time.monotonic() - entry[1] > ttl:
                del self.state.sessions[token]
                self.state.stats["expired"] += 1
                return None
        return token

    def _split(self) -> tuple[str, list[str], dict[str, list[str]]]:
        parsed = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        empresa = parts[0] if parts else ""
        return empresa, parts[1:], urllib.parse.parse_qs(parsed.query)

    # -- routes ------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        empresa, rest, query = self._split()
        if empresa == "__admin" and rest == ["requests"]:
            with self.state.lock:
                logged = [r._asdict() for r in self.state.requests]
            return self._json({"requests": logged})
        if empresa == "__admin":
            return self._json({"stats": self.state.stats})
        if empresa not in EMPRESAS:
            return self._html(index_page(), 200 if not empresa else 404)
        if not rest:
            return self._redirect(f"/{empresa}/login")
        if rest == ["login"]:
            return self._html(login_page(empresa, return_url(empresa, query), error=False))
        if rest == [LIST_PATH]:
            if not self._session(empresa):
                back = urllib.parse.quote(urllib.parse.urlsplit(self.path).path, safe="")
                return self._redirect(f"/{empresa}/login?returnurl={back}")
            return self._html(app_page(empresa, self.state.faults.debounce_ms))
        if rest and rest[0] == "api":
            return self._api(empresa, rest[1:], query)
        return self._html("<h1>404</h1>", 404)

    def do_POST(self) -> None:
        empresa, rest, query = self._split()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if empresa == "__admin" and rest == ["faults"]:
            spec = json.loads(body or b"{}")
            spec["fail_radicados"] = frozenset(spec.get("fail_radicados", ()))
            spec.setdefault("session_ttl_s", self.state.faults.session_ttl_s)
            with self.state.lock:
                self.state.faults = Faults(**spec)
                self.state.api_requests = 0
            return self._json({"ok": True})
        if empresa == "__admin" and rest == ["expire"]:
            with self.state.lock:
                self.state.sessions.clear()
            return self._json({"ok": True})
        if empresa not in EMPRESAS or rest != ["login"]:
            return self._html("<h1>404</h1>", 404)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        user, password = form.get(USER_INPUT, ""), posted_password(empresa, form)
        ok = (
            password is not None
            and secrets.compare_digest(user.encode(), self.state.username.encode())
            and (secrets.compare_digest(password.encode(), self.state.password.encode()))
        )
        back = return_url(empresa, query)
        if not ok:
            with self.state.lock:
                self.state.stats["login_failures"] += 1
            return self._html(login_page(empresa, back, error=True), 200)
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.sessions[token] = (empresa, time.monotonic())
            self.state.stats["logins"] += 1
        target = back or f"/{empresa}/{urllib.parse.quote(LIST_PATH)}#/List"
        self._redirect(target, {"Set-Cookie": f"ov_session_{empresa}={token}; Path=/{empresa}; HttpOnly; SameSite=Lax"})

    def _api(self, empresa: str, rest: list[str], query: dict[str, list[str]]) -> None:
        state = self.state
        with state.lock:
            state.requests.append(LoggedRequest(time.time(), empresa, self.command, self.path))
        if rest and rest[0] == "adjunto":
            # Downloads need a session and fail at the busy-day rate, not by the counters.
            if not self._session(empresa):
                return self._json({"error": "session expired"}, 401)
            with state.lock:
                unlucky = state.faults.fail_rate and state.fault_rng.random() < state.faults.fail_rate
            if unlucky:
                return self._json({"error": "internal error"}, 500)
            return self._download(empresa, rest)
        with state.lock:
            state.api_requests += 1
            n = state.api_requests
            faults = state.faults
            state.stats["api"] += 1
        if faults.delay_s:
            time.sleep(faults.delay_s)
        token = self._session(empresa)
        if not token:
            return self._json({"error": "session expired"}, 401)
        if faults.expire_every and n % faults.expire_every == 0:
            with state.lock:
                state.sessions.pop(token, None)
                state.stats["expired"] += 1
            return self._json({"error": "session expired"}, 401)
        with state.lock:
            unlucky = faults.fail_rate and state.fault_rng.random() < faults.fail_rate
        if unlucky or (faults.fail_every and n % faults.fail_every == 0):
            with state.lock:
                state.stats["errors_500"] += 1
            return self._json({"error": "internal error"}, 500)

        if rest == ["pqr"]:
            return self._api_list(empresa, query)
        if len(rest) == 2 and rest[0] == "pqr" and rest[1].isdigit():
            pqr = state.find(empresa, int(rest[1]))
            if pqr is None:
                return self._json({"error": "not found"}, 404)
            if pqr.fields["numero_radicado"] in faults.fail_radicados:
                with state.lock:
                    state.stats["errors_500"] += 1
                return self._json({"error": "internal error"}, 500)
            with state.lock:
                state.stats["details"] += 1
            return self._json(
                {
                    "id": pqr.detail_id,
                    "fields": pqr.fields,
                    "adjuntos": [{"nombre": a.name, "n": i} for i, a in enumerate(pqr.attachments)],
                }
            )
        return self._json({"error": "not found"}, 404)

    def _download(self, empresa: str, rest: list[str]) -> None:
        state = self.state
        if len(rest) == 3 and rest[1].isdigit() and rest[2].isdigit():
            pqr = state.find(empresa, int(rest[1]))
            k = int(rest[2])
            if pqr is None or k >= len(pqr.attachments):
                return self._json({"error": "not found"}, 404)
            att = pqr.attachments[k]
            with state.lock:
                state.stats["downloads"] += 1
            return self._send(
                200, att.data, att.content_type, {"Content-Disposition": f'attachment; filename="{att.name}"'}
            )
        return self._json({"error": "not found"}, 404)

    def _api_list(self, empresa: str, query: dict[str, list[str]]) -> None:
        def arg(name: str, default: str = "") -> str:
            return (query.get(name) or [default])[0]

        # An empty date means no bound: every day since the portal opened, up to today.
        dated = not self.state.faults.ignore_date_filter
        try:
            desde = dt.date.fromisoformat(arg("desde")) if arg("desde") and dated else FIRST_DAY
            hasta = dt.date.fromisoformat(arg("hasta")) if arg("hasta") and dated else today_bogota()
            page = max(1, int(arg("page", "1")))
        except ValueError:
            return self._json({"error": "bad filter"}, 400)
        total, chunk = self.state.listing(empresa, desde, hasta, arg("estado"), page)
        if self.state.faults.unstable_order and page > 1 and chunk:
            # Pages cut from an order that is not stable: the previous page's last row again,
            # in place of this page's first.
            chunk[0] = self.state.listing(empresa, desde, hasta, arg("estado"), page - 1)[1][-1]
        with self.state.lock:
            self.state.stats["list_pages"] += 1
        self._json(
            {
                "total": total,
                "page": page,
                "rows": [{"id": p.detail_id, **{f: p.fields[f] for _, f in LIST_COLUMNS}} for p in chunk],
            }
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the replica Oficina Virtual portal.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--per-day", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--user", default="demo", help="the login the replica accepts")
    ap.add_argument("--password", default="demo", help="its password (a test value, never a real one)")
    args = ap.parse_args(argv)
    portal = ReplicaPortal(
        per_day=args.per_day, seed=args.seed, port=args.port, host=args.host, username=args.user, password=args.password
    )
    portal.start()
    print(f"replica portal: {portal.url('afinia')} and {portal.url('aire')} (login page: <url>/login)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        portal.stop()


if __name__ == "__main__":
    main()
