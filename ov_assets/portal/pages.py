"""Page objects for the Oficina Virtual portal (CONTRACT §9): selectors, login, list, detail.

Only the selectors of CONTRACT §9 "What the real portal's DOM looked like" are used, so what works
against the replica has a chance against the real portal. Waits are Playwright auto-waits or
``wait_for_function`` conditions evaluated in the browser; there is no fixed sleep anywhere.

Errors raised here never carry credentials or personal data.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from ov_assets.contract import BUSINESS_FIELDS
from ov_assets.errors import OperatorError

LIST_PATH = "Listado-Radicación-PQR"
USER_INPUT = "input[name$='$txtUsername']"
PASSWORD_INPUT = "input[name$='$txtPassword']"
AFINIA_SUBMIT = "form button:not([type='button'])"
AIRE_SUBMIT = "a[id*='cmdLogin']"
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

# Installed in every page of the scraping context: remembers the last HTTP error of the app's
# own XHR/fetch calls, so a wait can stop at once when the portal answers 5xx.
ERROR_PROBE = """
(() => {
  window.__ovHttpError = 0;
  const mark = s => { if (s >= 500) window.__ovHttpError = s; };
  const open = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function(...a) {
    this.addEventListener('loadend', () => mark(this.status)); return open.apply(this, a);
  };
  const f = window.fetch;
  if (f) window.fetch = (...a) => f(...a).then(r => { mark(r.status); return r; });
})();
"""

# In-browser wait conditions. Each returns "login" when the app fell back to the login page
# (session expired), "error:<status>" after an HTTP 5xx, "ok:<...>" when the expected content is
# there, and a falsy value to keep waiting (Playwright re-evaluates on every animation frame).
_WAIT_JS = r"""
([kind, expected, pw, labelSel, radLabel, sgcSel, rangeSel]) => {
  if (document.querySelector(pw)) return 'login';
  if (window.__ovHttpError) { const s = window.__ovHttpError; window.__ovHttpError = 0; return 'error:' + s; }
  if (kind === 'detail') {
    for (const td of document.querySelectorAll(labelSel)) {
      if (td.textContent.replace(/\s+/g, ' ').trim() === radLabel) {
        const v = td.nextElementSibling;
        if (v && v.textContent.trim() === expected && document.querySelector(sgcSel)) return 'ok';
      }
    }
    return false;
  }
  const label = document.querySelector(rangeSel);
  if (!label) return false;
  const m = label.textContent.trim().match(/^(\d+)\s*-\s*(\d+)\s+de\s+(\d+)$/);
  if (!m) return false;
  if (expected !== '' && m[1] !== expected) return false;
  return 'ok:' + m[1] + ':' + m[2] + ':' + m[3];
}
"""

_READ_DETAIL_JS = r"""
([labelSel]) => Array.from(document.querySelectorAll(labelSel)).map(td => {
  const v = td.nextElementSibling;
  return [td.textContent, v && v.matches('td.ng-binding') ? v.textContent : null];
})
"""

_READ_ROWS_JS = r"""
([rowSel, cellSel, eyeSel]) => Array.from(document.querySelectorAll(rowSel)).map(tr => {
  const a = tr.querySelector(eyeSel);
  return {cells: Array.from(tr.querySelectorAll(cellSel)).map(td => td.textContent.trim()),
          href: a ? a.getAttribute('href') : null};
})
"""
_DETAIL_ID = re.compile(r"Detail/([^/?#]+)")


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


def norm_label(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def list_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/{LIST_PATH}#/List"


def detail_url(base_url: str, detail_id: str) -> str:
    return f"{base_url.rstrip('/')}/{LIST_PATH}#/Detail/{detail_id}"


async def _wait(page: Page, kind: str, expected: str, timeout_ms: float) -> str:
    try:
        handle = await page.wait_for_function(
            _WAIT_JS,
            arg=[kind, expected, PASSWORD_INPUT, DETAIL_LABEL, RADICADO_LABEL, SGC_INPUT, RANGE_LABEL],
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        raise PortalError(f"timed out waiting for the {kind} view") from None
    state = await handle.json_value()
    if state == "login":
        raise SessionExpired()
    if isinstance(state, str) and state.startswith("error:"):
        raise PortalError(f"portal answered HTTP {state[6:]}")
    return state


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
        try:
            await close.first.evaluate("el => el.click()", timeout=2000)
        except Exception:  # noqa: BLE001 - see above
            pass

    await page.add_locator_handler(page.locator(MODAL_CLOSE), dismiss)


async def login(page: Page, empresa: str, base_url: str, username: str, password: str, timeout_ms: float) -> None:
    """Log in on ``{base_url}/login`` and land on the list page. Raises LoginError (without
    any detail of the credentials or of Playwright's call log)."""
    setting = f"OV_{empresa.upper()}"
    try:
        await page.goto(f"{base_url.rstrip('/')}/login", timeout=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - DNS, refused, TLS, timeout: Playwright's text names the URL only
        raise LoginError(f"cannot reach the {empresa} portal's login page ({type(exc).__name__}): check "
                         f"{setting}_PORTAL_URL and that this machine may reach it (network, proxy)") from None
    try:
        await page.locator(USER_INPUT).fill(username, timeout=timeout_ms)
        await page.locator(PASSWORD_INPUT).fill(password, timeout=timeout_ms)
        submit = page.locator(AIRE_SUBMIT if empresa == "aire" else AFINIA_SUBMIT).first
        async with page.expect_navigation(timeout=timeout_ms):
            await submit.click(timeout=timeout_ms)
        if LIST_PATH not in _unquote(page.url):
            await page.goto(list_url(base_url), timeout=timeout_ms)
        if await page.locator(PASSWORD_INPUT).count():
            raise LoginError(f"the {empresa} portal refused the login: check {setting}_USER and {setting}_PASSWORD")
    except LoginError:
        raise
    except Exception as exc:  # noqa: BLE001 - never pass on a message that may hold a typed value
        raise LoginError(f"login to the {empresa} portal failed ({type(exc).__name__}): its login page is not "
                         "the one the scraper knows, or it did not answer in time; see the failure trace") from None


def _unquote(url: str) -> str:
    from urllib.parse import unquote

    return unquote(url)


async def open_list(page: Page, base_url: str, day: dt.date, timeout_ms: float) -> tuple[int, int, int]:
    """Open the list page, filter ``day`` (both dates), all statuses, search; return the range
    label's (first, last, total)."""
    await page.goto(list_url(base_url), timeout=timeout_ms)
    if await page.locator(PASSWORD_INPUT).count():
        raise SessionExpired()
    await close_modal(page)
    desde = page.locator(FILTER_DESDE)
    hasta = page.locator(FILTER_HASTA)
    # The app renders after load; wait for the filters (or the login page) to exist.
    await desde.or_(page.locator(PASSWORD_INPUT)).first.wait_for(state="attached", timeout=timeout_ms)
    if await page.locator(PASSWORD_INPUT).count():
        raise SessionExpired()
    if not await desde.is_visible():
        await page.get_by_text("Filtrar", exact=True).filter(visible=True).first.click(timeout=timeout_ms)
    await _select_all_statuses(page, timeout_ms)
    await desde.fill(day.isoformat(), timeout=timeout_ms)
    await hasta.fill(day.isoformat(), timeout=timeout_ms)
    await page.evaluate("window.__ovHttpError = 0")
    await page.locator(SEARCH_BUTTON).click(timeout=timeout_ms)
    return _range(await _wait(page, "list", "", timeout_ms))


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


def _range(state: str) -> tuple[int, int, int]:
    _, first, last, total = state.split(":")
    return int(first), int(last), int(total)


async def read_rows(page: Page, first: int) -> list[ListedPqr]:
    rows = await page.evaluate(_READ_ROWS_JS, [RESULT_ROWS, RESULT_CELL, EYE_LINK])
    out = []
    for i, row in enumerate(rows):
        m = _DETAIL_ID.search(row["href"] or "")
        cells = row["cells"]
        if not m or not cells:
            raise PortalError("a results row has no 'Ver PQR' link")
        out.append(ListedPqr(m.group(1), norm_label(cells[0]), norm_label(cells[2]) if len(cells) > 2 else "",
                             first + i))
    return out


async def next_page(page: Page, expected_first: int, timeout_ms: float) -> tuple[int, int, int]:
    """Click the next-page button and wait for the label to start at ``expected_first``."""
    await page.evaluate("window.__ovHttpError = 0")
    await page.locator(NEXT_BUTTON).first.click(timeout=timeout_ms)
    return _range(await _wait(page, "list", str(expected_first), timeout_ms))


async def open_detail(page: Page, base_url: str, item: ListedPqr, timeout_ms: float, fresh: bool) -> None:
    """Show the detail of ``item`` and wait until it is the right one (its radicado shows)."""
    url = detail_url(base_url, item.detail_id)
    if fresh or LIST_PATH not in _unquote(page.url):
        if page.url != "about:blank":
            # A goto to the URL the page already shows would change nothing: start clean.
            await page.goto("about:blank", timeout=timeout_ms)
        await page.goto(url, timeout=timeout_ms)
        if await page.locator(PASSWORD_INPUT).count():
            raise SessionExpired()
        await close_modal(page)
    else:
        # Same single-page app: change the route only, like clicking the eye link does.
        await page.evaluate("id => { window.__ovHttpError = 0; location.hash = '#/Detail/' + id; }", item.detail_id)
    await _wait(page, "detail", item.numero_radicado, timeout_ms)


async def read_detail(page: Page) -> tuple[dict[str, str], list[str]]:
    """Business fields by exact label, the SGC from its input; and the labels that are missing."""
    pairs = await page.evaluate(_READ_DETAIL_JS, [DETAIL_LABEL])
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
