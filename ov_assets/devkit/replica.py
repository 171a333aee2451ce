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
password come from ``OV_REPLICA_USER`` / ``OV_REPLICA_PASSWORD`` (default ``demo`` / ``demo``:
the replica guards nothing).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import os
import random
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Union

from ov_assets.core.contract import EMPRESA_DISPLAY, EMPRESAS, today_bogota
from ov_assets.devkit.generator import _rng, fake_pqr, pdf_bytes

LIST_PATH = "Listado-Radicación-PQR"
USER_INPUT = "dnn$ctr$Login$Login_DotNetNuke.Membership.GatewayMembershipProvider$txtUsername"
PASSWORD_INPUT = "dnn$ctr$Login$Login_DotNetNuke.Membership.GatewayMembershipProvider$txtPassword"
ENCODED_FLAG = "dnn$ctr$Login$Login_DNN$hfPasswordEncoded"
FIRST_DAY = dt.date(2020, 10, 1)  # both portals opened then
PAGE_SIZE = 10
ESTADOS = ("Radicado", "En trámite", "Pendiente", "Finalizado")

# Detail labels, in the order the page shows them. Decoys (labels that contain a real label as
# a substring, or that a substring match of a real label would hit) come first on purpose.
DETAIL_LABELS: tuple[tuple[str, str | None], ...] = (
    ("Fecha de respuesta", None),
    ("Fecha límite de respuesta", None),
    ("N° Radicado PQR", "numero_radicado"),
    ("Estado Solicitud", "estado_solicitud"),
    ("Fecha", "fecha"),
    ("Tipo de PQR", "tipo_pqr"),
    ("Correo electrónico", "correo_electronico"),
    ("NIC", "nic"),
    ("Documento de identidad", "documento_identidad"),
    ("Nombres y Apellidos", "nombres_apellidos"),
    ("Lectura", "lectura"),
    ("Teléfono", "telefono"),
    ("Celular", "celular"),
    ("Canal de respuesta", "canal_respuesta"),
    ("Documento/prueba", "documento_prueba"),
    ("Cuerpo de la reclamación", "cuerpo_reclamacion"),
    ("Estado Solicitud SGC", None),
    ("Finalizar", "finalizar"),
    ("Adjuntar archivo", "adjuntar_archivo"),
    ("Comentarios", "comentarios"),
    ("Comentarios internos", None),
)
# Results table columns (CONTRACT §9), field per column.
LIST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Radicado", "numero_radicado"),
    ("Fecha", "fecha"),
    ("Estado", "estado_solicitud"),
    ("Tipo PQR", "tipo_pqr"),
    ("NIC", "nic"),
    ("Nombres", "nombres_apellidos"),
    ("Teléfono", "telefono"),
    ("Celular", "celular"),
    ("Correo", "correo_electronico"),
    ("Documento", "documento_identidad"),
    ("Canal", "canal_respuesta"),
)

PerDay = Union[int, Callable[[str, dt.date], int], dict]


@dataclass(frozen=True)
class Faults:
    """Faults to inject into the JSON API (list and detail XHRs). Counters and the random draw
    are seeded, so runs are reproducible.

    delay_s: added to every API response (slow portal).
    fail_every: every Nth API request answers HTTP 500 (0: never).
    fail_rate: that share of API requests and attachment downloads answers HTTP 500 (busy days).
    expire_every: every Nth API request finds its session expired (HTTP 401: the app goes back
        to the login page) (0: never).
    session_ttl_s: a session expires that many seconds after its login (0: never), like the real
        portal's session timeout.
    fail_radicados: radicados whose detail always answers HTTP 500.
    ignore_date_filter: the list answers every day whatever dates the search sends (a portal
        whose filter never takes).
    debounce_ms: the datepicker's debounce; Angular Material's is 500 ms, a slow browser makes
        it longer.
    unstable_order: each page from the second on repeats the previous page's last row in place
        of its own first (paging over a sort that is not stable), so one PQR is never listed.
    """

    delay_s: float = 0.0
    fail_every: int = 0
    fail_rate: float = 0.0
    expire_every: int = 0
    session_ttl_s: float = 0.0
    fail_radicados: frozenset[str] = frozenset()
    ignore_date_filter: bool = False
    debounce_ms: int = 500
    unstable_order: bool = False


