"""Extract one day of PQRs of one empresa from its Oficina Virtual portal (CONTRACT §9) into the
landing folder (CONTRACT §2).

    result = scrape_day(ScraperConfig.from_env("afinia"), day, landing_folder,
                        known_hashes=landing_state(landing_folder).hashes, artifacts_dir=...)

Flow: log in (in a separate, untraced browser context, so no trace ever holds the password;
the session is reused through a storage-state file while it is valid), close Afinia's modal,
filter the day, walk every results page exactly once (deduplicated by detail id), and open the
details in a pool of ``concurrency`` pages: fields by exact label, SGC from its input,
attachments through ``page.expect_download``, the page as PDF. A record whose ``hash_registro``
is in ``known_hashes`` writes nothing. Every file is written to a unique temporary name and
linked into place create-exclusive (``naming``), the JSON last, so a reader that sees a record
sees its PDF and attachments, and no file is ever replaced by other bytes.

Nothing here logs credentials or personal data: logs and results name radicados only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright

from ov_assets import settings
from ov_assets.core.contract import BOGOTA, EMPRESAS, FINAL_STATUSES, ValidRecord, parse_extraction_ts, parse_fecha, today_bogota, validate_record
from ov_assets.core.file_names import FILE_RECORD, attachment_file_name, format_ts, parse_name, pdf_file_name, record_file_name, sgc_for_name
from ov_assets.portal import naming, pages, politeness
from ov_assets.portal.pages import ListedPqr, LoginError, PortalError, SessionExpired
from ov_assets.portal.politeness import SlotStore

log = logging.getLogger("ov_assets.portal.scraper")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEBIAN_CHROMIUM = "/usr/bin/chromium"
_UUID_NAME = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.[A-Za-z0-9]+")
_EXT = re.compile(r"\.([A-Za-z0-9]{1,8})$")
FILTER_ATTEMPTS = 5  # searches until the request carries the typed day (debounce: ~0.5 s)


class ListIncomplete(PortalError):
    """The day's results, walked again and again, never listed as many radicados as their
    label counts: not a fault to retry, a gap to report."""


def _backoff(attempt: int) -> float:
    """Seconds to wait before retrying after the ``attempt``-th fault: doubling from 0.25 s, at
    most 4 s (a busy portal answering 500 is given time; a retry is not a wait for the page)."""
    return min(4.0, 0.25 * 2 ** max(0, attempt - 1))


@dataclass
class ScraperConfig:
    """How to reach one empresa's portal. Credentials are never part of ``repr``."""

    empresa: str
    base_url: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    browser_path: str | None = None  # None: OV_BROWSER_PATH, else Playwright's browser, else Debian's
    concurrency: int = 4
    max_per_min: float | None = 120  # details opened per minute; None or 0 disables the limit
    headless: bool = True
    timeout_s: float = 30.0  # one wait (page load, a view to render, a download)
    retries: int = 4  # attempts per record (an expired session costs none)
    recycle_pages_after: int = 100  # records per page before it is closed and replaced
    trace: bool = True  # record a Playwright trace (kept only when something failed)
    # Where OV_SCRAPER_MAX_PER_MIN is shared with every other run of this portal (the pipeline's
    # PostgreSQL); None: this process only (see politeness.limiter_for).
    politeness_db: SlotStore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.empresa not in EMPRESAS:
            raise ValueError(f"unknown empresa {self.empresa!r}")
        self.concurrency = max(1, int(self.concurrency))

    @classmethod
    def from_env(cls, empresa: str, env: dict[str, str] | None = None, **overrides: Any) -> "ScraperConfig":
        """Read ``OV_{EMPRESA}_PORTAL_URL/_USER/_PASSWORD``, ``OV_BROWSER_PATH``,
        ``OV_SCRAPER_CONCURRENCY`` and ``OV_SCRAPER_MAX_PER_MIN`` (CONTRACT §8). Raises KeyError
        naming the missing variable (never its value) when the portal is not configured."""
        env = dict(os.environ if env is None else env)
        prefix = f"OV_{empresa.upper()}_"
        missing = [f"{prefix}{k}" for k in ("PORTAL_URL", "USER", "PASSWORD") if not env.get(f"{prefix}{k}")]
        if missing:
            raise KeyError(f"portal not configured: {', '.join(missing)} unset")
        max_per_min = env.get("OV_SCRAPER_MAX_PER_MIN", "120")
        kwargs: dict[str, Any] = dict(
            empresa=empresa,
            base_url=env[f"{prefix}PORTAL_URL"],
            username=env[f"{prefix}USER"],
            password=env[f"{prefix}PASSWORD"],
            browser_path=env.get("OV_BROWSER_PATH") or None,
            concurrency=int(env.get("OV_SCRAPER_CONCURRENCY", "4")),
            max_per_min=(float(max_per_min) or None) if max_per_min else None,
        )
        kwargs.update(overrides)
        return cls(**kwargs)


