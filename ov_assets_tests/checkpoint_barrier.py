"""Holding a process at a checkpoint (``ov_assets.core.checkpoints``) so a test can kill it, or
act on the database, at an exact place: the listener writes ``{folder}/{point}.reached`` and
waits for ``{folder}/{point}.release``.

A process the test starts registers it: a ``python -c`` loader calls ``hold_at``; a Dagster run
(and each of its step processes) loads ``ov_assets_tests.held_definitions`` instead of
``ov_assets.definitions``, which registers ``hold_from_environment()`` (``OV_TEST_HOLD_AT``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ov_assets.core import checkpoints

HOLD_AT = "OV_TEST_HOLD_AT"  # "point:folder", read by the test processes only
REPO = Path(__file__).resolve().parents[1]


def file_barrier(point: str, folder: Path) -> checkpoints.Listener:
    """A listener that stops this process at ``point`` until the test releases it."""

    def listener(name: str) -> None:
        if name != point:
            return
        (folder / f"{point}.reached").write_text(str(os.getpid()))
        release = folder / f"{point}.release"
        while not release.exists():
            time.sleep(0.01)

    return listener


def hold_at(point: str, folder: Path | str) -> checkpoints.Listener:
    """Register ``file_barrier(point, folder)`` in this process; returns it (to remove it)."""
    listener = file_barrier(point, Path(folder))
    checkpoints.add_listener(listener)
    return listener


def subprocess_environment() -> dict[str, str]:
    """This environment for a process a test starts: no barrier of its own, and the repository
    on the path so that the process can import ``ov_assets_tests``."""
    env = {k: v for k, v in os.environ.items() if k != HOLD_AT}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def hold_spec(point: str, folder: Path) -> dict[str, str]:
    """The environment that makes a ``held_definitions`` process (and its steps) stop at ``point``."""
    return {HOLD_AT: f"{point}:{folder}"}


def hold_from_environment() -> None:
    """Register the barrier ``OV_TEST_HOLD_AT`` names, if any."""
    spec = os.environ.get(HOLD_AT, "")
    if spec:
        point, folder = spec.split(":", 1)
        hold_at(point, folder)
