"""One line of ``ov-assets doctor``: one connection or setting checked, passed or not, and what to
do when not. Each layer's ``health`` module makes them (warehouse, objects, portal, the Dagster
instance); the command prints them. Details name settings and counts, never secrets or personal
data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Health:
    """``name`` says what was checked; ``detail`` what was found, or what to do when not ``ok``."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def first_line(text: str, limit: int = 300) -> str:
    """A message made one line (an exception's text may span several), at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