@dataclass
class ScrapeResult:
    """What one ``scrape_day`` did. Radicados only: no personal data."""

    empresa: str
    day: str
    listed: int = 0  # distinct PQRs in the day's listing
    listed_total: int = 0  # what the "1 - 10 de N" label said
    written: int = 0
    unchanged: int = 0  # same hash_registro as a known version: nothing written
    failed: int = 0
    pages_walked: int = 0
    relogins: int = 0
    retries: int = 0
    files_written: list[str] = field(default_factory=list)
    radicados_written: list[str] = field(default_factory=list)
    radicados_failed: list[str] = field(default_factory=list)
    failure_artifacts: list[str] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)
    list_error: str = ""  # the class of the error that stopped the walk of the results list
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.listed >= self.listed_total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_failures(results: list[ScrapeResult]) -> str:
    """What went wrong in these extractions, for the run's failure: PQRs that could not be
    extracted, and results lists that could not be walked to the end (then PQRs of the day
    may be missing without being counted)."""
    pqrs = sum(len(r.radicados_failed) for r in results)
    lists = [f"{r.empresa} {r.day} ({r.list_error})" for r in results if r.list_error]
    said = []
    if pqrs:
        said.append(f"{pqrs} PQRs could not be extracted")
    if lists:
        said.append(f"the results list of {', '.join(lists)} could not be walked to the end (the portal failed "
                    "or its list page changed); PQRs after that point were not seen")
    return "; ".join(said or ["extraction failed"]) + ". The screenshots and traces are in failure_artifacts"


# ----------------------------------------------------------------------------------------
# Landing folder: what is already there
# ----------------------------------------------------------------------------------------
@dataclass
class LandingState:
    """The latest valid version of each radicado in a landing folder."""

    latest: dict[str, tuple[str, str, ValidRecord]] = field(default_factory=dict)  # radicado -> (ts, name, rec)

    @property
    def hashes(self) -> set[str]:
        return {rec.hash_registro for _, _, rec in self.latest.values()}

    def open_days(self, since: dt.date | None = None, until: dt.date | None = None) -> set[dt.date]:
        """Days (of ``fecha``) whose latest versions hold a PQR that is not final yet."""
        out = set()
        for _, _, rec in self.latest.values():
            d = rec.fecha.date()
            if rec.values["estado_solicitud"] not in FINAL_STATUSES and (since is None or d >= since) and (
                until is None or d <= until
            ):
                out.add(d)
        return out


