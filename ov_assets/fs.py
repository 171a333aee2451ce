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
import secrets
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


# --- files that appear whole and never replace another (the scraper, import-landing) ----------

FILE_MODE = stat.S_IRUSR | stat.S_IWUSR  # 0600


class NameTaken(FileExistsError):
    """The name holds other bytes (or is no regular file): nothing was replaced."""


def write_temporary(target: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    """Write ``data`` beside ``target`` under a name no other writer uses (pid and random, a
    leading dot and ``.part`` so the landing indexer skips it), owner-only, synced; with the
    modification time ``mtime_ns`` when given (a copy keeps its original's)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(6)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def holds_bytes(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file (never through a link) holding exactly ``data``."""
    try:
        with open_landing(path) as (fh, st):
            return st.st_size == len(data) and fh.read() == data
    except (FileNotFoundError, NotARegularFile):
        return False


def link_exclusive(tmp: Path, target: Path, data: bytes) -> bool:
    """Give ``tmp`` (holding ``data``) the name ``target`` unless that name exists (a hard link:
    atomic, never over another file). True: the file is new; False: ``target`` already holds
    these bytes; ``NameTaken`` when it holds other bytes or is no regular file. ``tmp`` is removed
    in every case; other ``OSError``s (no hard links on this file system...) as raised."""
    try:
        os.link(tmp, target, follow_symlinks=False)
        return True
    except FileExistsError:
        if holds_bytes(target, data):
            return False
        raise NameTaken(errno.EEXIST, "name taken by other content", str(target)) from None
    finally:
        tmp.unlink(missing_ok=True)
