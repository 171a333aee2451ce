"""The package's layout rules that no linter checks: modules stay small enough to read whole, and
no module reaches into another's private names (a name starting with ``_`` is the owning
module's business; what two modules share is public and documented)."""

from __future__ import annotations

import ast
from pathlib import Path

import ov_assets

PACKAGE = Path(ov_assets.__file__).parent
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(path: Path, node: ast.ImportFrom, package_dir: Path) -> str:
    """The module an ``import from`` names, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = _module_name(path, package_dir).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """``module.name`` for each private name the file ``path`` of ``package`` imports from
    another ov_assets module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(path, node, package)
            if source.split(".")[0] != "ov_assets" or source == _module_name(path, package):
                continue
            found += [
                f"{source}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
            ]
        elif isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.startswith("ov_assets.")
                and any(p.startswith("_") and not p.startswith("__") for p in a.name.split("."))
            ]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = {str(p.relative_to(PACKAGE.parent)): names for p in _modules() if (names := private_imports(p))}
    assert not offenders, f"private names imported across modules (make them public or move them): {offenders}"


def test_no_module_over_the_line_limit() -> None:
    sizes = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not sizes, f"modules over {MAX_LINES} lines (split them by concern): {sizes}"


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The private-import finder catches absolute and relative forms (a finder that finds
    nothing would pass the test above for nothing)."""
    sub = tmp_path / "ov_assets" / "pkg"
    sub.mkdir(parents=True)
    probe = sub / "mod.py"
    probe.write_text(
        "from ov_assets.core.contract import _hidden, public\n"
        "from .other import _secret\n"
        "from ov_assets.pkg.mod import _own\n"
        "import ov_assets._internal\n"
        "from os import _exit\n",
        encoding="utf-8",
    )
    assert private_imports(probe, tmp_path / "ov_assets") == [
        "ov_assets.core.contract._hidden",
        "ov_assets.pkg.other._secret",
        "ov_assets._internal",
    ]


# Paths of the machine the project was developed on, which a clone elsewhere does not have: the
# team's workspace, the contract folder beside the checkout, a CI scratch clone. Deployment paths
# (/opt/ov-assets, /var/lib/ov-assets, /usr/bin/chromium) are the product's own and allowed.
DEVELOPMENT_PATHS = ("/" + "work/", ".." + "/shared", "/tmp/" + "ci-check")


def tracked_files_naming_development_paths(root: Path) -> dict[str, list[str]]:
    """Tracked text files (git ls-files) naming a path outside the repository, with the paths."""
    import subprocess

    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    found: dict[str, list[str]] = {}
    for name in filter(None, names.decode().split("\0")):
        path = root / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if hits := [p for p in DEVELOPMENT_PATHS if p in text]:
            found[name] = hits
    return found


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    offenders = tracked_files_naming_development_paths(PACKAGE.parent)
    assert not offenders, f"paths of the development machine in tracked files: {offenders}"
