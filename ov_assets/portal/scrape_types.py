"""What a scrape is given (``ScraperConfig``: one empresa's portal, its credentials and limits)
and what it reports (``ScrapeResult``: counts and radicados, never personal data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ov_assets.core.contract import EMPRESAS
from ov_assets.portal.politeness import SlotStore


@dataclass
class ScraperConfig:
    """How to reach one empresa's portal. Credentials are never part of ``repr``."""

    empresa: str
    base_url: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    browser_path: str | None = None  # None: Playwright's browser, else Debian's (OV_BROWSER_PATH: the resource)
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
        said.append(
            f"the results list of {', '.join(lists)} could not be walked to the end (the portal failed "
            "or its list page changed); PQRs after that point were not seen"
        )
    return "; ".join(said or ["extraction failed"]) + ". The screenshots and traces are in failure_artifacts"
