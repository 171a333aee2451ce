"""One place for configuration: only ``ov_assets/settings.py`` reads the environment, and the
variables read through it are exactly those of README's configuration table.

Every module of the package is parsed (``ast``, nothing imported): a read of ``os.environ``,
``os.getenv`` (or ``environ``/``getenv`` imported from ``os``) anywhere else fails. The names read
are the literal first arguments of the settings readers (``env_str``, ``env_int``, ``env_float``,
``env_flag``, and ``secret``, the resources' ``EnvVar`` maker), wherever they are called; a reader
called with anything but a literal passes its own parameter on (another reader), so no name is
read that this test cannot see.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ov_assets"
SETTINGS = PACKAGE / "settings.py"
ENV_ATTRIBUTES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
READERS = {"env_str", "env_int", "env_float", "env_flag", "secret"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that touch the process environment through ``os`` (under any alias)."""
    os_names = {"os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for a in node.names if a.name in ENV_ATTRIBUTES]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_ATTRIBUTES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _reader_calls(tree: ast.AST) -> Iterator[tuple[ast.Call, str | None]]:
    """Every call of a settings reader with the name of the function it is made in."""

    def visit(node: ast.AST, function: str | None) -> Iterator[tuple[ast.Call, str | None]]:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call):
                called = child.func.attr if isinstance(child.func, ast.Attribute) else getattr(child.func, "id", None)
                if called in READERS:
                    yield child, function
            yield from visit(child, inner)

    yield from visit(tree, None)


def variables_read(tree: ast.AST, where: str) -> set[str]:
    """The variable names this module reads through the settings readers."""
    names = set()
    for call, function in _reader_calls(tree):
        first = call.args[0] if call.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        else:
            assert function in READERS, (
                f"{where}:{call.lineno}: a settings reader called with a computed name outside a reader: "
                "spell the variable out, so that README's table and this test can see it"
            )
    return names


def readme_table_variables() -> set[str]:
    """The variables named in the first column of README's configuration table."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Configuration")
    section = readme[start : readme.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "README's configuration table has no rows"
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}


def test_only_settings_reads_the_environment() -> None:
    offenders = {}
    for path in _modules():
        if path == SETTINGS:
            continue
        lines = environment_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            offenders[str(path.relative_to(REPO))] = lines
    assert offenders == {}, f"read the environment through ov_assets.settings instead: {offenders}"
    assert environment_reads(ast.parse(SETTINGS.read_text())), (
        "settings reads the environment (else this test sees nothing)"
    )


def test_the_environment_check_sees_every_spelling() -> None:
    for source in (
        "import os\nos.environ.get('X')",
        "import os\nos.getenv('X')",
        "import os as o\no.environ['X']",
        "from os import environ",
        "from os import getenv as g",
        "import os\nos.environ.update(X='1')",
    ):
        assert environment_reads(ast.parse(source)), source
    assert environment_reads(ast.parse("import os\nos.path.join('a')\nenv = {}\nenv.get('X')")) == []


def test_every_variable_read_is_in_the_readme_table_and_back() -> None:
    read = set()
    for path in _modules():
        read |= variables_read(ast.parse(path.read_text(), str(path)), str(path.relative_to(REPO)))
    assert {"OV_DATA_DIR", "OV_INDEX_WORKERS", "POSTGRES_PASSWORD", "OV_AIRE_PASSWORD"} <= read  # seen at all
    documented = readme_table_variables()
    assert sorted(read - documented) == [], "read but missing from README's configuration table"
    assert sorted(documented - read) == [], "in README's configuration table but read by nobody"


def test_a_computed_variable_name_is_refused() -> None:
    tree = ast.parse("from ov_assets import settings\ndef f(e):\n    return settings.env_str(f'OV_{e}_URL')\n")
    try:
        variables_read(tree, "example.py")
    except AssertionError as exc:
        assert "computed name" in str(exc)
    else:
        raise AssertionError("a computed name must be refused")
    passed_on = "def env_int(name, default):\n    return env_str(name)\n"
    assert variables_read(ast.parse(passed_on), "settings.py") == set()


def test_every_command_is_in_the_readme_list(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's "Operator commands" line names every ``ov-assets`` subcommand (commands are
    modules that register themselves, so nothing else reminds the writer)."""
    from ov_assets import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = re.search(r"\{([a-z0-9,-]+)\}", capsys.readouterr().out)
    assert usage is not None
    registered = set(usage.group(1).split(","))
    assert {"migrate", "doctor", "backfill"} <= registered
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(p for p in readme.split("\n- ") if p.startswith("**Operator commands**"))
    listed = set(re.findall(r"`([a-z][a-z0-9-]*)[ `]", line))
    assert registered <= listed, sorted(registered - listed)
