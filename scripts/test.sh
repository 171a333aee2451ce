#!/usr/bin/env bash
# Run the test suite with the project venv (.venv, or $OV_VENV). Installs it first when missing.
# Extra arguments are passed to pytest, e.g. `bash scripts/test.sh -k fixtures`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OV_VENV:-$ROOT/.venv}"
cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[test] no venv at $VENV; running scripts/install.sh" >&2
    bash "$ROOT/scripts/install.sh"
fi
if [ -z "${OV_BROWSER_PATH:-}" ] && [ -x /usr/bin/chromium ]; then
    export OV_BROWSER_PATH=/usr/bin/chromium
fi
if [ -z "${OV_TEST_PG15_DSN:-}" ]; then
    echo "[test] OV_TEST_PG15_DSN unset: PostgreSQL 15 variants will be skipped (.ci/run sets it)" >&2
fi
echo "[test] $VENV/bin/python -m pytest ov_assets_tests -q -ra --durations=15 $*" >&2
exec "$VENV/bin/python" -m pytest ov_assets_tests -q -ra --durations=15 "$@"
