"""Real servers the alert tests send to: an HTTP server standing in for the Slack webhook and
for a heartbeat service (it records every POST and GET), an SMTP server (aiosmtpd), and the
decoding of what they received, so that personal values are searched in the text as read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from ov_assets.devkit.servers import free_port


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    pings: ClassVar[list[str]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        self._answer()

    def do_GET(self) -> None:
        type(self).pings.append(self.path)
        self._answer()

    def _answer(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass

    @classmethod
    def texts(cls) -> list[str]:
        return [r["json"]["text"] for r in list(cls.received)]


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Receiver", (Receiver,), {"received": [], "pings": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX", handler
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def decoded(self) -> list[tuple[str, str]]:
        """(subject, body) of every message as a reader sees them: the body decoded from its
        transfer encoding, headers from encoded words."""
        out = []
        for _, _, raw in self.messages:
            mail = message_from_bytes(raw)
            headers = "\n".join(str(make_header(decode_header(v))) for v in mail.values())
            subject = str(make_header(decode_header(mail["Subject"]))).replace("\r\n", "").replace("\n", "").strip()
            out.append((subject, headers + "\n" + mail.get_payload(decode=True).decode()))
        return out


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


def configure_channels(monkeypatch: pytest.MonkeyPatch, url: str | None, smtp_port: int | None) -> None:
    """Point the alert settings at the stand-in servers."""
    for name in ("OV_SLACK_WEBHOOK_URL", "OV_SMTP_HOST", "OV_SMTP_PORT", "OV_ALERT_TO"):
        monkeypatch.delenv(name, raising=False)
    if url:
        monkeypatch.setenv("OV_SLACK_WEBHOOK_URL", url)
    if smtp_port:
        monkeypatch.setenv("OV_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("OV_SMTP_PORT", str(smtp_port))
        monkeypatch.setenv("OV_ALERT_FROM", "ov-assets@example.org")
        monkeypatch.setenv("OV_ALERT_TO", "ops@example.org")
