"""``ov-assets portal-check``: the first-contact probe of an empresa's Oficina Virtual.

An operator runs it before enabling schedules against the live portal. It walks what the scraper
walks, once, with the scraper's own selectors and page code (``pages``): log in, open the list,
filter a day, read a page (and the next one), open one detail; it downloads nothing (no
attachment, no PDF) and prints one line per CONTRACT §9 selector and behaviour, found / missing /
different, with timings. Values read from the portal are never printed or logged: only counts,
selectors and the names of settings. When something the scraper needs is not there, a screenshot
(inputs masked) goes to the private artifacts folder. Exit status 0 only when everything the
scraper needs was found.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

from playwright.async_api import Browser, Page, async_playwright

from ov_assets.core.contract import BOGOTA, parse_fecha
from ov_assets.core.file_names import format_ts
from ov_assets.fs import private_dir
from ov_assets.portal import naming, pages
from ov_assets.portal.pages import ListPage, LoginError, PortalError, SessionExpired
from ov_assets.portal.politeness import portal_key
from ov_assets.portal.probe_checks import DIFFERENT, FOUND, MISSING, UNVERIFIED, Check, ProbeReport
from ov_assets.portal.scraper import (
    CHROMIUM_ARGS,
    FILTER_ATTEMPTS,
    ScraperConfig,
    prune_artifacts,
    resolve_browser_path,
)

T = TypeVar("T")
log = logging.getLogger("ov_assets.portal.probe")


class _Probe:
    """The checks of one run, and the page state they were taken on."""

    def __init__(self, config: ScraperConfig, day: dt.date, artifacts_dir: Path) -> None:
        self.config, self.day, self.artifacts_dir = config, day, artifacts_dir
        self.timeout_ms = config.timeout_s * 1000
        self.checks: list[Check] = []
        self.screenshots: list[Path] = []

    def add(
        self,
        area: str,
        what: str,
        selector: str,
        status: str,
        ms: int | None = None,
        required: bool = True,
        note: str = "",
    ) -> Check:
        check = Check(area, what, selector, status, ms, required, note)
        self.checks.append(check)
        return check

    async def present(self, page: Page, area: str, what: str, selector: str, required: bool = True) -> bool:
        """One line for one selector: found when the page holds it now."""
        count = await page.locator(selector).count()
        self.add(
            area,
            what,
            selector,
            FOUND if count else MISSING,
            required=required,
            note=f"{count} on the page" if count > 1 else "",
        )
        return bool(count)

    async def timed(self, step: Callable[[], Awaitable[T]]) -> tuple[T | None, BaseException | None, int]:
        started = time.monotonic()
        try:
            value, error = await step(), None
        except Exception as exc:  # noqa: BLE001 - reported as a line, by class or our own message
            value, error = None, exc
        return value, error, round((time.monotonic() - started) * 1000)

    async def screenshot(self, page: Page, what: str) -> None:
        """The page as the probe saw it, inputs masked, into the private artifacts folder."""
        private_dir(self.artifacts_dir)
        stamp = format_ts(dt.datetime.now(BOGOTA).replace(tzinfo=None))
        path = self.artifacts_dir / f"portal-check-{self.config.empresa}-{stamp}-{what}.png"
        try:
            await page.screenshot(path=str(path), mask=[page.locator("input")], full_page=True)
            path.chmod(naming.FILE_MODE)
            self.screenshots.append(path)
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the findings
            log.warning("portal-check: could not take a screenshot of %s (%s)", what, type(exc).__name__)

    def failed_since(self, mark: int) -> bool:
        return not all(c.ok for c in self.checks[mark:])


def _reason(error: BaseException) -> str:
    """Our own portal errors say what failed without values; anything else only by its class."""
    if isinstance(error, (LoginError, PortalError)):
        return str(error)
    return "session expired" if isinstance(error, SessionExpired) else type(error).__name__


async def _login_page(probe: _Probe, page: Page) -> bool:
    cfg = probe.config
    mark = len(probe.checks)
    _, error, ms = await probe.timed(lambda: page.goto(f"{cfg.base_url.rstrip('/')}/login", timeout=probe.timeout_ms))
    if error is not None:
        probe.add(
            "login",
            "login page answers",
            "{url}/login",
            MISSING,
            ms,
            note=f"{type(error).__name__}: check OV_{cfg.empresa.upper()}_PORTAL_URL and the network",
        )
        return False
    probe.add("login", "login page answers", "{url}/login", FOUND, ms)
    await probe.present(page, "login", "username input", pages.USER_INPUT)
    await probe.present(page, "login", "password input", pages.PASSWORD_INPUT)
    control = await page.evaluate(
        f"""pw => ({pages.FIND_SUBMIT_JS})(pw) && (() => {{
              const el = document.querySelector('[data-ov-submit]');
              const href = el.getAttribute('href') || '';
              return el.tagName.toLowerCase() + (el.type ? ' type=' + el.type : '') +
                     (href.startsWith('javascript:__doPostBack') ? ' javascript:__doPostBack' : '');
           }})()""",
        pages.PASSWORD_INPUT,
    )
    probe.add(
        "login",
        "login control (script-driven button or __doPostBack link)",
        "beside the password input",
        FOUND if control else MISSING,
        note=control or "",
    )
    if probe.failed_since(mark):
        await probe.screenshot(page, "login")
    return not probe.failed_since(mark)


async def _login(probe: _Probe, page: Page) -> bool:
    cfg = probe.config
    _, error, ms = await probe.timed(
        lambda: pages.login(page, cfg.empresa, cfg.base_url, cfg.username, cfg.password, probe.timeout_ms)
    )
    probe.add(
        "login",
        "login reaches the PQR list",
        pages.LIST_PATH,
        FOUND if error is None else DIFFERENT,
        ms,
        note="" if error is None else _reason(error),
    )
    if error is not None:
        await probe.screenshot(page, "login-result")
    return error is None


async def _expiry(probe: _Probe, browser: Browser) -> None:
    """Without a session the list sends the browser to the login page (what the scraper takes
    for an expired session)."""
    context = await browser.new_context(timezone_id="America/Bogota")
    try:
        page = await context.new_page()

        async def step() -> bool:
            await page.goto(pages.list_url(probe.config.base_url), timeout=probe.timeout_ms)
            await page.locator(pages.PASSWORD_INPUT).first.wait_for(state="attached", timeout=probe.timeout_ms)
            return True

        _, error, ms = await probe.timed(step)
        probe.add(
            "session",
            "no session: the list goes to the login page",
            pages.PASSWORD_INPUT,
            FOUND if error is None else DIFFERENT,
            ms,
            note="" if error is None else _reason(error),
        )
    finally:
        await context.close()


async def _search(probe: _Probe, page: Page) -> tuple[ListPage | None, int]:
    """Search the day as the scraper does: until the search request carries the typed day (the
    datepicker applies typed text only after its debounce)."""
    listing: ListPage | None = None
    for attempt in range(1, FILTER_ATTEMPTS + 1):
        listing = await pages.search(page, probe.day, probe.timeout_ms)
        if listing.filtered:
            return listing, attempt
        await asyncio.sleep(0.25 * attempt)  # give the debounce time, then search again
    return listing, 0


async def _list(probe: _Probe, page: Page) -> ListPage | None:
    cfg = probe.config
    mark = len(probe.checks)
    if cfg.empresa == "afinia":
        await probe.present(page, "list", "promotional modal's close link", pages.MODAL_CLOSE, required=False)
    await pages.close_modal(page)
    # The app renders after load; what is still absent then is reported below, selector by selector.
    await probe.timed(
        lambda: (
            page.locator(pages.FILTER_DESDE)
            .or_(page.locator(pages.SEARCH_BUTTON))
            .first.wait_for(state="attached", timeout=probe.timeout_ms)
        )
    )
    filtrar = await page.get_by_text("Filtrar", exact=True).count()
    probe.add("list", "'Filtrar' accordion", "text 'Filtrar'", FOUND if filtrar else MISSING)
    for what, selector in (
        ("status select", pages.FILTER_ESTADO),
        ("date from", pages.FILTER_DESDE),
        ("date to", pages.FILTER_HASTA),
        ("'Buscar' button", pages.SEARCH_BUTTON),
    ):
        await probe.present(page, "list", what, selector)
    if probe.failed_since(mark):
        await probe.screenshot(page, "filters")
        return None
    found: tuple[ListPage | None, int] | None = None
    _, error, ms = await probe.timed(lambda: pages.open_list(page, cfg.base_url, probe.day, probe.timeout_ms))
    if error is None:
        found, error, search_ms = await probe.timed(lambda: _search(probe, page))
        ms += search_ms
    probe.add(
        "list",
        f"search of {probe.day} answers (XHR)",
        pages.SEARCH_BUTTON,
        FOUND if error is None else DIFFERENT,
        ms,
        note="" if error is None else _reason(error),
    )
    if error is not None or found is None:
        await probe.screenshot(page, "search")
        return None
    listing, attempts = found
    if listing is None:
        return None
    probe.add(
        "list",
        "typed date reaches the search request (500 ms debounce)",
        pages.FILTER_DESDE,
        FOUND if attempts else DIFFERENT,
        required=False,
        note=f"after {attempts} search(es)" if attempts else "not seen in the request: rows are checked instead",
    )
    probe.add("list", "range label '1 - 10 de N'", pages.RANGE_LABEL, FOUND, note=f"N = {listing.total}")
    await _rows(probe, page, listing)
    if probe.failed_since(mark):
        await probe.screenshot(page, "list")
    return listing


async def _rows(probe: _Probe, page: Page, listing: ListPage) -> None:
    if not listing.total:
        for what, selector in (("result rows", pages.RESULT_ROWS), ("'Ver PQR' eye link", pages.EYE_LINK)):
            probe.add(
                "list",
                what,
                selector,
                UNVERIFIED,
                note=f"no PQR listed on {probe.day}: run again with --day of a day that has PQRs",
            )
        return
    await probe.present(page, "list", "result rows", pages.RESULT_ROWS)
    await probe.present(page, "list", "result cells", f"{pages.RESULT_ROWS} {pages.RESULT_CELL}")
    eyes = await page.locator(f"{pages.RESULT_ROWS} {pages.EYE_LINK}").count()
    probe.add(
        "list",
        "'Ver PQR' eye link to #Detail/<id>",
        pages.EYE_LINK,
        FOUND if eyes == len(listing.rows) else MISSING,
        note=f"{eyes} of {len(listing.rows)} rows",
    )
    fechas = [parse_fecha(row.fecha) for row in listing.rows]
    on_day = sum(1 for f in fechas if f is not None and f.date() == probe.day)
    probe.add(
        "list",
        f"every listed row is of {probe.day} (2nd column)",
        pages.RESULT_CELL,
        FOUND if on_day == len(fechas) else DIFFERENT,
        note=f"{on_day} of {len(fechas)} rows",
    )
    if not await probe.present(page, "list", "next-page button", pages.NEXT_BUTTON):
        return
    if listing.last >= listing.total:
        probe.add(
            "list",
            "next page shows new rows",
            pages.NEXT_BUTTON,
            UNVERIFIED,
            required=False,
            note="one page only on this day",
        )
        return
    nxt, error, ms = await probe.timed(lambda: pages.next_page(page, listing.last + 1, probe.timeout_ms))
    new = nxt is not None and not {r.detail_id for r in nxt.rows} & {r.detail_id for r in listing.rows}
    probe.add(
        "list",
        "next page shows new rows (after its XHR)",
        pages.NEXT_BUTTON,
        FOUND if new else DIFFERENT,
        ms,
        note=f"rows {nxt.first}-{nxt.last}" if nxt is not None else _reason(error) if error else "",
    )


async def _detail(probe: _Probe, page: Page, listing: ListPage) -> None:
    cfg = probe.config
    mark = len(probe.checks)
    item = listing.rows[0]
    # As the eye link does: a route change inside the app, which rewrites #Detail to #/Detail.
    _, error, ms = await probe.timed(lambda: pages.open_detail(page, cfg.base_url, item, probe.timeout_ms, False))
    probe.add(
        "detail",
        "detail answers (XHR) and shows its radicado",
        "#Detail/<id>",
        FOUND if error is None else DIFFERENT,
        ms,
        note="" if error is None else _reason(error),
    )
    if error is None:
        rewritten = "#/Detail/" in unquote(page.url)
        probe.add(
            "detail",
            "route #Detail/<id> rewritten to #/Detail/<id>",
            "location.hash",
            FOUND if rewritten else DIFFERENT,
            required=False,
        )
        labels = {pages.norm_label(t) for t in await page.locator(pages.DETAIL_LABEL).all_text_contents()}
        probe.add("detail", "label cells", pages.DETAIL_LABEL, FOUND if labels else MISSING)
        for label in pages.LABELS:
            probe.add("detail", f"label '{label}' (exact)", pages.DETAIL_LABEL, FOUND if label in labels else MISSING)
        await probe.present(page, "detail", "SGC input", pages.SGC_INPUT)
        links = await page.locator(pages.ATTACHMENT_LINK).count()
        probe.add(
            "detail",
            "attachment links (not downloaded)",
            pages.ATTACHMENT_LINK,
            FOUND if links else UNVERIFIED,
            required=False,
            note=f"{links} on this PQR" if links else "none on this PQR",
        )
    if probe.failed_since(mark):
        await probe.screenshot(page, "detail")


async def _run(probe: _Probe) -> None:
    cfg = probe.config
    async with async_playwright() as pw:
        exe = resolve_browser_path(cfg.browser_path, pw.chromium.executable_path)
        browser = await pw.chromium.launch(executable_path=exe, headless=cfg.headless, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(accept_downloads=False, timezone_id="America/Bogota")
            page = await context.new_page()
            page.set_default_timeout(probe.timeout_ms)
            if not await _login_page(probe, page) or not await _login(probe, page):
                return
            await _expiry(probe, browser)
            listing = await _list(probe, page)
            if listing is None or not listing.rows:
                if listing is not None:
                    probe.add("detail", "a detail", "#Detail/<id>", UNVERIFIED, note="no PQR listed to open")
                return
            await _detail(probe, page, listing)
        finally:
            # §9 behaviours a probe must not provoke on the live portal, said rather than skipped.
            probe.add(
                "login",
                "refused login comes back as the login page",
                pages.PASSWORD_INPUT,
                UNVERIFIED,
                required=False,
                note="not probed: a wrong password may lock the account",
            )
            probe.add(
                "faults",
                "failed XHR shows a toast, old rows stay",
                pages.TOAST,
                UNVERIFIED,
                required=False,
                note="not probed: cannot be provoked; the scraper retries on the HTTP status",
            )
            await browser.close()


def probe_portal(config: ScraperConfig, day: dt.date, artifacts_dir: Path) -> ProbeReport:
    """Probe ``config``'s portal on ``day``: every check, screenshot and the time taken
    (``portal_check`` prints them; ``ov-assets doctor`` sums them up in one line)."""
    prune_artifacts(artifacts_dir)  # earlier runs' screenshots, past OV_RETENTION_DAYS
    probe, started = _Probe(config, day, artifacts_dir), time.monotonic()
    try:
        asyncio.run(_run(probe))
    except Exception as exc:  # noqa: BLE001 - the probe reports, it does not crash
        probe.add("probe", "probe ran to the end", "-", DIFFERENT, note=_reason(exc))
    return ProbeReport(config.empresa, probe.checks, probe.screenshots, time.monotonic() - started)


def portal_check(
    config: ScraperConfig, day: dt.date, artifacts_dir: Path, out: Callable[[str], None] = print, source: str = ""
) -> int:
    """Probe ``config``'s portal on ``day``, print the report through ``out``; 0 when everything
    the scraper needs was found, else 1. ``source`` says where the portal settings came from."""
    out(f"portal-check {config.empresa}: {portal_key(config.base_url)}{f' ({source})' if source else ''}, day {day}")
    report = probe_portal(config, day, artifacts_dir)
    for check in report.checks:
        out(check.line())
    for path in report.screenshots:
        out(f"screenshot (private, inputs masked): {path}")
    if report.failed:
        out(
            f"NOT READY: {len(report.failed)} of {len(report.checks)} checks the scraper needs are not as expected "
            f"({report.seconds:.1f} s). Compare the lines above with CONTRACT §9 and update ov_assets/portal/pages.py "
            "before enabling schedules."
        )
        return 1
    out(f"READY: all {len(report.checks)} checks as the scraper expects ({report.seconds:.1f} s)")
    return 0
