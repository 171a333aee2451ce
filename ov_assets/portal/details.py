"""One PQR's detail, from its page to the landing folder: its values proven to be that PQR of
the day, nothing written when its ``hash_registro`` is already held, else its attachments
(each download retried on its own), the page as PDF and the record (``write_version``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from playwright.async_api import Locator, Page

from ov_assets.core.contract import BOGOTA, ValidRecord, parse_fecha, validate_record
from ov_assets.portal import pages
from ov_assets.portal.landing_writer import write_version
from ov_assets.portal.pages import ListedPqr, PortalError
from ov_assets.portal.scrape_types import ScraperConfig, ScrapeResult

log = logging.getLogger("ov_assets.portal.scraper")


def backoff(attempt: int) -> float:
    """Seconds to wait before retrying after the ``attempt``-th fault: doubling from 0.25 s, at
    most 4 s (a busy portal answering 500 is given time; a retry is not a wait for the page)."""
    return min(4.0, 0.25 * 2 ** max(0, attempt - 1))


class DetailExtractor:
    """Extracts the details of one day's PQRs into ``folder``, shared by the scrape's pages: it
    counts into ``result``, adds what it writes to ``known`` and gathers the labels no detail
    showed (``missing_labels``)."""

    def __init__(
        self, config: ScraperConfig, day: dt.date, folder: Path, known: set[str], today: dt.date, result: ScrapeResult
    ) -> None:
        self.config, self.day, self.folder, self.known, self.today, self.result = (
            config,
            day,
            folder,
            known,
            today,
            result,
        )
        self.timeout_ms = config.timeout_s * 1000
        self.missing_labels: set[str] = set()

    async def download(self, page: Page, link: Locator, item: ListedPqr) -> tuple[str, bytes]:
        """One attachment: a failed download (the portal answered an error; Chromium keeps none
        of its bytes) is clicked again with backoff, the rest of the detail kept."""
        config = self.config
        for attempt in range(1, config.retries + 1):
            async with page.expect_download(timeout=self.timeout_ms) as info:
                await link.click()
            download = await info.value
            failure = await download.failure()
            if not failure:
                data = Path(await download.path()).read_bytes()
                await download.delete()
                return download.suggested_filename, data
            if attempt < config.retries:
                self.result.retries += 1
                log.info(
                    "%s %s: radicado %s: an attachment download failed (%s), retrying",
                    config.empresa,
                    self.day,
                    item.numero_radicado,
                    failure,
                )
                await asyncio.sleep(backoff(attempt))
        raise PortalError(f"an attachment download failed {config.retries} times ({failure})")

    async def extract(self, page: Page, item: ListedPqr, fresh: bool) -> None:
        """Open ``item``'s detail (``fresh``: load the page again rather than route to it) and
        write its version unless its hash is known. Raises PortalError when the detail shown is
        not that PQR of the day."""
        config, day, result = self.config, self.day, self.result
        await pages.open_detail(page, config.base_url, item, self.timeout_ms, fresh)
        record, missing = await pages.read_detail(page)
        self.missing_labels.update(missing)
        filed = parse_fecha(record["fecha"])
        if filed is None or filed.date() != day or record["numero_radicado"] != item.numero_radicado:
            raise PortalError(f"the detail of radicado {item.numero_radicado} is not that PQR of {day}")
        checked = validate_record(record, self.today)
        if isinstance(checked, ValidRecord) and checked.hash_registro in self.known:
            result.unchanged += 1
            return
        await pages.close_modal(page)  # shown late, it would cover the detail in its PDF
        attachments: list[tuple[str, bytes]] = []
        links = pages.attachment_links(page)
        for i in range(await links.count()):
            attachments.append(await self.download(page, links.nth(i), item))
        pdf = await page.pdf(format="A4", print_background=True)
        extracted = dt.datetime.now(BOGOTA).replace(tzinfo=None)
        written = await asyncio.to_thread(
            write_version,
            self.folder,
            record,
            extracted,
            item.position,
            pdf,
            attachments,
            pages.detail_url(config.base_url, item.detail_id),
            await page.title() or "Detalle PQR",
        )
        if isinstance(checked, ValidRecord):
            self.known.add(checked.hash_registro)
        result.written += 1
        result.radicados_written.append(item.numero_radicado)
        result.files_written += [str(p) for p in written]
