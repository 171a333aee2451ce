#!/usr/bin/env bash
# Open the Dagster UI on the demo's data: the same OV_DATA_DIR and Dagster home as scripts/demo.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OV_VENV:-$ROOT/.venv}"
cd "$ROOT"
export OV_DATA_DIR="${OV_DATA_DIR:-$ROOT/data}"
export DAGSTER_HOME="${DAGSTER_HOME:-$OV_DATA_DIR/dagster_home}"
# Everything under OV_DATA_DIR is owner-only (personal data): also what dagster dev writes.
umask 077
mkdir -p "$DAGSTER_HOME"
exec "$VENV/bin/dagster" dev -h "${OV_UI_HOST:-127.0.0.1}" -p "${OV_UI_PORT:-3000}" "$@"