class LoggedRequest(NamedTuple):
    """One request to the portal's JSON API or downloads (what politeness limits count)."""

    at: float  # epoch seconds (time.time()), comparable across processes
    empresa: str
    method: str
    path: str  # path and query, as requested


@dataclass
class Attachment:
    name: str
    content_type: str
    data: bytes


@dataclass
class _Pqr:
    detail_id: int
    index: int
    fields: dict[str, str]
    attachments: list[Attachment] = field(default_factory=list)


def detail_id_for(empresa: str, day: dt.date, index: int) -> int:
    """The portal's internal id of a PQR (not its radicado)."""
    return (EMPRESAS.index(empresa) + 1) * 10**9 + day.toordinal() * 1000 + index


def _attachments(empresa: str, day: dt.date, index: int, seed: int, fields: dict[str, str]) -> list[Attachment]:
    out = []
    if fields["documento_prueba"]:
        out.append(Attachment(fields["documento_prueba"], "application/pdf",
                              pdf_bytes(f"Prueba {fields['numero_radicado']}")))
    rng = _rng(seed, "replica-attachment", empresa, day.isoformat(), index)
    if rng.random() < 0.35:
        out.append(Attachment("foto_medidor.jpg", "image/jpeg",
                              b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randint(1_000, 4_000)) + b"\xff\xd9"))
    return out


