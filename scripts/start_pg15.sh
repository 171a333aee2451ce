#!/usr/bin/env bash
# Start Debian's PostgreSQL 15 (cluster 15/main), create/refresh a superuser role for tests with a
# fresh random password, and print the libpq DSN on stdout (everything else goes to stderr):
#     export OV_TEST_PG15_DSN="$(bash scripts/start_pg15.sh)"
# Needs root (or the postgres user's rights). Installs postgresql-15 with apt when missing.
# Env: OV_PG15_ROLE (default ov_test); OV_PG15_PASSWORD (default: random each run; set it to keep
# an already exported DSN valid when re-running locally).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROLE="${OV_PG15_ROLE:-ov_test}"
VER=15
CLUSTER=main
log() { printf '[pg15] %s\n' "$*" >&2; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install -y $*"
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        log "install failed; running apt-get update and retrying"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

if [ ! -x "/usr/lib/postgresql/$VER/bin/postgres" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install "postgresql-$VER"
fi

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {f=1} END {exit !f}'; then
    log "creating cluster $VER/$CLUSTER"
    pg_createcluster "$VER" "$CLUSTER" >&2
fi

PORT="$(pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {print $3}')"
STATUS="$(pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
if [ "$STATUS" != online ]; then
    log "starting cluster $VER/$CLUSTER on port $PORT (as postgres)"
    # pg_ctlcluster refuses root-owned clusters; the cluster belongs to postgres, run it as postgres.
    as_postgres pg_ctlcluster "$VER" "$CLUSTER" start >&2
else
    log "cluster $VER/$CLUSTER already online on port $PORT"
fi

# Wait until it accepts connections (pg_ctlcluster waits already; this is a guard).
for _ in $(seq 1 60); do
    if as_postgres "/usr/lib/postgresql/$VER/bin/pg_isready" -q -p "$PORT"; then break; fi
    sleep 0.5
done
as_postgres "/usr/lib/postgresql/$VER/bin/pg_isready" -p "$PORT" >&2

# Random password generated now, never stored in the repository (hex: safe to quote).
PASSWORD="${OV_PG15_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
log "creating/updating superuser role $ROLE"
as_postgres psql -X -q -p "$PORT" -d postgres -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}') THEN
    CREATE ROLE "${ROLE}" LOGIN SUPERUSER;
  END IF;
END
\$\$;
ALTER ROLE "${ROLE}" WITH LOGIN SUPERUSER PASSWORD '${PASSWORD}';
SQL

DSN="host=127.0.0.1 port=$PORT user=$ROLE password=$PASSWORD dbname=postgres"
# Check the password path over TCP (pg_hba's default for 127.0.0.1 is scram-sha-256).
PGPASSWORD="$PASSWORD" "/usr/lib/postgresql/$VER/bin/psql" -X -q -w -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres \
    -tAc 'select version()' >&2
echo "$DSN"
