"""What ``ov-assets portal-check`` (``probe``) finds: one ``Check`` per CONTRACT §9 selector and
behaviour, and the ``ProbeReport`` of a run, which the command prints whole and ``ov-assets
doctor`` sums up in one line. Notes hold counts, kinds and setting names, never a portal value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ov_assets.core.health import Health

FOUND, MISSING, DIFFERENT, UNVERIFIED = "found", "missing", "different", "unverified"


@dataclass
class Check:
    """One line of the report. ``note`` holds counts and kinds only, never a portal value."""

    area: str
    what: str
    selector: str
    status: str
    ms: int | None = None
    required: bool = True
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == FOUND or not self.required

    def line(self) -> str:
        ms = f"{self.ms:>6} ms" if self.ms is not None else " " * 9
        need = "" if self.required else " (optional)"
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.status:<10} {ms}  {self.area:<7} {self.what}{need}: {self.selector}{note}"


@dataclass
class ProbeReport:
    """The checks of one probe, the screenshots it took (private, inputs masked), its duration."""

    empresa: str
    checks: list[Check] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def health(self, portal: str) -> Health:
        """One line for ``doctor``: ready, or the first thing the scraper needs and did not find
        (a refused login names the credentials' variables), and where the whole report is."""
        name = f"portal {self.empresa}"
        failed = self.failed
        if not failed:
            return Health(
                name, True, f"{portal}: all {len(self.checks)} checks as the scraper expects ({self.seconds:.1f} s)"
            )
        first = failed[0]
        note = f": {first.note}" if first.note else ""
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return Health(
            name,
            False,
            f"{portal}: {first.area} {first.what}: {first.status}{note}{more}; the whole report: "
            f"`ov-assets portal-check --empresa {self.empresa}`",
        )
