"""Page objects for the Oficina Virtual portal (CONTRACT §9): selectors, login, list, detail.

Only the selectors of CONTRACT §9 "What the real portal's DOM looked like" are used, and nothing
the page does not prove is assumed (§9 "How the real portal behaves"): the login control is found
whatever its tag, every search and page move waits for its own XHR's answer and for rows that
answer holds (the range label moves before the rows do), a detail waits for its own answer.
Waits are Playwright's or ``wait_for_function`` conditions evaluated in the browser (their scripts
are in ``page_scripts``); there is no fixed sleep here.

Errors raised here never carry credentials or personal data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import unicodedata
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from playwright.async_api import Locator, Page, Response
from playwright.async_api import TimeoutError as PlaywrightTimeout

from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.errors import OperatorError
from ov_assets.portal.page_scripts import (
    DETAIL_READY_JS,
    FIND_SUBMIT_JS,
    MARK_TOASTS_JS,
    READ_DETAIL_JS,
    READ_ROWS_JS,
    ROWS_READY_JS,
)

LIST_PATH = "Listado-Radicación-PQR"
USER_INPUT = "input[name$='$txtUsername']"
PASSWORD_INPUT = "input[name$='$txtPassword']"
MODAL_CLOSE = "#myModal a.closePopUp"
FILTER_ESTADO = "md-select[ng-model='filtros.Estado']"
FILTER_DESDE = "md-datepicker[ng-model='filtros.fechaInicial'] input"
FILTER_HASTA = "md-datepicker[ng-model='filtros.fechaFinal'] input"
SEARCH_BUTTON = "button[ng-click='Search()'][aria-label='Buscar']"
RESULT_ROWS = "tbody.md-body tr.md-row"
RESULT_CELL = "td.md-cell"
RANGE_LABEL = "div.label.ng-binding"
NEXT_BUTTON = "button[ng-click*='next()']"
EYE_LINK = "a.md-primary[tooltip='Ver PQR']"
DETAIL_LABEL = "td.text-td-label"
SGC_INPUT = "input[name='NumeroReclamoSGC']"
ATTACHMENT_LINK = "div.link-archivo[ng-click*='descargarAdjunto']"
TOAST = "md-toast, .md-toast"
DEBOUNCE_MS = 550  # Angular Material's md-datepicker input debounce (500 ms), and a margin
# Texts an "all statuses" option may carry.
ALL_STATUS_TEXTS = ("", "Todos", "Todas", "Todos los estados", "Seleccione")

# Detail label (exact, after whitespace collapsing and NFC) -> business field (CONTRACT §9).
LABELS: dict[str, str] = {
    "NIC": "nic",
    "Fecha": "fecha",
    "Documento de identidad": "documento_identidad",
    "Nombres y Apellidos": "nombres_apellidos",
    "Lectura": "lectura",
    "Correo electrónico": "correo_electronico",
    "Teléfono": "telefono",
    "Celular": "celular",
    "Tipo de PQR": "tipo_pqr",
    "Canal de respuesta": "canal_respuesta",
    "Documento/prueba": "documento_prueba",
    "Cuerpo de la reclamación": "cuerpo_reclamacion",
    "N° Radicado PQR": "numero_radicado",
    "Estado Solicitud": "estado_solicitud",
    "Finalizar": "finalizar",
    "Adjuntar archivo": "adjuntar_archivo",
    "Comentarios": "comentarios",
}
RADICADO_LABEL = "N° Radicado PQR"
REQUIRED_LABELS = ("N° Radicado PQR", "Fecha", "Estado Solicitud")
assert set(LABELS.values()) == set(BUSINESS_FIELDS) - {"numero_reclamo_sgc"}

_DETAIL_ID = re.compile(r"Detail/([^/?#]+)")
# Day formats a search request may carry its date filter in.
_DAY_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%Y%m%d")


class SessionExpired(Exception):
    """The portal sent the browser back to the login page."""


class PortalError(Exception):
    """The portal answered an error, or did not show what it should."""


class LoginError(OperatorError):
    """The portal cannot be reached, refused the credentials, or its login page is not what
    we know; the message names the setting to check (never a value typed into the page)."""


@dataclass(frozen=True)
class ListedPqr:
    detail_id: str
    numero_radicado: str
    estado: str
    position: int  # 1-based position in the day's listing
    fecha: str = ""  # as the list shows it


@dataclass(frozen=True)
class ListPage:
    """One page of results proven to come from its own XHR answer."""

    first: int
    last: int
    total: int
    rows: list[ListedPqr]
    filtered: bool = False  # the search request carried the day (the filter model had it)


def norm_label(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def list_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/{LIST_PATH}#/List"


def detail_url(base_url: str, detail_id: str) -> str:
    return f"{base_url.rstrip('/')}/{LIST_PATH}#/Detail/{detail_id}"


def _is_xhr(response: Response) -> bool:
    return response.request.resource_type in ("xhr", "fetch")


async def _answered(page: Page, action: Callable[[], Awaitable[object]], timeout_ms: float, what: str) -> Response:
    """Run ``action`` and return the answer of the XHR it caused: 401 is an expired session,
    any other error status a PortalError (the app shows a toast and keeps the old view)."""
    try:
        async with page.expect_response(_is_xhr, timeout=timeout_ms) as info:
            await action()
        response = await info.value
    except PlaywrightTimeout:
        raise PortalError(f"the portal did not answer the {what} in time") from None
    if response.status == 401:
        raise SessionExpired()
    if not response.ok:
        raise PortalError(f"the portal answered HTTP {response.status} to the {what}")
    return response


async def _wait_js(page: Page, script: str, arg: list[Any], timeout_ms: float, what: str) -> str:
    try:
        handle = await page.wait_for_function(script, arg=arg, timeout=timeout_ms)
    except PlaywrightTimeout:
        raise PortalError(f"the {what} did not show what the portal answered") from None
    state = await handle.json_value()
    if state == "login":
        raise SessionExpired()
    if state == "toast":
        raise PortalError(f"the portal showed an error toast on the {what}")
    return str(state)


async def close_modal(page: Page) -> None:
    """Close Afinia's promotional modal when it shows (Air-e has none)."""
    close = page.locator(MODAL_CLOSE)
    if await close.count() and await close.first.is_visible():
        # A DOM click, not a Playwright action: the locator handler below would intercept an
        # action on the very element it is about to close.
        await close.first.evaluate("el => el.click()")
        await page.locator("#myModal").wait_for(state="hidden")


