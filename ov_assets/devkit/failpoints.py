"""Test barriers: with ``OV_TEST_LOAD_BARRIER=point:dir`` the process announces that it reached
``point`` (``dir/point.reached``) and waits for ``dir/point.release``, so a test can kill it at
an exact place (never after a sleep). Inert unless the variable names this point: production
never sets it."""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "OV_TEST_LOAD_BARRIER"


def barrier(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec or not spec.startswith(point + ":"):
        return
    folder = Path(spec.split(":", 1)[1])
    (folder / f"{point}.reached").write_text(str(os.getpid()))
    release = folder / f"{point}.release"
    while not release.exists():
        time.sleep(0.01)
