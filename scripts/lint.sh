#!/usr/bin/env bash
# Static checks with the project venv (.venv, or $OV_VENV); configuration in pyproject.toml.
#   ruff check     lint of the package, the tests and bench/      ([tool.ruff])
#   mypy           types of the package ov_assets (not the tests)  ([tool.mypy])
#   lint-imports   the layer contracts of README "Architecture"    ([tool.importlinter])
# Runs every tool, then exits non-zero if any of them found something. .ci/run runs it before
# the tests. Extra arguments go to `ruff check`, e.g. `bash scripts/lint.sh --fix`.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OV_VENV:-$ROOT/.venv}"
cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[lint] no venv at $VENV; running scripts/install.sh" >&2
    bash "$ROOT/scripts/install.sh" || exit 1
fi
for tool in ruff mypy lint-imports; do
    if [ ! -x "$VENV/bin/$tool" ]; then
        echo "[lint] $VENV/bin/$tool missing: install the test extra (OV_FORCE_INSTALL=1 bash scripts/install.sh)" >&2
        exit 1
    fi
done

failed=()
run() {
    local name="$1"
    shift
    echo "[lint] $name: $*" >&2
    if ! "$@"; then
        failed+=("$name")
    fi
}

run "ruff check" "$VENV/bin/ruff" check "$@" .
run "ruff format" "$VENV/bin/ruff" format --check .
run "mypy" "$VENV/bin/mypy"
# lint-imports finds the packages through the venv's editable install (its caches ignore themselves).
run "lint-imports" "$VENV/bin/lint-imports" --no-logo

if [ ${#failed[@]} -gt 0 ]; then
    echo "[lint] FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "[lint] ruff, mypy and lint-imports: no findings" >&2
