#!/usr/bin/env bash
# The main job on a fresh machine: install everything, then `ov-assets demo` — demo data for
# the last 3 days of both empresas, the whole graph materialized on the embedded defaults
# (embedded PostgreSQL and local object store under $OV_DATA_DIR, default ./data), recorded in
# a persistent Dagster home ($OV_DATA_DIR/dagster_home) so `dagster dev` shows the runs.
# Extra arguments go to `ov-assets demo` (e.g. --days 5 --per-day 40).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OV_VENV:-$ROOT/.venv}"
cd "$ROOT"
bash "$ROOT/scripts/install.sh"
if [ -z "${OV_BROWSER_PATH:-}" ] && [ -x /usr/bin/chromium ]; then
    export OV_BROWSER_PATH=/usr/bin/chromium
fi
export OV_DATA_DIR="${OV_DATA_DIR:-$ROOT/data}"
export DAGSTER_HOME="${DAGSTER_HOME:-$OV_DATA_DIR/dagster_home}"
exec "$VENV/bin/ov-assets" demo "$@"