async def install_modal_handler(page: Page) -> None:
    """Whenever the modal shows up before an action, close it first: a DOM click (no
    actionability wait), and never an error. Playwright raises a handler's error into whatever
    call happens to run then (a ``page.close()`` in a retry, say), far from its cause; a modal
    that stays open makes the action itself time out, which the retries are for."""

    async def dismiss(close: Locator) -> None:
        with suppress(Exception):  # never an error here: see above
            await close.first.evaluate("el => el.click()", timeout=2000)

    await page.add_locator_handler(page.locator(MODAL_CLOSE), dismiss)


async def login(page: Page, empresa: str, base_url: str, username: str, password: str, timeout_ms: float) -> None:
    """Log in on ``{base_url}/login`` through whatever control the page offers, and prove it:
    success is the list page showing, refusal the login page coming back. Raises LoginError
    naming the setting to check (never a typed value or Playwright's call log)."""
    setting = f"OV_{empresa.upper()}"
    try:
        await page.goto(f"{base_url.rstrip('/')}/login", timeout=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - DNS, refused, TLS, timeout: Playwright's text names the URL only
        raise LoginError(
            f"cannot reach the {empresa} portal's login page ({type(exc).__name__}): check "
            f"{setting}_PORTAL_URL and that this machine may reach it (network, proxy)"
        ) from None
    unknown = (
        f"the {empresa} portal's login page is not the one the scraper knows (no username/password "
        f"inputs or no login control at {setting}_PORTAL_URL/login), or it did not answer in time; "
        "see the failure trace"
    )
    try:
        for selector, value in ((USER_INPUT, username), (PASSWORD_INPUT, password)):
            field = page.locator(selector).first
            await field.fill("", timeout=timeout_ms)
            await field.press_sequentially(value, timeout=timeout_ms)
        if not await page.evaluate(FIND_SUBMIT_JS, PASSWORD_INPUT):
            raise LoginError(unknown)
        async with page.expect_navigation(timeout=timeout_ms):
            await page.locator("[data-ov-submit]").click(timeout=timeout_ms)
        await page.wait_for_load_state(timeout=timeout_ms)
        if await page.locator(PASSWORD_INPUT).count():
            raise LoginError(f"the {empresa} portal refused the login: check {setting}_USER and {setting}_PASSWORD")
        if LIST_PATH not in unquote(page.url):
            await page.goto(list_url(base_url), timeout=timeout_ms)
        await (
            page.locator(SEARCH_BUTTON)
            .or_(page.locator(PASSWORD_INPUT))
            .first.wait_for(state="attached", timeout=timeout_ms)
        )
        if await page.locator(PASSWORD_INPUT).count():
            raise LoginError(
                f"the {empresa} portal sent the login page back after logging in: check "
                f"{setting}_USER and {setting}_PASSWORD, and that the account may open the PQR list"
            )
    except LoginError:
        raise
    except Exception as exc:  # noqa: BLE001 - never pass on a message that may hold a typed value
        raise LoginError(f"login to the {empresa} portal failed ({type(exc).__name__}): {unknown}") from None


async def open_list(page: Page, base_url: str, day: dt.date, timeout_ms: float) -> None:
    """Open the list page and type ``day`` into both date filters, all statuses."""
    await page.goto(list_url(base_url), timeout=timeout_ms)
    desde = page.locator(FILTER_DESDE)
    # The app renders after load; wait for the filters (or the login page) to exist.
    await desde.or_(page.locator(PASSWORD_INPUT)).first.wait_for(state="attached", timeout=timeout_ms)
    if await page.locator(PASSWORD_INPUT).count():
        raise SessionExpired()
    await close_modal(page)
    if not await desde.is_visible():
        await page.get_by_text("Filtrar", exact=True).filter(visible=True).first.click(timeout=timeout_ms)
    await _select_all_statuses(page, timeout_ms)
    await desde.fill(day.isoformat(), timeout=timeout_ms)
    await page.locator(FILTER_HASTA).fill(day.isoformat(), timeout=timeout_ms)
    # md-datepicker hands typed text to the filter model after DEBOUNCE_MS without input; a
    # search before that would list every day (a heavy query on the live portal). Let that
    # window pass in the page's own clock; the search request then proves the model took it.
    typed = await page.evaluate("performance.now()")
    await page.wait_for_function(f"t => performance.now() - t >= {DEBOUNCE_MS:d}", arg=typed, timeout=timeout_ms)


def _carries_day(response: Response, day: dt.date) -> bool:
    """Whether the search request sent ``day`` as both bounds (the typed dates had reached the
    filter model; a search launched before the debounce sends the previous value)."""
    request = response.request
    sent = unquote(request.url) + " " + unquote(request.post_data or "")
    return any(sent.count(day.strftime(f)) >= 2 for f in _DAY_FORMATS)


async def search(page: Page, day: dt.date, timeout_ms: float) -> ListPage:
    """Click "Buscar" and return page 1 as its own XHR answered it."""
    response = await _answered(page, page.locator(SEARCH_BUTTON).click, timeout_ms, "search")
    result = await _rows_of(page, response, 1, timeout_ms)
    return ListPage(result.first, result.last, result.total, result.rows, _carries_day(response, day))


async def next_page(page: Page, expected_first: int, timeout_ms: float) -> ListPage:
    """Click the next-page button and return the page that starts at ``expected_first``, as
    its own XHR answered it."""
    response = await _answered(page, page.locator(NEXT_BUTTON).first.click, timeout_ms, "next page")
    return await _rows_of(page, response, expected_first, timeout_ms)


async def _rows_of(page: Page, response: Response, expected_first: int, timeout_ms: float) -> ListPage:
    body = await response.text()
    state = await _wait_js(
        page,
        ROWS_READY_JS,
        [body, expected_first, PASSWORD_INPUT, RESULT_ROWS, RESULT_CELL, RANGE_LABEL],
        timeout_ms,
        "results table",
    )
    _, first, last, total = state.split(":")
    rows = await page.evaluate(READ_ROWS_JS, [RESULT_ROWS, RESULT_CELL, EYE_LINK])
    out = []
    for i, row in enumerate(rows):
        m = _DETAIL_ID.search(row["href"] or "")
        cells = row["cells"]
        if not m or len(cells) < 3:
            raise PortalError("a results row has no 'Ver PQR' link or fewer columns than radicado, fecha, estado")
        out.append(
            ListedPqr(m.group(1), norm_label(cells[0]), norm_label(cells[2]), int(first) + i, norm_label(cells[1]))
        )
    return ListPage(int(first), int(last), int(total), out)


async def _select_all_statuses(page: Page, timeout_ms: float) -> None:
    select = page.locator(FILTER_ESTADO)
    current = norm_label(await select.text_content(timeout=timeout_ms))
    if current in ALL_STATUS_TEXTS:
        return
    await select.click(timeout=timeout_ms)
    options = page.locator("md-option")
    for i in range(await options.count()):
        opt = options.nth(i)
        if (await opt.get_attribute("value") or "") == "" or norm_label(await opt.text_content()) in ALL_STATUS_TEXTS:
            await opt.click(timeout=timeout_ms)
            return
    raise PortalError("the status filter has no 'all' option")


async def open_detail(page: Page, base_url: str, item: ListedPqr, timeout_ms: float, fresh: bool) -> None:
    """Show the detail of ``item`` and prove it: its values on screen (its radicado, a fecha and
    a status) after an XHR answered. Whatever the detail API looks like, an XHR answering 401 is
    an expired session and one answering 5xx (or an error toast) a PortalError."""
    url = detail_url(base_url, item.detail_id)
    if fresh or LIST_PATH not in unquote(page.url):

        async def action() -> None:
            if page.url != "about:blank":
                # A goto to the URL the page already shows would change nothing: start clean.
                await page.goto("about:blank", timeout=timeout_ms)
            await page.goto(url, timeout=timeout_ms)
            if await page.locator(PASSWORD_INPUT).count():
                raise SessionExpired()  # sent to the login page: no detail request will come
            await close_modal(page)  # Afinia's modal would cover the detail in its PDF
    else:

        async def action() -> None:
            # Same single-page app: change the route only, like clicking the eye link does.
            await page.evaluate("id => { location.hash = '#Detail/' + id; }", item.detail_id)

    answered: list[Response] = []
    failed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_response(response: Response) -> None:
        if not _is_xhr(response):
            return
        answered.append(response)
        if (response.status == 401 or response.status >= 500) and not failed.done():
            failed.set_result(response.status)

    await page.evaluate(MARK_TOASTS_JS, TOAST)
    page.on("response", on_response)
    try:
        await action()
        shown = asyncio.ensure_future(
            _wait_js(
                page,
                DETAIL_READY_JS,
                [
                    item.numero_radicado,
                    PASSWORD_INPUT,
                    DETAIL_LABEL,
                    RADICADO_LABEL,
                    "Fecha",
                    "Estado Solicitud",
                    TOAST,
                ],
                timeout_ms,
                "detail view",
            )
        )
        waiting: set[asyncio.Future[Any]] = {shown, failed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            shown.cancel()
            if failed.result() == 401:
                raise SessionExpired()
            raise PortalError(f"the portal answered HTTP {failed.result()} to the detail")
        await shown
        if not any(r.ok for r in answered):
            # Values already on screen (from the list, say) are no proof: wait for the answer.
            try:
                await page.wait_for_event("response", lambda r: _is_xhr(r) and r.ok, timeout=timeout_ms)
            except PlaywrightTimeout:
                raise PortalError("the detail view showed values before any answer of the portal") from None
    finally:
        page.remove_listener("response", on_response)


async def read_detail(page: Page) -> tuple[dict[str, str], list[str]]:
    """Business fields by exact label, the SGC from its input; and the labels that are missing."""
    pairs = await page.evaluate(READ_DETAIL_JS, [DETAIL_LABEL])
    values: dict[str, str] = {}
    for label, value in pairs:
        field = LABELS.get(norm_label(label))
        if field and field not in values and value is not None:
            values[field] = value.strip()
    missing = [label for label, f in LABELS.items() if f not in values]
    for label in REQUIRED_LABELS:
        if label in missing:
            raise PortalError(f"the detail page has no '{label}' label (did the portal change?)")
    record = {f: values.get(f, "") for f in BUSINESS_FIELDS if f != "numero_reclamo_sgc"}
    record["numero_reclamo_sgc"] = (await page.locator(SGC_INPUT).first.input_value()).strip()
    return {f: record[f] for f in BUSINESS_FIELDS}, missing


def attachment_links(page: Page) -> Locator:
    return page.locator(ATTACHMENT_LINK)
