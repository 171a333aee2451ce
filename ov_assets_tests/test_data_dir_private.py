"""Everything under $OV_DATA_DIR is owner-only (issue 21): landing files, the index, frames,
reports, the local object store, the embedded PostgreSQL and the Dagster home hold personal
data or lead to it. The demo runs end to end (replica portal, scraper, the four assets, the
embedded PostgreSQL) under a permissive umask (022, the usual default), then every path
under the data folder is checked for group or other permission bits."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from ov_assets.fs import private_dir


def test_private_dir_makes_every_missing_folder_owner_only_and_tightens_the_last(tmp_path: Path) -> None:
    """The one folder helper every writer under $OV_DATA_DIR uses: ``mkdir(parents=True)``
    would leave the parents at the umask's mode, and an existing folder as it was."""
    old = os.umask(0o022)
    try:
        deep = private_dir(tmp_path / "new" / "deeper" / "deepest")
        assert [stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "new", deep.parent, deep)] == [0o700] * 3
        wide = tmp_path / "wide"
        wide.mkdir(mode=0o755)
        wide.chmod(0o755)
        (wide / "inside").mkdir(mode=0o755)
        assert private_dir(wide) == wide and stat.S_IMODE(wide.stat().st_mode) == 0o700
        assert stat.S_IMODE((wide / "inside").stat().st_mode) == 0o755  # only the folder named
        private_dir(wide)  # again: nothing to do, no error
    finally:
        os.umask(old)


def open_to_others(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) with any group/other bit, as ``mode path``;
    symlinks are not followed (their own mode means nothing)."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # removed meanwhile (a socket, a temporary file)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & 0o077:
            found.append(f"{stat.S_IMODE(st.st_mode):04o} {path.relative_to(root.parent)}")
    return found


def _stop_embedded(pgdata: Path) -> None:
    """The demo leaves its embedded server running (every process reuses it): stop it."""
    pg_ctl = next(Path(sys.prefix).rglob("pg_ctl"), None)
    if pg_ctl is not None and (pgdata / "postmaster.pid").exists():
        subprocess.run([str(pg_ctl), "stop", "-D", str(pgdata), "-m", "fast"], capture_output=True, timeout=120)


def test_demo_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OV_", "POSTGRES_", "AWS_", "DAGSTER_"))}
    env |= {"OV_DATA_DIR": str(data)}
    if os.environ.get("OV_BROWSER_PATH"):
        env["OV_BROWSER_PATH"] = os.environ["OV_BROWSER_PATH"]
    cmd = [str(Path(sys.executable).with_name("ov-assets")), "demo", "--days", "1", "--per-day", "3"]
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, preexec_fn=lambda: os.umask(0o022)
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert any((data / "downloads").rglob("*_data_*.json")) and (data / "postgres").is_dir()
        found = open_to_others(data)
        assert not found, f"{len(found)} paths open to group/others:\n" + "\n".join(found)
    finally:
        _stop_embedded(data / "postgres")
