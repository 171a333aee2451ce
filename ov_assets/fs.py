"""Opening landing files without following a symbolic link (CONTRACT §4, ``not_a_regular_file``),
and the owner-only folders everything under ``$OV_DATA_DIR`` is written into.

One piece of code for every reader of landing files (the index, the object store's puts, the
cleanup's hashes): listing a folder and opening a name are two moments, so a file swapped for a
link in between is refused by the kernel (``O_NOFOLLOW``), whatever was opened must be a regular
file (``fstat``), and a FIFO never blocks the open (``O_NONBLOCK``). Pure (the standard library
only), so the object store can import it without the index's dependencies.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

# Never through a symbolic link, and never blocking on a FIFO.
O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
PRIVATE_MODE = stat.S_IRWXU  # 0700: what is under $OV_DATA_DIR holds or leads to personal data
LINK_DETAIL = "a symbolic link: links are never followed (copy the file itself into the folder)"


class NotARegularFile(OSError):
    """The name is a symbolic link, a folder, a FIFO, socket or device: never read.

    ``detail`` says which (no content); ``st`` is its ``fstat`` when it was opened (not a link)."""

    def __init__(self, name: str, detail: str, st: os.stat_result | None = None) -> None:
        super().__init__(f"{name}: {detail}")
        self.name, self.detail, self.st = name, detail, st


def open_regular(name: str, dir_fd: int) -> tuple[int, os.stat_result]:
    """A read-only descriptor (blocking) and the ``fstat`` of the regular file ``name`` of the
    folder ``dir_fd`` (one path component). ``NotARegularFile`` for anything else; other
    ``OSError``s (``FileNotFoundError``...) as raised."""
    try:
        fd = os.open(name, O_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a symbolic link (Linux, BSD)
            raise NotARegularFile(name, LINK_DETAIL) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
            raise NotARegularFile(name, f"{what}: not read", st)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


@contextmanager
def open_landing(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """``path`` opened like the index opens it: its folder first (the folder itself may be a
    mount or a link), then its name relative to it, never through a link; with its ``fstat``."""
    dir_fd = os.open(path.parent, DIR_FLAGS)
    try:
        fd, st = open_regular(path.name, dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as fh:
        yield fh, st


def private_dir(path: Path) -> Path:
    """``path`` made a folder owner-only (0700), with every missing parent 0700 too, because
    what is written under ``$OV_DATA_DIR`` holds personal data. (``mkdir(parents=True,
    mode=...)`` gives the mode to the last folder only, and leaves an existing one as it is.)
    An existing ``path`` with a group/other bit is tightened when this user owns it; a folder
    shared on purpose by another user is left alone. Safe against a concurrent maker."""
    missing = []
    at = path
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=PRIVATE_MODE)
    st = path.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, PRIVATE_MODE)
    return path
