"""A small real HTTP proxy in front of moto's S3 server that injects faults on chosen requests:
an error answer (503, 409 ConditionalRequestConflict) instead of forwarding, or the request
forwarded and its answer lost (the connection closed before any byte of it). boto3 talks to it
exactly as to S3 (``endpoint_url``), so the production code path, retries included, runs."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERROR_BODY = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code} (injected)</Message></Error>"
)
STATUS_CODES = {503: "ServiceUnavailable", 409: "ConditionalRequestConflict", 500: "InternalError"}


@dataclass
class Fault:
    """``action``: an HTTP status to answer with (503, 409, ...) or ``"lose_answer"``;
    ``times``: how many matching requests get it."""

    method: str
    action: int | str
    times: int = 1
    match: Callable[[str], bool] = lambda path: True


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.match(path):
                    fault.times -= 1
                    return fault
        return None


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._fault_for(self.command, self.path)
            if isinstance(fault, Fault) and isinstance(fault.action, int):
                payload = ERROR_BODY.format(code=STATUS_CODES.get(fault.action, str(fault.action))).encode()
                proxy.log.append((self.command, self.path, str(fault.action)))
                self.send_response(fault.action)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            status, headers, payload = self._forward(body)
            if fault is not None:  # lose_answer: done upstream, the client never hears of it
                proxy.log.append((self.command, self.path, "answer lost"))
                self.close_connection = True
                return
            proxy.log.append((self.command, self.path, str(status)))
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(name, value)
            # A HEAD's Content-Length is the object's size, not this (empty) answer's.
            length = {k.lower(): v for k, v in headers}.get("content-length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[tuple[str, FaultProxy]]:
    """(endpoint URL of the proxy, its fault plan) for the duration of the block."""
    proxy = FaultProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