def landing_state(folder: Path, day: dt.date | None = None) -> LandingState:
    """Read the record files of ``folder`` (all of them: O(folder); the asset should prefer the
    hashes it already has in its index or table) and keep the latest valid version per
    radicado, optionally only those whose ``fecha`` falls on ``day``."""
    state = LandingState()
    today = today_bogota()
    if not folder.is_dir():
        return state
    for entry in os.scandir(folder):
        name = parse_name(entry.name)
        if name is None or name.kind != FILE_RECORD:
            continue
        try:
            obj = json.loads(Path(entry.path).read_bytes().decode("utf-8-sig"))
        except (OSError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        rec = validate_record(obj, today)
        if not isinstance(rec, ValidRecord) or (day is not None and rec.fecha.date() != day):
            continue
        ts = obj.get("extraction_timestamp") if parse_extraction_ts(obj.get("extraction_timestamp")) else name.ts
        key = (ts or "", entry.name)
        rad = rec.values["numero_radicado"]
        if rad not in state.latest or key > state.latest[rad][:2]:
            state.latest[rad] = (key[0], key[1], rec)
    return state


# ----------------------------------------------------------------------------------------
# Writing a version
# ----------------------------------------------------------------------------------------
def write_version(
    folder: Path,
    record: dict[str, str],
    extracted: dt.datetime,
    record_number: int,
    pdf: bytes,
    attachments: list[tuple[str, bytes]],
    page_url: str,
    page_title: str = "Detalle PQR",
) -> list[Path]:
    """Write one extracted version with CONTRACT §2 names: attachments, PDF, then the JSON.

    Names come from ``naming``: the SGC as a safe token, else ``PQR_{radicado}_{ts}``, never
    the list position, so concurrent scrapes of different PQRs never share a name. Every file
    is written to a unique temporary name and linked into place create-exclusive, the JSON
    last, so a reader that sees a record sees its files; a name taken by other bytes raises
    ``LandingConflict`` and removes the files of this version that this call created.
    An attachment that carries the portal's ``<uuid>.<ext>`` name keeps it (shared by every
    version, so never removed again; the same name with the same bytes is already there);
    others become ``{sgc}_adjunto[_i]_{ts}.{ext}``. Files and folder are owner-only. Returns
    the paths created.
    """
    naming.private_dir(folder)
    ts = format_ts(extracted)
    # A blank radicado (a record the loader will reject) still gets a name of its own.
    key = record["numero_radicado"] or secrets.token_hex(6)
    sgc = sgc_for_name(record["numero_reclamo_sgc"], key, ts)
    doc: dict[str, Any] = dict(record)
    doc.update(record_number=record_number, sgc_number=record["numero_reclamo_sgc"],
               extraction_timestamp=ts, page_url=page_url, page_title=page_title)
    shared: list[tuple[Path, bytes]] = []
    own: list[tuple[Path, bytes]] = []
    index = 0
    for name, data in attachments:
        if _UUID_NAME.fullmatch(name):
            target = folder / name
            if not target.exists():
                shared.append((target, data))
                continue
            if target.read_bytes() == data:
                continue
        m = _EXT.search(name)
        ext = (m.group(1) if m else "bin").lower()
        own.append((folder / attachment_file_name(sgc, ts, ext, index), data))
        index += 1
    own.append((folder / pdf_file_name(sgc, ts), pdf))
    own.append((folder / record_file_name(sgc, ts), json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")))
    return naming.commit_files(shared) + naming.commit_files(own)


# ----------------------------------------------------------------------------------------
# Browser plumbing
# ----------------------------------------------------------------------------------------
def resolve_browser_path(configured: str | None, playwright_default: str | None) -> str | None:
    """The Chromium to launch: configured / OV_BROWSER_PATH, else Playwright's own browser when
    it is installed (None lets Playwright pick it), else Debian's."""
    path = configured or os.environ.get("OV_BROWSER_PATH")
    if path:
        return path
    if playwright_default and os.path.exists(playwright_default):
        return None
    return DEBIAN_CHROMIUM


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, stat.S_IRWXU)
    return path


def prune_artifacts(artifacts_dir: Path, retention_days: int | None = None) -> list[Path]:
    """Delete failure screenshots, traces and ``portal-check`` screenshots older than
    ``retention_days`` (default ``OV_RETENTION_DAYS``, 30): they show the portal's pages, are
    local only and never uploaded."""
    days = settings.retention_days(retention_days)
    cutoff = time.time() - days * 86400
    removed = []
    if artifacts_dir.is_dir():
        for p in artifacts_dir.iterdir():
            if p.name.startswith(("fail-", "trace-", "portal-check-")) and p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


async def _close(page: Page) -> None:
    """Close a page; one that cannot be closed (its browser went away, an error raised into the
    call) is left to its context, which is closed at the end: never a reason to stop a day."""
    try:
        await page.close()
    except Exception as exc:  # noqa: BLE001 - see above
        log.info("a page could not be closed (%s); left to its browser context", type(exc).__name__)


def _private_file(path: Path) -> None:
    if path.exists():
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


class _Session:
    """The portal session shared by all pages of the scraping context.

    Logins happen in a throwaway context that is never traced; the resulting cookies go into
    the scraping context. A ``generation`` counter makes concurrent workers that all saw the
    session expire log in only once."""

    def __init__(self, browser: Browser, config: ScraperConfig, state_file: Path, result: ScrapeResult) -> None:
        self.browser, self.config, self.state_file, self.result = browser, config, state_file, result
        self.context: BrowserContext | None = None
        self.generation = 0
        self.lock = asyncio.Lock()

    async def _login_cookies(self) -> list[dict[str, Any]]:
        cfg = self.config
        ctx = await self.browser.new_context()
        try:
            page = await ctx.new_page()
            await pages.login(page, cfg.empresa, cfg.base_url, cfg.username, cfg.password, cfg.timeout_s * 1000)
            await ctx.storage_state(path=str(self.state_file))
            _private_file(self.state_file)
            return await ctx.cookies()
        finally:
            await ctx.close()

    async def relogin(self, seen_generation: int) -> None:
        async with self.lock:
            if self.generation != seen_generation:
                return  # another worker logged in already
            cookies = await self._login_cookies()
            if self.context is not None:
                await self.context.add_cookies(cookies)
            self.generation += 1
            self.result.relogins += 1
            log.info("%s: logged in to the portal (session %d)", self.config.empresa, self.generation)


# ----------------------------------------------------------------------------------------
# The scrape
# ----------------------------------------------------------------------------------------
async def _scrape_day_async(
    config: ScraperConfig, day: dt.date, folder: Path, known_hashes: set[str], artifacts_dir: Path,
    only: Callable[[ListedPqr], bool] | None,
) -> ScrapeResult:
    started = time.monotonic()
    result = ScrapeResult(config.empresa, day.isoformat())
    timeout_ms = config.timeout_s * 1000
    _private_dir(artifacts_dir)
    prune_artifacts(artifacts_dir)
    state_file = artifacts_dir / f"session-{config.empresa}.json"
    stamp = format_ts(dt.datetime.now(BOGOTA).replace(tzinfo=None))
    known = set(known_hashes)
    seen_ids: set[str] = set()
    # Unbounded: the list walk never waits for the workers (its rows are checked before queuing).
    queue: asyncio.Queue[ListedPqr | None] = asyncio.Queue()
    today = today_bogota()
    missing_labels: set[str] = set()

    async with async_playwright() as pw:
        exe = resolve_browser_path(config.browser_path, pw.chromium.executable_path)
        browser = await pw.chromium.launch(executable_path=exe, headless=config.headless, args=CHROMIUM_ARGS)
        session = _Session(browser, config, state_file, result)
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
                    _private_file(shot)
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
                    await _close(page)

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
                                f"{len(listed_radicados)} distinct radicados of it over {walks} walks")
                        log.warning("%s %s: listed %d of %d PQRs, walking the day again", config.empresa, day,
                                    len(listed_radicados), listing.total)
                        target, listing = 1, None
                    except SessionExpired:
                        expiries += 1
                        if expiries > config.retries + 3:
                            raise PortalError(f"the portal session expired {expiries} times without a page of "
                                              "results in between") from None
                        await session.relogin(generation)
                        listing = None
                    except ListIncomplete:
                        raise
                    except PortalError as exc:
                        faults += 1
                        result.retries += 1
                        if faults > config.retries + 1:
                            raise
                        log.info("%s %s: results list: %s; searching again to resume at row %d", config.empresa,
                                 day, exc, target)
                        await asyncio.sleep(_backoff(faults))
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
                    await asyncio.sleep(_backoff(attempt))
                log.info("%s %s: the search request does not show the date filter; checking every row's fecha",
                         config.empresa, day)
                return listing

            def _take(listing: pages.ListPage) -> None:
                """Queue the page's new rows, once every row is proven to be of the day: a row of
                another day means the date filter did not apply, and nothing of the page is taken."""
                for row in listing.rows:
                    filed = parse_fecha(row.fecha)
                    if filed is None:
                        raise PortalError(f"the results list shows a fecha that cannot be read (radicado "
                                          f"{row.numero_radicado}): has the list page changed?")
                    if filed.date() != day:
                        raise PortalError(f"the results list shows radicado {row.numero_radicado} of "
                                          f"{filed.date()}: the date filter did not apply")
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
                        await _close(page)

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
                        await _extract(page, item, fresh=attempt > 0 or expiries > 0 or used == 0)
                        used += 1
                        if used >= config.recycle_pages_after:
                            await _close(page)
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
                        log.info("%s %s: radicado %s attempt %d failed (%s), retrying", config.empresa, day,
                                 item.numero_radicado, attempt, last_error)
                        await asyncio.sleep(_backoff(attempt))
                if not last_error:
                    last_error = "session kept expiring"
                result.failed += 1
                result.radicados_failed.append(item.numero_radicado)
                log.warning("%s %s: radicado %s failed after %d attempts (%s)", config.empresa, day,
                            item.numero_radicado, attempt, last_error)
                await artifacts_for(page, f"radicado-{re.sub(r'[^0-9A-Za-z]', '_', item.numero_radicado)}")
                if page is not None and not page.is_closed():
                    await _close(page)
                return None, 0

            async def _download(page: Page, link: Locator, item: ListedPqr) -> tuple[str, bytes]:
                """One attachment: a failed download (the portal answered an error; Chromium
                keeps none of its bytes) is clicked again with backoff, the rest of the detail
                kept."""
                for attempt in range(1, config.retries + 1):
                    async with page.expect_download(timeout=timeout_ms) as info:
                        await link.click()
                    download = await info.value
                    failure = await download.failure()
                    if not failure:
                        data = Path(await download.path()).read_bytes()
                        await download.delete()
                        return download.suggested_filename, data
                    if attempt < config.retries:
                        result.retries += 1
                        log.info("%s %s: radicado %s: an attachment download failed (%s), retrying", config.empresa,
                                 day, item.numero_radicado, failure)
                        await asyncio.sleep(_backoff(attempt))
                raise PortalError(f"an attachment download failed {config.retries} times ({failure})")

            async def _extract(page: Page, item: ListedPqr, fresh: bool) -> None:
                await pages.open_detail(page, config.base_url, item, timeout_ms, fresh)
                record, missing = await pages.read_detail(page)
                missing_labels.update(missing)
                filed = parse_fecha(record["fecha"])
                if filed is None or filed.date() != day or record["numero_radicado"] != item.numero_radicado:
                    raise PortalError(f"the detail of radicado {item.numero_radicado} is not that PQR of {day}")
                checked = validate_record(record, today)
                if isinstance(checked, ValidRecord) and checked.hash_registro in known:
                    result.unchanged += 1
                    return
                await pages.close_modal(page)  # shown late, it would cover the detail in its PDF
                attachments: list[tuple[str, bytes]] = []
                links = pages.attachment_links(page)
                for i in range(await links.count()):
                    attachments.append(await _download(page, links.nth(i), item))
                pdf = await page.pdf(format="A4", print_background=True)
                extracted = dt.datetime.now(BOGOTA).replace(tzinfo=None)
                written = await asyncio.to_thread(
                    write_version, folder, record, extracted, item.position, pdf, attachments,
                    pages.detail_url(config.base_url, item.detail_id), await page.title() or "Detalle PQR",
                )
                if isinstance(checked, ValidRecord):
                    known.add(checked.hash_registro)
                result.written += 1
                result.radicados_written.append(item.numero_radicado)
                result.files_written += [str(p) for p in written]

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
                result.list_error = (str(list_error) if isinstance(list_error, PortalError)
                                     else type(list_error).__name__)
                log.warning("%s %s: the results list could not be walked (%s: %s)", config.empresa, day,
                            type(list_error).__name__, str(list_error).splitlines()[0][:200] if str(list_error) else "")
                if isinstance(list_error, LoginError):
                    raise list_error
        finally:
            limiter.close()
            if context is not None:
                if config.trace:
                    if result.failed:
                        trace = artifacts_dir / f"trace-{config.empresa}-{day:%Y%m%d}-{stamp}.zip"
                        await context.tracing.stop(path=str(trace))
                        _private_file(trace)
                        result.failure_artifacts.append(str(trace))
                    else:
                        await context.tracing.stop()
                await context.close()
            await browser.close()
    result.missing_labels = sorted(missing_labels)
    result.seconds = round(time.monotonic() - started, 3)
    log.info("%s %s: listed %d (label %d), written %d, unchanged %d, failed %d, pages %d, %.1fs",
             config.empresa, day, result.listed, result.listed_total, result.written, result.unchanged,
             result.failed, result.pages_walked, result.seconds)
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


def days_to_reextract(state: LandingState, today: dt.date | None = None, window_days: int = 60) -> list[dt.date]:
    """The days of the last ``window_days`` whose latest versions hold a PQR not final yet
    (CONTRACT §10, the 03:00 re-extraction)."""
    today = today or today_bogota()
    return sorted(state.open_days(since=today - dt.timedelta(days=window_days - 1), until=today))


def reextract(
    config: ScraperConfig,
    days: Iterable[dt.date],
    landing_folder: Path,
    known_hashes: Collection[str],
    artifacts_dir: Path | None = None,
    has_open: Callable[[dt.date], bool] | Collection[dt.date] | None = None,
) -> list[ScrapeResult]:
    """Scrape again the ``days`` that hold non-final PQRs (``has_open``: a predicate or a set of
    days; None: every day given). Unchanged records write nothing (same hash)."""
    if has_open is None:
        wanted = list(days)
    elif callable(has_open):
        wanted = [d for d in days if has_open(d)]
    else:
        wanted = [d for d in days if d in has_open]
    known = set(known_hashes)
    results = []
    for d in wanted:
        res = scrape_day(config, d, landing_folder, known, artifacts_dir)
        results.append(res)
    return results


def main(argv: list[str] | None = None) -> None:
    """``python -m ov_assets.portal.scraper --empresa afinia --day 2025-10-08 --landing DIR``:
    portal URL and credentials from the environment (CONTRACT §8)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--empresa", required=True, choices=EMPRESAS)
    ap.add_argument("--day", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--landing", required=True, type=Path)
    ap.add_argument("--artifacts", type=Path)
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--max-per-min", type=float)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    if args.max_per_min is not None:
        overrides["max_per_min"] = args.max_per_min or None
    config = ScraperConfig.from_env(args.empresa, **overrides)
    known = landing_state(args.landing).hashes
    result = scrape_day(config, args.day, args.landing, known, args.artifacts)
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
