"""The browser side of a scrape: which Chromium is launched, the owner-only folder of its failure
artifacts, and the portal session, whose logins happen in a throwaway context that is never
traced (so no trace ever holds the password)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Cookie, Page

from ov_assets import settings
from ov_assets.portal import pages
from ov_assets.portal.scrape_types import ScraperConfig, ScrapeResult

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


def resolve_browser_path(configured: str | None, playwright_default: str | None) -> str | None:
    """The Chromium to launch: configured (the portal resource's ``OV_BROWSER_PATH``), else
    Playwright's own browser when it is installed (None lets Playwright pick it), else Debian's."""
    if configured:
        return configured
    if playwright_default and os.path.exists(playwright_default):
        return None
    return DEBIAN_CHROMIUM


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


async def close_page(page: Page) -> None:
    """Close a page; one that cannot be closed (its browser went away, an error raised into the
    call) is left to its context, which is closed at the end: never a reason to stop a day."""
    try:
        await page.close()
    except Exception as exc:  # noqa: BLE001 - see above
        log.info("a page could not be closed (%s); left to its browser context", type(exc).__name__)


def private_file(path: Path) -> None:
    """``path`` made owner-only (0600) when it exists: a session state, a screenshot, a trace."""
    if path.exists():
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


class PortalSession:
    """The portal session shared by all pages of the scraping context.

    Logins happen in a throwaway context that is never traced; the resulting cookies go into
    the scraping context. A ``generation`` counter makes concurrent workers that all saw the
    session expire log in only once."""

    def __init__(self, browser: Browser, config: ScraperConfig, state_file: Path, result: ScrapeResult) -> None:
        self.browser, self.config, self.state_file, self.result = browser, config, state_file, result
        self.context: BrowserContext | None = None
        self.generation = 0
        self.lock = asyncio.Lock()

    async def _login_cookies(self) -> list[Cookie]:
        cfg = self.config
        ctx = await self.browser.new_context()
        try:
            page = await ctx.new_page()
            await pages.login(page, cfg.empresa, cfg.base_url, cfg.username, cfg.password, cfg.timeout_s * 1000)
            await ctx.storage_state(path=str(self.state_file))
            private_file(self.state_file)
            return await ctx.cookies()
        finally:
            await ctx.close()

    async def relogin(self, seen_generation: int) -> None:
        async with self.lock:
            if self.generation != seen_generation:
                return  # another worker logged in already
            cookies = await self._login_cookies()
            if self.context is not None:
                await self.context.add_cookies(cookies)  # type: ignore[arg-type]  # a Cookie holds every SetCookieParam key
            self.generation += 1
            self.result.relogins += 1
            log.info("%s: logged in to the portal (session %d)", self.config.empresa, self.generation)
