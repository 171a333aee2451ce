"""Extract one day of PQRs of one empresa from its Oficina Virtual portal (CONTRACT §9) into the
landing folder (CONTRACT §2).

    result = scrape_day(config, day, landing_folder,
                        known_hashes=landing_state(landing_folder).hashes, artifacts_dir=...)

Flow: log in (in a separate, untraced browser context, so no trace ever holds the password;
the session is reused through a storage-state file while it is valid), close Afinia's modal,
filter the day, walk every results page exactly once (deduplicated by detail id), and open the
details in a pool of ``concurrency`` pages: fields by exact label, SGC from its input,
attachments through ``page.expect_download``, the page as PDF. A record whose ``hash_registro``
is in ``known_hashes`` writes nothing. Every file is written to a unique temporary name and
linked into place create-exclusive (``naming``), the JSON last, so a reader that sees a record
sees its PDF and attachments, and no file is ever replaced by other bytes.

Beside it: ``scrape_types`` (the config and the result), ``browser`` (which Chromium, the
artifacts, the session), ``details`` (one PQR's detail) and ``landing_writer`` (the folder).

Nothing here logs credentials or personal data: logs and results name radicados only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright

from ov_assets.core.contract import BOGOTA, parse_fecha, today_bogota
from ov_assets.core.file_names import format_ts
from ov_assets.fs import private_dir
from ov_assets.portal import pages, politeness
from ov_assets.portal.browser import (
    CHROMIUM_ARGS,
    DEBIAN_CHROMIUM,
    PortalSession,
    close_page,
    private_file,
    prune_artifacts,
    resolve_browser_path,
)
from ov_assets.portal.details import DetailExtractor, backoff
from ov_assets.portal.landing_writer import LandingState, landing_state, write_version
from ov_assets.portal.pages import ListedPqr, LoginError, PortalError, SessionExpired
from ov_assets.portal.scrape_types import ScraperConfig, ScrapeResult, describe_failures

# The scraper's public face: callers import these from here, wherever they live.
__all__ = [
    "CHROMIUM_ARGS",
    "DEBIAN_CHROMIUM",
    "FILTER_ATTEMPTS",
    "LandingState",
    "ListIncomplete",
    "ScrapeResult",
    "ScraperConfig",
    "describe_failures",
    "landing_state",
    "prune_artifacts",
    "resolve_browser_path",
    "scrape_day",
    "write_version",
]

log = logging.getLogger("ov_assets.portal.scraper")

FILTER_ATTEMPTS = 5  # searches until the request carries the typed day (debounce: ~0.5 s)


class ListIncomplete(PortalError):
    """The day's results, walked again and again, never listed as many radicados as their
    label counts: not a fault to retry, a gap to report."""


# ----------------------------------------------------------------------------------------
# The scrape
# ----------------------------------------------------------------------------------------
async def _scrape_day_async(
    config: ScraperConfig,
    day: dt.date,
    folder: Path,
    known_hashes: set[str],
    artifacts_dir: Path,
    only: Callable[[ListedPqr], bool] | None,
) -> ScrapeResult:
    started = time.monotonic()
    result = ScrapeResult(config.empresa, day.isoformat())
    timeout_ms = config.timeout_s * 1000
    private_dir(artifacts_dir)
    prune_artifacts(artifacts_dir)
    state_file = artifacts_dir / f"session-{config.empresa}.json"
    stamp = format_ts(dt.datetime.now(BOGOTA).replace(tzinfo=None))
    known = set(known_hashes)
    seen_ids: set[str] = set()
    # Unbounded: the list walk never waits for the workers (its rows are checked before queuing).
    queue: asyncio.Queue[ListedPqr | None] = asyncio.Queue()
    details = DetailExtractor(config, day, folder, known, today_bogota(), result)

    async with async_playwright() as pw:
        exe = resolve_browser_path(config.browser_path, pw.chromium.executable_path)
        browser = await pw.chromium.launch(executable_path=exe, headless=config.headless, args=CHROMIUM_ARGS)
        session = PortalSession(browser, config, state_file, result)
        context: BrowserContext | None = None
        # Before the portal is touched (the login is below); its connection is closed at the end.
        limiter = politeness.limiter_for(config.base_url, config.max_per_min, config.politeness_db)
        try:
            # The portal's clock: dates the app builds in the browser are Bogotá days.
            ctx_kwargs: dict[str, Any] = {"accept_downloads": True, "timezone_id": "America/Bogota"}
            if state_file.exists():
                ctx_kwargs["storage_state"] = str(state_file)  # reuse the session while it is valid
            else:
                await session.relogin(0)
                ctx_kwargs["storage_state"] = str(state_file)
            context = await browser.new_context(**ctx_kwargs)
            session.context = context
            if config.trace:
                # After login: the login happened in another context, never traced.
                await context.tracing.start(screenshots=True, snapshots=True)

            async def new_page() -> Page:
                page = await context.new_page()
                page.set_default_timeout(timeout_ms)
                await pages.install_modal_handler(page)
                return page

            async def artifacts_for(page: Page | None, what: str) -> None:
                if page is None or page.is_closed():
                    return
                shot = artifacts_dir / f"fail-{config.empresa}-{day:%Y%m%d}-{what}-{stamp}.png"
                try:
                    await page.screenshot(path=str(shot), mask=[page.locator("input")], full_page=True)
                    private_file(shot)
                    result.failure_artifacts.append(str(shot))
                except Exception:  # noqa: BLE001 - a failed screenshot must not hide the failure
                    log.warning("%s %s: could not take a screenshot of %s", config.empresa, day, what)

            # -- the list: every page exactly once, every row proven of the day ----------------
            async def walk_list() -> None:
                page = await new_page()
                try:
                    await _walk(page)
                except Exception:
                    await artifacts_for(page, "list")
                    raise
                finally:
                    await close_page(page)

            walked_pages: set[int] = set()
            listed_radicados: set[str] = set()

            async def _walk(page: Page) -> None:
                """Search the day and take every page once. After a fault (HTTP 500, a toast, a
                view that never showed its answer, rows of another day) the day is searched again
                and paged forward to the first row not taken yet; after an expired session the
                same, once logged in again. Consecutive faults and expiries are bounded."""
                target, faults, walks, expiries = 1, 0, 0, 0
                listing: pages.ListPage | None = None
                while True:
                    generation = session.generation
                    try:
                        if listing is None:
                            listing = await _search(page)
                            while listing.total and listing.last < target:
                                listing = await pages.next_page(page, listing.last + 1, timeout_ms)
                        _take(listing)
                        faults = expiries = 0
                        if listing.last < listing.total:
                            target = listing.last + 1
                            listing = await pages.next_page(page, target, timeout_ms)
                            continue
                        if len(listed_radicados) == listing.total:
                            return
                        walks += 1
                        if walks > config.retries:
                            raise ListIncomplete(
                                f"the portal counts {listing.total} PQRs for the day but listed "
                                f"{len(listed_radicados)} distinct radicados of it over {walks} walks"
                            )
                        log.warning(
                            "%s %s: listed %d of %d PQRs, walking the day again",
                            config.empresa,
                            day,
                            len(listed_radicados),
                            listing.total,
                        )
                        target, listing = 1, None
                    except SessionExpired:
                        expiries += 1
                        if expiries > config.retries + 3:
                            raise PortalError(
                                f"the portal session expired {expiries} times without a page of results in between"
                            ) from None
                        await session.relogin(generation)
                        listing = None
                    except ListIncomplete:
                        raise
                    except PortalError as exc:
                        faults += 1
                        result.retries += 1
                        if faults > config.retries + 1:
                            raise
                        log.info(
                            "%s %s: results list: %s; searching again to resume at row %d",
                            config.empresa,
                            day,
                            exc,
                            target,
                        )
                        await asyncio.sleep(backoff(faults))
                        listing = None

            async def _search(page: Page) -> pages.ListPage:
                """Type the day into the filters and search until the search request carries it:
                a search launched before the datepicker's debounce sends the previous dates. When
                the request's format is unknown, the row checks of ``_take`` decide."""
                await pages.open_list(page, config.base_url, day, timeout_ms)
                for attempt in range(FILTER_ATTEMPTS):
                    listing = await pages.search(page, day, timeout_ms)
                    if listing.filtered:
                        return listing
                    await asyncio.sleep(backoff(attempt))
                log.info(
                    "%s %s: the search request does not show the date filter; checking every row's fecha",
                    config.empresa,
                    day,
                )
                return listing

            def _take(listing: pages.ListPage) -> None:
                """Queue the page's new rows, once every row is proven to be of the day: a row of
                another day means the date filter did not apply, and nothing of the page is taken."""
                for row in listing.rows:
                    filed = parse_fecha(row.fecha)
                    if filed is None:
                        raise PortalError(
                            f"the results list shows a fecha that cannot be read (radicado "
                            f"{row.numero_radicado}): has the list page changed?"
                        )
                    if filed.date() != day:
                        raise PortalError(
                            f"the results list shows radicado {row.numero_radicado} of "
                            f"{filed.date()}: the date filter did not apply"
                        )
                walked_pages.add(listing.first)
                result.pages_walked = len(walked_pages)
                result.listed_total = listing.total
                for row in listing.rows:
                    listed_radicados.add(row.numero_radicado)
                    result.listed = len(listed_radicados)
                    if row.detail_id in seen_ids:
                        continue
                    seen_ids.add(row.detail_id)
                    if only is None or only(row):
                        queue.put_nowait(row)

            # -- the details: a pool of pages -----------------------------------------------
            async def worker() -> None:
                page: Page | None = None
                used = 0
                try:
                    while True:
                        item = await queue.get()
                        if item is None:
                            return
                        page, used = await _one(item, page, used)
                finally:
                    if page is not None and not page.is_closed():
                        await close_page(page)

            async def _one(item: ListedPqr, page: Page | None, used: int) -> tuple[Page | None, int]:
                """Extract one PQR, retrying. An expired session is not the record's fault: it
                costs no attempt (but at most ``retries + 3`` of them per record)."""
                last_error = ""
                attempt = expiries = 0
                while attempt < config.retries and expiries <= config.retries + 3:
                    if page is None or page.is_closed():
                        page, used = await new_page(), 0
                    generation = session.generation
                    # Outside the try: a politeness database that is gone (PolitenessUnavailable)
                    # is no PQR's fault; it stops the scrape with its operator message.
                    await limiter.wait()
                    try:
                        await details.extract(page, item, fresh=attempt > 0 or expiries > 0 or used == 0)
                        used += 1
                        if used >= config.recycle_pages_after:
                            await close_page(page)
                            page = None
                        return page, used
                    except SessionExpired:
                        await session.relogin(generation)
                        expiries += 1
                        continue
                    except (PortalError, LoginError) as exc:
                        last_error = str(exc)
                    except Exception as exc:  # noqa: BLE001 - Playwright errors, retried
                        last_error = type(exc).__name__
                    attempt += 1
                    if attempt < config.retries:
                        result.retries += 1
                        log.info(
                            "%s %s: radicado %s attempt %d failed (%s), retrying",
                            config.empresa,
                            day,
                            item.numero_radicado,
                            attempt,
                            last_error,
                        )
                        await asyncio.sleep(backoff(attempt))
                if not last_error:
                    last_error = "session kept expiring"
                result.failed += 1
                result.radicados_failed.append(item.numero_radicado)
                log.warning(
                    "%s %s: radicado %s failed after %d attempts (%s)",
                    config.empresa,
                    day,
                    item.numero_radicado,
                    attempt,
                    last_error,
                )
                await artifacts_for(page, f"radicado-{re.sub(r'[^0-9A-Za-z]', '_', item.numero_radicado)}")
                if page is not None and not page.is_closed():
                    await close_page(page)
                return None, 0

            workers = [asyncio.create_task(worker()) for _ in range(config.concurrency)]
            list_error: BaseException | None = None
            try:
                await walk_list()
            except BaseException as exc:  # noqa: BLE001 - reported after the workers finished
                list_error = exc
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
            if list_error is not None:
                result.failed += 1
                # Our own PortalError messages name radicados and days only; others by class.
                result.list_error = (
                    str(list_error) if isinstance(list_error, PortalError) else type(list_error).__name__
                )
                log.warning(
                    "%s %s: the results list could not be walked (%s: %s)",
                    config.empresa,
                    day,
                    type(list_error).__name__,
                    str(list_error).splitlines()[0][:200] if str(list_error) else "",
                )
                if isinstance(list_error, LoginError):
                    raise list_error
        finally:
            limiter.close()
            if context is not None:
                if config.trace:
                    if result.failed:
                        trace = artifacts_dir / f"trace-{config.empresa}-{day:%Y%m%d}-{stamp}.zip"
                        await context.tracing.stop(path=str(trace))
                        private_file(trace)
                        result.failure_artifacts.append(str(trace))
                    else:
                        await context.tracing.stop()
                await context.close()
            await browser.close()
    result.missing_labels = sorted(details.missing_labels)
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        "%s %s: listed %d (label %d), written %d, unchanged %d, failed %d, pages %d, %.1fs",
        config.empresa,
        day,
        result.listed,
        result.listed_total,
        result.written,
        result.unchanged,
        result.failed,
        result.pages_walked,
        result.seconds,
    )
    return result


def scrape_day(
    config: ScraperConfig,
    day: dt.date,
    landing_folder: Path,
    known_hashes: Collection[str] = (),
    artifacts_dir: Path | None = None,
    only: Callable[[ListedPqr], bool] | None = None,
) -> ScrapeResult:
    """Extract the PQRs filed on ``day`` from ``config``'s portal into ``landing_folder``.

    ``known_hashes``: ``hash_registro`` of the latest version of each radicado already held (the
    landing folder's or the table's); a record with one of them writes nothing.
    ``artifacts_dir``: failure screenshots and traces (0o700 / 0o600; default
    ``landing_folder/../../artifacts``); local only, never uploaded.
    ``only``: optional filter of listed rows (e.g. skip radicados known to be final).
    Raises LoginError when the portal refuses the login; other failures are counted in the
    result (``failed``) with their artifacts.
    """
    folder = Path(landing_folder)
    artifacts = Path(artifacts_dir) if artifacts_dir is not None else folder.parent.parent / "artifacts"
    return asyncio.run(_scrape_day_async(config, day, folder, set(known_hashes), artifacts, only))
