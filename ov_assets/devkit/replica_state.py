"""The replica portal's data, sessions and faults: what its HTTP handler (``replica``) serves,
generated deterministically for (empresa, day, seed), with the faults that a test switches on."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ov_assets.core.contract import EMPRESAS
from ov_assets.devkit.generator import fake_pqr, pdf_bytes, seeded_rng

FIRST_DAY = dt.date(2020, 10, 1)  # both portals opened then
PAGE_SIZE = 10

PerDay = int | Callable[[str, dt.date], int] | dict


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
    """A file attached to a PQR, as its download answers."""

    name: str
    content_type: str
    data: bytes


@dataclass
class ReplicaPqr:
    """One PQR as the replica serves it: its internal id, its place in the day, its fields."""

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
        out.append(
            Attachment(fields["documento_prueba"], "application/pdf", pdf_bytes(f"Prueba {fields['numero_radicado']}"))
        )
    rng = seeded_rng(seed, "replica-attachment", empresa, day.isoformat(), index)
    if rng.random() < 0.35:
        out.append(
            Attachment(
                "foto_medidor.jpg",
                "image/jpeg",
                b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randint(1_000, 4_000)) + b"\xff\xd9",
            )
        )
    return out


class ReplicaState:
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
        self.stats: dict[str, int] = {
            "logins": 0,
            "login_failures": 0,
            "api": 0,
            "errors_500": 0,
            "expired": 0,
            "details": 0,
            "downloads": 0,
            "list_pages": 0,
        }
        self.overrides: dict[tuple[str, str], dict[str, str]] = {}
        self.requests: list[LoggedRequest] = []
        self._cache: dict[tuple[str, dt.date], list[ReplicaPqr]] = {}

    def count(self, empresa: str, day: dt.date) -> int:
        if callable(self.per_day):
            return int(self.per_day(empresa, day))
        if isinstance(self.per_day, dict):
            return int(self.per_day.get((empresa, day), self.per_day.get(day, self.per_day.get("default", 0))))
        return int(self.per_day)

    def day(self, empresa: str, day: dt.date) -> list[ReplicaPqr]:
        key = (empresa, day)
        with self.lock:
            base = self._cache.get(key)
            if base is None:
                base = []
                for i in range(1, self.count(empresa, day) + 1):
                    f = fake_pqr(empresa, day, i, self.seed)
                    base.append(
                        ReplicaPqr(detail_id_for(empresa, day, i), i, f, _attachments(empresa, day, i, self.seed, f))
                    )
                self._cache[key] = base
            out = []
            for p in base:
                over = self.overrides.get((empresa, p.fields["numero_radicado"]))
                out.append(replace(p, fields={**p.fields, **over}) if over else p)
        # The portal lists the newest first.
        return sorted(out, key=lambda p: (p.fields["fecha"], p.fields["numero_radicado"]), reverse=True)

    def listing(
        self, empresa: str, desde: dt.date, hasta: dt.date, estado: str, page: int
    ) -> tuple[int, list[ReplicaPqr]]:
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
                rows += day[max(0, start - total) : max(0, stop - total)]
                n = len(day)
            total += n
            d -= dt.timedelta(days=1)
        return total, rows[:PAGE_SIZE]

    def find(self, empresa: str, detail_id: int) -> ReplicaPqr | None:
        rest = detail_id - (EMPRESAS.index(empresa) + 1) * 10**9
        if rest <= 0:
            return None
        day = dt.date.fromordinal(rest // 1000)
        return next((p for p in self.day(empresa, day) if p.detail_id == detail_id), None)
