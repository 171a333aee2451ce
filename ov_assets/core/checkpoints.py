"""Named checkpoints in the runtime's work, and the listeners that hear them.

The loader, the archive and the assets call ``checkpoint(name)`` at the places where stopping
or killing a process matters (``copy``: about half the rows sent; ``insert``/``insert_new``:
before rows are inserted; ``commit``: everything written, not committed; ``s3_put``: an object
stored, its registry row not yet written; ``archive``: ``pqr_table`` done, ``pqr_s3_objects``
not started). This is the seam the tests use to hold a process at an exact place (never after a
sleep): they register a listener. Nothing registers one in production, so a checkpoint costs
one empty loop. Pure: no I/O, no environment; a listener does whatever its registrar wants.
"""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[str], None]

_LISTENERS: list[Listener] = []


def checkpoint(name: str) -> None:
    """Tell every registered listener that this process reached ``name``."""
    for listener in tuple(_LISTENERS):
        listener(name)


def add_listener(listener: Listener) -> None:
    """Hear every checkpoint of this process (until ``remove_listener``)."""
    _LISTENERS.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop ``listener`` hearing checkpoints; one never added is ignored."""
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)