class _State:
    """Data, sessions and fault counters, shared by the handler threads."""

    def __init__(self, per_day: PerDay, seed: int, username: str, password: str, faults: Faults) -> None:
        self.per_day = per_day
        self.seed = seed
        self.username = username
        self.password = password
        self.faults = faults
        self.fault_rng = random.Random(seed)
        self.lock = threading.Lock()
        self.sessions: dict[str, tuple[str, float]] = {}  # token -> (empresa, created)
        self.api_requests = 0
        self.stats: dict[str, int] = {"logins": 0, "login_failures": 0, "api": 0, "errors_500": 0,
                                      "expired": 0, "details": 0, "downloads": 0, "list_pages": 0}
        self.overrides: dict[tuple[str, str], dict[str, str]] = {}
        self.requests: list[LoggedRequest] = []
        self._cache: dict[tuple[str, dt.date], list[_Pqr]] = {}

    def count(self, empresa: str, day: dt.date) -> int:
        if callable(self.per_day):
            return int(self.per_day(empresa, day))
        if isinstance(self.per_day, dict):
            return int(self.per_day.get((empresa, day), self.per_day.get(day, self.per_day.get("default", 0))))
        return int(self.per_day)

    def day(self, empresa: str, day: dt.date) -> list[_Pqr]:
        key = (empresa, day)
        with self.lock:
            base = self._cache.get(key)
            if base is None:
                base = []
                for i in range(1, self.count(empresa, day) + 1):
                    f = fake_pqr(empresa, day, i, self.seed)
                    base.append(_Pqr(detail_id_for(empresa, day, i), i, f,
                                     _attachments(empresa, day, i, self.seed, f)))
                self._cache[key] = base
            out = []
            for p in base:
                over = self.overrides.get((empresa, p.fields["numero_radicado"]))
                out.append(replace(p, fields={**p.fields, **over}) if over else p)
        # The portal lists the newest first.
        return sorted(out, key=lambda p: (p.fields["fecha"], p.fields["numero_radicado"]), reverse=True)

    def listing(self, empresa: str, desde: dt.date, hasta: dt.date, estado: str, page: int) -> tuple[int, list[_Pqr]]:
        """(total, the page's rows) of the PQRs filed from ``desde`` to ``hasta``, newest first.
        Days are generated only when the page reaches them, so an unfiltered search (every day
        since the portal opened) stays cheap."""
        start, stop = (page - 1) * PAGE_SIZE, page * PAGE_SIZE
        total, rows = 0, []
        d = hasta
        while d >= desde:
            n = self.count(empresa, d)
            if n and (estado or (total < stop and total + n > start)):
                day = self.day(empresa, d)
                if estado:
                    day = [p for p in day if p.fields["estado_solicitud"] == estado]
                rows += day[max(0, start - total): max(0, stop - total)]
                n = len(day)
            total += n
            d -= dt.timedelta(days=1)
        return total, rows[:PAGE_SIZE]

    def find(self, empresa: str, detail_id: int) -> _Pqr | None:
        rest = detail_id - (EMPRESAS.index(empresa) + 1) * 10**9
        if rest <= 0:
            return None
        day = dt.date.fromordinal(rest // 1000)
        return next((p for p in self.day(empresa, day) if p.detail_id == detail_id), None)


class ReplicaPortal:
    """The replica portal on 127.0.0.1, served from a background thread."""

    def __init__(self, per_day: PerDay = 25, seed: int = 0, username: str = "demo", password: str = "demo",
                 faults: Faults | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.state = _State(per_day, seed, username, password, faults or Faults())
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ReplicaPortal":
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

    def __enter__(self) -> "ReplicaPortal":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server, "replica not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
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
            return self._html(_index_page(), 200 if not empresa else 404)
        if not rest:
            return self._redirect(f"/{empresa}/login")
        if rest == ["login"]:
            return self._html(_login_page(empresa, _return_url(empresa, query), error=False))
        if rest == [LIST_PATH]:
            if not self._session(empresa):
                back = urllib.parse.quote(urllib.parse.urlsplit(self.path).path, safe="")
                return self._redirect(f"/{empresa}/login?returnurl={back}")
            return self._html(_app_page(empresa, self.state.faults.debounce_ms))
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
        user, password = form.get(USER_INPUT, ""), _posted_password(empresa, form)
        ok = password is not None and secrets.compare_digest(user.encode(), self.state.username.encode()) and (
            secrets.compare_digest(password.encode(), self.state.password.encode()))
        back = _return_url(empresa, query)
        if not ok:
            with self.state.lock:
                self.state.stats["login_failures"] += 1
            return self._html(_login_page(empresa, back, error=True), 200)
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
            return self._json({
                "id": pqr.detail_id,
                "fields": pqr.fields,
                "adjuntos": [{"nombre": a.name, "n": i} for i, a in enumerate(pqr.attachments)],
            })
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
            return self._send(200, att.data, att.content_type,
                              {"Content-Disposition": f'attachment; filename="{att.name}"'})
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
        self._json({
            "total": total,
            "page": page,
            "rows": [{"id": p.detail_id, **{f: p.fields[f] for _, f in LIST_COLUMNS}} for p in chunk],
        })


# ----------------------------------------------------------------------------------------
# Pages
# ----------------------------------------------------------------------------------------
_STYLE = """
body{font-family:sans-serif;margin:0}
#myModal{position:fixed;inset:0;background:rgba(0,0,0,.6);z-index:1000;display:flex;
  align-items:center;justify-content:center}
#myModal .modal-content{background:#fff;padding:2em;width:60%}
.hidden{display:none!important}
md-select{display:inline-block;border-bottom:1px solid #999;min-width:10em;cursor:pointer}
.md-select-menu-container{position:absolute;background:#fff;border:1px solid #999;z-index:50}
md-option{display:block;padding:.3em 1em;cursor:pointer}
td.md-cell{padding:2px 6px;border-bottom:1px solid #ddd}
td.text-td-label{font-weight:bold;padding-right:1em}
div.link-archivo{color:#06c;cursor:pointer;text-decoration:underline}
md-toast{position:fixed;bottom:1em;left:1em;background:#333;color:#fff;padding:1em;z-index:2000}
.md-datepicker-calendar-pane{position:absolute;background:#fff;border:1px solid #999;z-index:60;padding:.5em}
td.md-calendar-date{cursor:pointer;padding:2px 6px}
md-progress-linear{display:block;height:4px;background:#3f51b5}
"""


def _return_url(empresa: str, query: dict[str, list[str]]) -> str:
    """The ``returnurl`` the login page was opened with, when it is a path of this portal."""
    back = (query.get("returnurl") or [""])[0]
    return back if back.startswith(f"/{empresa}/") and "//" not in back else ""


def _posted_password(empresa: str, form: dict[str, str]) -> str | None:
    """The password of a login postback, or None when the post is not the page's own script
    (a plain form submit): Air-e's link posts back ``cmdLogin``; Afinia's button posts back
    with the password base64-encoded and the encoded flag set."""
    if "Login" not in form.get("__EVENTTARGET", ""):
        return None
    password = form.get(PASSWORD_INPUT, "")
    if empresa != "afinia":
        return password
    if form.get(ENCODED_FLAG) != "1":
        return None
    try:
        return base64.b64decode(password, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _index_page() -> str:
    links = "".join(f'<li><a href="/{e}/login">{EMPRESA_DISPLAY[e]}</a></li>' for e in EMPRESAS)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Replica OV</title></head><body><ul>{links}</ul></body></html>"


def _login_page(empresa: str, back: str, error: bool) -> str:
    """The DotNetNuke login page. Its submit control is script-driven: Afinia's is a
    ``<button type="button">`` whose handler base64-encodes the password, sets a hidden flag and
    posts back; Air-e's is a ``javascript:__doPostBack`` link. A plain form submit is refused."""
    display = html.escape(EMPRESA_DISPLAY[empresa])
    action = f"/{empresa}/login" + (f"?returnurl={urllib.parse.quote(back, safe='')}" if back else "")
    if empresa == "afinia":
        submit = ('<button type="button" class="btn btn-primary" id="dnn_ctr_Login_Login_DNN_btnIngresar" '
                  'onclick="return ovLogin(this)">Iniciar sesión</button>')
    else:
        submit = ('<a id="dnn_ctr_Login_Login_DNN_cmdLogin" class="dnnPrimaryAction" '
                  'href="javascript:__doPostBack(\'dnn$ctr$Login$Login_DNN$cmdLogin\',\'\')">Ingresar</a>')
    msg = ('<div class="dnnFormMessage dnnFormValidationSummary">Usuario o contraseña incorrectos</div>'
           if error else "")
    return f"""<!doctype html><html lang="es"><head><meta charset="utf-8"><title>Oficina Virtual {display} - Ingreso</title>
<style>{_STYLE}</style></head><body>
<form method="post" action="{html.escape(action)}" id="Form" autocomplete="off">
<input type="hidden" name="__EVENTTARGET" id="__EVENTTARGET" value="">
<input type="hidden" name="__EVENTARGUMENT" id="__EVENTARGUMENT" value="">
<input type="hidden" name="__VIEWSTATE" id="__VIEWSTATE" value="{secrets.token_urlsafe(32)}">
<input type="hidden" name="{ENCODED_FLAG}" id="dnn_ctr_Login_Login_DNN_hfPasswordEncoded" value="">
<h1>Oficina Virtual {display}</h1>{msg}
<div class="dnnFormItem"><label>Usuario</label>
<input name="{USER_INPUT}" type="text" id="dnn_ctr_Login_Login_DNN_txtUsername"></div>
<div class="dnnFormItem"><label>Contraseña</label>
<input name="{PASSWORD_INPUT}" type="password" id="dnn_ctr_Login_Login_DNN_txtPassword"></div>
{submit}
</form>
<script>
function __doPostBack(target, argument) {{
  const form = document.getElementById('Form');
  form.__EVENTTARGET.value = target; form.__EVENTARGUMENT.value = argument; form.submit();
}}
function ovLogin(button) {{
  const pw = document.getElementById('dnn_ctr_Login_Login_DNN_txtPassword');
  const bytes = new TextEncoder().encode(pw.value);
  pw.value = btoa(String.fromCharCode(...bytes));
  document.getElementById('dnn_ctr_Login_Login_DNN_hfPasswordEncoded').value = '1';
  __doPostBack('dnn$ctr$Login$Login_DNN$btnIngresar', '');
  return false;
}}
</script>
</body></html>"""


def _app_page(empresa: str, debounce_ms: int = 500) -> str:
    """The list/detail single-page app, behaving like the real AngularJS Material one (CONTRACT
    §9): a 500 ms debounce between a typed date and the filter model (the calendar pane applies
    at once), a range label that moves at once while rows wait for their XHR, toasts that leave
    the old rows on screen, ``#Detail/<id>`` rewritten to ``#/Detail/<id>``, and the login page
    with ``returnurl`` when an XHR answers 401."""
    display = html.escape(EMPRESA_DISPLAY[empresa])
    modal = ""
    if empresa == "afinia":
        modal = """<div id="myModal" class="modal" role="dialog"><div class="modal-content">
<a class="closePopUp" href="javascript:void(0)" onclick="document.getElementById('myModal').classList.add('hidden')">&times;</a>
<h2>¡Nuevo! Paga tu factura en línea</h2><p>Promoción de la temporada.</p></div></div>"""
    estados = "".join(f'<md-option value="{html.escape(e)}">{html.escape(e)}</md-option>' for e in ESTADOS)
    columns = "".join(f'<th class="md-column">{html.escape(c)}</th>' for c, _ in LIST_COLUMNS)
    config = json.dumps({
        "api": f"/{empresa}/api",
        "login": f"/{empresa}/login",
        "columns": [f for _, f in LIST_COLUMNS],
        "labels": [[label, f] for label, f in DETAIL_LABELS],
    }, ensure_ascii=False)
    picker = """<md-datepicker ng-model="filtros.{model}"><button class="md-datepicker-button md-icon-button" type="button" aria-label="Abrir calendario">&#128197;</button><div class="md-datepicker-input-container"><input class="md-datepicker-input" type="text" placeholder="YYYY-MM-DD"></div></md-datepicker>"""
    return f"""<!doctype html><html lang="es" ng-app="ovApp"><head><meta charset="utf-8">
<title>Oficina Virtual {display}</title><style>{_STYLE}</style></head><body>
{modal}
<div id="app" ng-view></div>
<script type="text/template" id="tpl-list">
<md-content class="md-padding">
 <h2>Listado Radicación PQR</h2>
 <div class="accordion"><div class="accordion-heading" ng-click="toggleFiltros()" role="button">Filtrar</div>
  <div class="accordion-body hidden" id="filtros">
   <label>Estado</label>
   <md-select ng-model="filtros.Estado" aria-label="Estado" tabindex="0"><md-select-value class="md-select-value"><span>Todos</span></md-select-value></md-select>
   <div class="md-select-menu-container hidden"><md-select-menu><md-content>
     <md-option value="">Todos</md-option>{estados}</md-content></md-select-menu></div>
   <label>Fecha inicial</label>
   {picker.format(model="fechaInicial")}
   <label>Fecha final</label>
   {picker.format(model="fechaFinal")}
   <button class="md-raised md-primary md-button" ng-click="Search()" aria-label="Buscar" type="button">Buscar</button>
  </div></div>
 <md-progress-linear md-mode="indeterminate" class="hidden"></md-progress-linear>
 <md-table-container><table md-table class="md-table"><thead md-head class="md-head"><tr md-row>{columns}<th></th></tr></thead>
 <tbody md-body class="md-body"></tbody></table></md-table-container>
 <md-table-pagination class="md-table-pagination"><div class="label ng-binding"></div>
  <button class="md-icon-button md-button" ng-click="$pagination.previous()" aria-label="Previous page" type="button">&lsaquo;</button>
  <button class="md-icon-button md-button" ng-click="$pagination.next()" aria-label="Next page" type="button">&rsaquo;</button>
 </md-table-pagination>
</md-content>
</script>
<script>
const CFG = {config};
const DEBOUNCE_MS = {int(debounce_ms)};  // Angular Material's md-datepicker input debounce (500)
const app = document.getElementById('app');
const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}})[c]);
// The filter model (what a search sends) and the table's state survive route changes.
const filtros = {{Estado: '', fechaInicial: '', fechaFinal: ''}};
const query = {{page: 1}};
let total = 0, rows = [], searched = false, gen = 0;

async function api(path) {{
  const r = await fetch(CFG.api + path, {{credentials: 'same-origin', headers: {{'Accept': 'application/json'}}}});
  if (r.status === 401) {{
    window.location.href = CFG.login + '?returnurl=' + encodeURIComponent(location.pathname);
    throw new Error('session');
  }}
  if (!r.ok) {{ toast('Ocurrió un error al consultar la información. Intente nuevamente.'); throw new Error('http ' + r.status); }}
  return r.json();
}}
function toast(msg) {{
  const t = document.createElement('md-toast'); t.className = 'md-toast';
  t.innerHTML = '<div class="md-toast-content"><span class="md-toast-text">' + esc(msg) + '</span></div>';
  document.body.appendChild(t); setTimeout(() => t.remove(), 3000);
}}
function setLabel() {{
  const label = app.querySelector('div.label.ng-binding'); if (!label) return;
  const first = total ? (query.page - 1) * 10 + 1 : 0, last = Math.min(query.page * 10, total);
  label.textContent = first + ' - ' + last + ' de ' + total;
}}
function renderRows() {{
  const body = app.querySelector('tbody.md-body'); if (!body) return;
  body.innerHTML = rows.map(r => '<tr md-row class="md-row">' +
    CFG.columns.map(c => '<td md-cell class="md-cell">' + esc(r[c]) + '</td>').join('') +
    '<td md-cell class="md-cell"><a class="md-primary md-icon-button" tooltip="Ver PQR" href="#Detail/' + r.id + '">&#128065;</a></td></tr>').join('');
}}
function progress(on) {{ const p = app.querySelector('md-progress-linear'); if (p) p.classList.toggle('hidden', !on); }}
function isoDay(d) {{ return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0'); }}
function datepicker(el, key) {{
  const input = el.querySelector('input');
  input.value = filtros[key];
  let timer = null;
  input.addEventListener('input', () => {{
    clearTimeout(timer);
    timer = setTimeout(() => {{
      const v = input.value.trim();
      const ok = v === '' || (/^\d{{4}}-\d{{2}}-\d{{2}}$/.test(v) && !isNaN(new Date(v + 'T00:00:00')));
      el.classList.toggle('md-datepicker-invalid', !ok);
      if (ok) filtros[key] = v;
    }}, DEBOUNCE_MS);
  }});
  el.querySelector('.md-datepicker-button').onclick = () => {{
    const open = document.querySelector('.md-datepicker-calendar-pane'); if (open) open.remove();
    const base = filtros[key] ? new Date(filtros[key] + 'T00:00:00') : new Date();
    calendar(el, key, input, new Date(base.getFullYear(), base.getMonth(), 1));
  }};
}}
function calendar(el, key, input, month) {{
  const pane = document.createElement('div'); pane.className = 'md-datepicker-calendar-pane md-pane-open';
  const first = month.getDay(), days = new Date(month.getFullYear(), month.getMonth() + 1, 0).getDate();
  let cells = '<td></td>'.repeat(first);
  for (let d = 1; d <= days; d++) {{
    const day = new Date(month.getFullYear(), month.getMonth(), d);
    cells += '<td class="md-calendar-date" data-timestamp="' + day.getTime() + '" id="md-' + isoDay(day) + '"><span class="md-calendar-date-selection-indicator">' + d + '</span></td>';
    if ((first + d) % 7 === 0) cells += '</tr><tr>';
  }}
  const name = month.toLocaleDateString('es-CO', {{month: 'long', year: 'numeric'}});
  pane.innerHTML = '<div class="md-calendar-month-label">' + esc(name) + '</div>' +
    '<button type="button" class="md-calendar-previous-month" aria-label="Mes anterior">&lsaquo;</button>' +
    '<button type="button" class="md-calendar-next-month" aria-label="Mes siguiente">&rsaquo;</button>' +
    '<md-calendar><table class="md-calendar"><tbody><tr>' + cells + '</tr></tbody></table></md-calendar>';
  el.appendChild(pane);
  pane.querySelector('.md-calendar-previous-month').onclick = () => {{ pane.remove(); calendar(el, key, input, new Date(month.getFullYear(), month.getMonth() - 1, 1)); }};
  pane.querySelector('.md-calendar-next-month').onclick = () => {{ pane.remove(); calendar(el, key, input, new Date(month.getFullYear(), month.getMonth() + 1, 1)); }};
  pane.querySelectorAll('td.md-calendar-date').forEach(td => td.onclick = () => {{
    const v = isoDay(new Date(Number(td.dataset.timestamp)));
    filtros[key] = v; input.value = v; el.classList.remove('md-datepicker-invalid'); pane.remove();
  }});
}}
function renderList() {{
  app.innerHTML = document.getElementById('tpl-list').innerHTML;
  app.querySelector('.accordion-heading').onclick = () => document.getElementById('filtros').classList.toggle('hidden');
  const sel = app.querySelector('md-select'), menu = app.querySelector('.md-select-menu-container');
  sel.onclick = () => menu.classList.toggle('hidden');
  menu.querySelectorAll('md-option').forEach(o => o.onclick = () => {{
    filtros.Estado = o.getAttribute('value'); sel.querySelector('span').textContent = o.textContent;
    menu.classList.add('hidden');
  }});
  app.querySelectorAll('md-datepicker').forEach(el => datepicker(el, el.getAttribute('ng-model').split('.')[1]));
  // The label follows the pagination model at once; the rows only when the XHR answers.
  app.querySelector("button[ng-click='Search()']").onclick = () => {{ query.page = 1; setLabel(); load(); }};
  app.querySelector("button[ng-click*='next()']").onclick = () => {{
    if (query.page * 10 < total) {{ query.page += 1; setLabel(); load(); }}
  }};
  app.querySelector("button[ng-click*='previous()']").onclick = () => {{
    if (query.page > 1) {{ query.page -= 1; setLabel(); load(); }}
  }};
  setLabel();
  if (searched) load();
}}
async function load() {{
  const my = ++gen; searched = true; progress(true);
  const q = new URLSearchParams({{desde: filtros.fechaInicial, hasta: filtros.fechaFinal, estado: filtros.Estado, page: query.page}});
  try {{
    const data = await api('/pqr?' + q.toString());
    if (my !== gen || !location.hash.startsWith('#/List')) return;
    total = data.total; rows = data.rows; renderRows(); setLabel();
  }} catch (e) {{ /* the toast said it; the previous rows stay on screen */ }}
  finally {{ if (my === gen) progress(false); }}
}}
async function renderDetail(id) {{
  const my = ++gen;
  // A route change rebuilds the view: labels now, values when the detail's own XHR answers.
  const labelRows = CFG.labels.map(([label, key]) => '<tr><td class="text-td-label">' + esc(label) + '</td><td class="ng-binding" data-key="' + (key || '') + '"></td></tr>').join('');
  app.innerHTML = '<md-content class="md-padding"><h2>Detalle PQR</h2><a href="#/List">Volver</a><md-progress-circular></md-progress-circular>' +
    '<table class="table-detalle"><tbody>' + labelRows +
    '<tr><td class="text-td-label">N° Reclamo SGC</td><td><input name="NumeroReclamoSGC" type="text" readonly></td></tr></tbody></table>' +
    '<h3>Archivos adjuntos</h3><div class="adjuntos"></div></md-content>';
  let data;
  try {{ data = await api('/pqr/' + encodeURIComponent(id)); }} catch (e) {{ return; }}
  if (my !== gen) return;
  const f = data.fields;
  app.querySelectorAll('td.ng-binding').forEach(td => {{
    const key = td.dataset.key, label = td.previousElementSibling.textContent;
    td.textContent = key ? (f[key] ?? '') : (label.startsWith('Fecha') ? '' : 'N/A');
  }});
  app.querySelector("input[name='NumeroReclamoSGC']").value = f.numero_reclamo_sgc;
  app.querySelector('.adjuntos').innerHTML = data.adjuntos.map(a => '<div class="link-archivo" ng-click="descargarAdjunto(item)" data-n="' + a.n + '">' + esc(a.nombre) + '</div>').join('');
  app.querySelector('md-progress-circular').remove();
  app.querySelectorAll('div.link-archivo').forEach(d => d.onclick = () => {{
    const a = document.createElement('a'); a.href = CFG.api + '/adjunto/' + data.id + '/' + d.dataset.n;
    a.download = ''; document.body.appendChild(a); a.click(); a.remove();
  }});
}}
function route() {{
  const m = location.hash.match(/^#\/?Detail\/(\d+)/);
  if (m) {{
    if (!location.hash.startsWith('#/')) {{ history.replaceState(null, '', '#/Detail/' + m[1]); }}
    renderDetail(m[1]);
  }} else {{
    if (!location.hash.startsWith('#/List')) {{ history.replaceState(null, '', '#/List'); }}
    renderList();
  }}
}}
window.addEventListener('hashchange', route);
// Like the real app, the view appears only after the scripts have "bootstrapped".
setTimeout(route, 30);
</script></body></html>"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the replica Oficina Virtual portal.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--per-day", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    portal = ReplicaPortal(per_day=args.per_day, seed=args.seed, port=args.port, host=args.host,
                           username=os.environ.get("OV_REPLICA_USER", "demo"),
                           password=os.environ.get("OV_REPLICA_PASSWORD", "demo"))
    portal.start()
    print(f"replica portal: {portal.url('afinia')} and {portal.url('aire')} (login page: <url>/login)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        portal.stop()


if __name__ == "__main__":
    main()
