"""The Oficina Virtual portals (CONTRACT §9): configured per empresa from the environment, else
the project's local replica portal (demo and development). ``OV_ENV=production`` refuses the
replica: a missing URL or credential is an error naming the variable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ov_assets.errors import ConfigurationError
from ov_assets.portal.politeness import SlotStore

if TYPE_CHECKING:  # imported when used: the browser library loads only for a scrape
    from ov_assets.portal.scraper import ScraperConfig

REPLICA_USER = "demo"


class PortalResource(dg.ConfigurableResource):
    """Where ``raw_pqr_files`` extracts PQRs from, and how politely."""

    extract: bool = Field(
        default=True, description="False: raw_pqr_files only indexes what is already in the landing folder"
    )
    afinia_url: str = Field(default="", description="OV_AFINIA_PORTAL_URL (login page: {url}/login)")
    afinia_user: str = Field(default="", description="OV_AFINIA_USER")
    afinia_password: str = Field(default="", description="OV_AFINIA_PASSWORD")
    aire_url: str = Field(default="", description="OV_AIRE_PORTAL_URL")
    aire_user: str = Field(default="", description="OV_AIRE_USER")
    aire_password: str = Field(default="", description="OV_AIRE_PASSWORD")
    browser_path: str = Field(
        default="", description="OV_BROWSER_PATH; empty: Playwright's browser, else /usr/bin/chromium"
    )
    concurrency: int = Field(default=4, description="OV_SCRAPER_CONCURRENCY: detail pages in parallel")
    max_per_min: float = Field(default=120, description="OV_SCRAPER_MAX_PER_MIN: details per minute; 0 disables")
    replica_per_day: int = Field(default=20, description="PQRs per day in the local replica portal")
    environment: str = Field(default="development", description="OV_ENV")
    data_dir: str = Field(default="./data", description="OV_DATA_DIR (artifacts of failed extractions)")

    @property
    def artifacts_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "artifacts" / "scraper"

    def _configured(self, empresa: str) -> tuple[str, str, str]:
        return (getattr(self, f"{empresa}_url"), getattr(self, f"{empresa}_user"), getattr(self, f"{empresa}_password"))

    def uses_replica(self, empresa: str) -> bool:
        url, user, password = self._configured(empresa)
        if url and user and password:
            return False
        if self.environment == "production":
            prefix = f"OV_{empresa.upper()}_"
            missing = [
                f"{prefix}{k}" for k, v in (("PORTAL_URL", url), ("USER", user), ("PASSWORD", password)) if not v
            ]
            raise ConfigurationError(
                f"OV_ENV=production requires {', '.join(missing)}: refusing to extract from the local replica portal"
            )
        return True

    @contextmanager
    def scraper_configs(
        self, empresas: list[str], postgres: SlotStore | None = None
    ) -> Iterator[Callable[[str], ScraperConfig]]:
        """``config_for(empresa)`` -> ScraperConfig; starts the replica portal for the block when
        an empresa has no portal configured (never in production). ``postgres``: where
        OV_SCRAPER_MAX_PER_MIN is shared by every run of a portal (the pipeline always passes
        its database; without one the limit holds for this process only)."""
        from ov_assets.devkit.replica import ReplicaPortal
        from ov_assets.portal.scraper import ScraperConfig

        replica_needed = any(self.uses_replica(e) for e in empresas)
        replica = (
            ReplicaPortal(per_day=self.replica_per_day, username=REPLICA_USER, password=REPLICA_USER)
            if replica_needed
            else None
        )
        if replica is not None:
            replica.start()

        def config_for(empresa: str) -> ScraperConfig:
            if self.uses_replica(empresa):
                assert replica is not None
                url, user, password = replica.url(empresa), REPLICA_USER, REPLICA_USER
            else:
                url, user, password = self._configured(empresa)
            return ScraperConfig(
                empresa=empresa,
                base_url=url,
                username=user,
                password=password,
                browser_path=self.browser_path or None,
                concurrency=self.concurrency,
                max_per_min=self.max_per_min or None,
                politeness_db=postgres,
            )

        try:
            yield config_for
        finally:
            if replica is not None:
                replica.stop()
