"""The landing folder and its index, as a resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from ov_assets.core.file_names import landing_dir
from ov_assets.landing.index import LandingIndex


class LandingResource(dg.ConfigurableResource):
    """``$OV_DATA_DIR``: landing folders, their index, processed outputs."""

    data_dir: str = Field(default="./data", description="OV_DATA_DIR")

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    def root_for(self, empresa: str) -> Path:
        """The empresa's landing folder (CONTRACT §2)."""
        return landing_dir(self.root, empresa)

    def index(self) -> LandingIndex:
        return LandingIndex(self.root)
