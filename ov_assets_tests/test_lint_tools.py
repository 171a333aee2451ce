"""The static checks of scripts/lint.sh fail on a violation (a tool that finds nothing because it
looks nowhere, or a configuration that selects nothing, would pass CI for nothing).

Each tool runs with the project's own configuration (pyproject.toml) against a deliberately bad
file or a copy of the package with one bad import, in a temporary folder: never on the work tree.
The tree itself is checked by scripts/lint.sh, not here. ``bench/`` holds scripts, not a package,
so import-linter cannot see it: its rule (no test module imported) is checked here.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ov_assets

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
BIN = Path(sys.executable).parent
PACKAGE = Path(ov_assets.__file__).resolve().parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} missing: the test extra installs it (pip install -e '.[test]')"
    return str(path)


def test_ruff_fails_on_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent("""\
        import os
        import json


        def handler(values: list[int]) -> int:
            try:
                return sum(values)
            except Exception:
                return 0
        """),
        encoding="utf-8",
    )
    good = tmp_path / "good.py"
    good.write_text('"""Clean."""\n\nVALUE = 1\n', encoding="utf-8")
    ruff = [_tool("ruff"), "check", "--no-cache", "--config", str(PYPROJECT), "--output-format", "concise"]

    clean = _run([*ruff, str(good)], tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    found = _run([*ruff, str(bad)], tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    # unused imports (F401), unsorted imports (I001), a blind `except Exception` without a reason (BLE001)
    for code in ("F401", "I001", "BLE001"):
        assert code in found.stdout, (code, found.stdout)


def test_mypy_fails_on_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent("""\
        def untyped(x):
            return x


        def typed(n: int) -> str:
            return n


        COUNT: int = "three"  # type: ignore
        """),
        encoding="utf-8",
    )
    good = tmp_path / "good.py"
    good.write_text("def typed(n: int) -> str:\n    return str(n)\n", encoding="utf-8")
    mypy = [_tool("mypy"), "--config-file", str(PYPROJECT), "--cache-dir", str(tmp_path / ".mypy_cache")]

    clean = _run([*mypy, str(good)], tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    found = _run([*mypy, str(bad)], tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    # disallow_untyped_defs, a wrong return type, and a `type: ignore` that names no error code
    for code in ("[no-untyped-def]", "[return-value]", "[ignore-without-code]"):
        assert code in found.stdout, (code, found.stdout)


def _package_copy(tmp_path: Path) -> Path:
    """A copy of ov_assets and an empty ov_assets_tests (a root package of the contracts), with
    the project's pyproject.toml, to be analysed instead of the installed package."""
    work = tmp_path / "tree"
    shutil.copytree(PACKAGE, work / "ov_assets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (work / "ov_assets_tests").mkdir()
    (work / "ov_assets_tests" / "__init__.py").write_text("", encoding="utf-8")
    shutil.copy(PYPROJECT, work / "pyproject.toml")
    return work


def _lint_imports(work: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(work)}
    cmd = [_tool("lint-imports"), "--no-cache", "--no-logo"]
    for contract in contracts:
        cmd += ["--contract", contract]
    return _run(cmd, work, env)


@pytest.mark.parametrize(
    ("planted", "contract", "expected"),
    [
        # core importing an upper layer
        ("from ov_assets.defs import partitions\n", "layers", "ov_assets.core.planted -> ov_assets.defs.partitions"),
        # a layer importing one above it among the I/O packages
        ("from ov_assets.landing import cleanup\n", "layers", "ov_assets.core.planted -> ov_assets.landing.cleanup"),
        # Dagster below defs
        ("import dagster\n", "dagster-in-defs", "ov_assets.core.planted -> dagster"),
        # the runtime importing the tests
        ("import ov_assets_tests\n", "no-test-support", "ov_assets.core.planted -> ov_assets_tests"),
    ],
)
def test_lint_imports_fails_on_a_violation(tmp_path: Path, planted: str, contract: str, expected: str) -> None:
    work = _package_copy(tmp_path)
    (work / "ov_assets" / "core" / "planted.py").write_text(planted, encoding="utf-8")
    found = _lint_imports(work, contract)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "BROKEN" in found.stdout and expected in found.stdout, found.stdout + found.stderr


def test_lint_imports_analyses_the_copy_not_the_installed_package(tmp_path: Path) -> None:
    """The planted module is seen because the copy is what lint-imports analyses (the venv's
    editable install points at the work tree, which must not be what is checked here)."""
    work = _package_copy(tmp_path)
    (work / "ov_assets" / "core" / "planted.py").write_text("import dagster\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(work)}
    where = _run([sys.executable, "-c", "import ov_assets; print(ov_assets.__file__)"], work, env)
    assert where.stdout.strip() == str(work / "ov_assets" / "__init__.py"), where.stdout + where.stderr


def bench_test_imports(folder: Path) -> dict[str, list[str]]:
    """``{script: [module, ...]}`` for each import of ``ov_assets_tests`` by a script of ``folder``."""
    found: dict[str, list[str]] = {}
    for script in sorted(folder.glob("*.py")):
        names = []
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.append(node.module)
        if hits := [n for n in names if n == "ov_assets_tests" or n.startswith("ov_assets_tests.")]:
            found[script.name] = hits
    return found


def test_bench_imports_no_test_module() -> None:
    offenders = bench_test_imports(ROOT / "bench")
    assert not offenders, f"bench/ imports test modules (move what it needs to ov_assets.devkit): {offenders}"


def test_the_bench_check_sees_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import os\nfrom ov_assets_tests.support import x\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("def f():\n    import ov_assets_tests.pgcluster as p\n", encoding="utf-8")
    (tmp_path / "c.py").write_text("from ov_assets.devkit import servers\n", encoding="utf-8")
    assert bench_test_imports(tmp_path) == {"a.py": ["ov_assets_tests.support"], "b.py": ["ov_assets_tests.pgcluster"]}
