"""Landing file writes that never replace a file.

The names come from ``core.file_names`` (``safe_token`` makes untrusted portal values, the SGC
and the radicado, into plain file name parts; the JSON keeps the values verbatim).

``commit_files`` puts files in place create-exclusive (a hard link from a uniquely named
temporary file), so two scrapes that write the same name at the same second never silently
replace each other's bytes: the same bytes are fine, other bytes are a ``LandingConflict``.
"""

from __future__ import annotations

from pathlib import Path

from ov_assets import fs
from ov_assets.errors import OperatorError

FILE_MODE = fs.FILE_MODE  # 0600
write_temporary = fs.write_temporary  # (also what ``ov-assets import-landing`` writes with)


class LandingConflict(OperatorError):
    """A landing file name is taken by other bytes: nothing was replaced."""


def link_exclusive(tmp: Path, target: Path, data: bytes) -> bool:
    """Give ``tmp`` (holding ``data``) the name ``target`` unless that name exists. True: the
    file is new; False: ``target`` already holds these bytes. Raises LandingConflict when it
    holds other bytes. ``tmp`` is removed in every case (``fs.link_exclusive``)."""
    try:
        return fs.link_exclusive(tmp, target, data)
    except fs.NameTaken:
        raise LandingConflict(
            f"{target} already exists with other content: nothing was replaced. Another extraction "
            "wrote this name at the same second; the PQR is extracted again with a new time stamp"
        ) from None
    except OSError as exc:
        raise OperatorError(
            f"cannot create {target.name} in {target.parent} ({type(exc).__name__}): the landing folder "
            "must be on a local file system that supports hard links, writable by this user"
        ) from None


def commit_files(files: list[tuple[Path, bytes]]) -> list[Path]:
    """Write ``files`` in order, each create-exclusive; returns the paths that are new. On a
    conflict the files this call created are removed again (a record never shows up half
    written) and LandingConflict names the taken file."""
    staged: list[tuple[Path, Path, bytes]] = []
    created: list[Path] = []
    try:
        for target, data in files:
            staged.append((write_temporary(target, data), target, data))
        for tmp, target, data in staged:
            if link_exclusive(tmp, target, data):
                created.append(target)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    finally:
        for tmp, _, _ in staged:
            tmp.unlink(missing_ok=True)
    return created
