"""``ov-assets doctor``'s PostgreSQL lines: reachable with the resource's own connection settings,
encrypted and verified, a supported version, the migrations current, and the role allowed what
the pipeline does. Read-only: nothing is created, granted or migrated here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from ov_assets.core.health import Health, first_line
from ov_assets.errors import translate_pg_error
from ov_assets.warehouse import migrations
from ov_assets.warehouse.tables import SCHEMA

# The tables the pipeline writes and what it does to them (the loader's grants of the migrations;
# test_doctor compares them): current state is read, inserted and updated; history and audit are
# append-only; near-duplicate pairs that no longer hold are deleted.
CURRENT, APPEND_ONLY = ("SELECT", "INSERT", "UPDATE"), ("SELECT", "INSERT")
PIPELINE_TABLES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ov_afinia", "ov_aire", "s3_files_registry", "ov_rejects", "portal_request_slots"), CURRENT),
    **dict.fromkeys(("ov_afinia_history", "ov_aire_history", "ov_load_audit"), APPEND_ONLY),
    **dict.fromkeys(("ov_report_exports", "ov_cleaned_partitions"), APPEND_ONLY),
    "ov_quality_daily": CURRENT,
    "ov_near_duplicates": (*CURRENT, "DELETE"),
}
TESTED_MAJORS = (15, 18)  # CI runs every database test on both (README "Two commands")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TLS_FIX = "set POSTGRES_SSLMODE=verify-full and POSTGRES_SSLROOTCERT (for RDS the CA bundle global-bundle.pem)"


def postgres_health(conninfo: Mapping[str, Any], target: str, environment: str) -> list[Health]:
    """Connect once (no retries: the operator is waiting) with ``conninfo`` (the resource's
    ``conninfo()``); unreachable is one line, otherwise one line per check."""
    try:
        conn = psycopg.connect(**conninfo, autocommit=True)
    except psycopg.Error as exc:
        translated = translate_pg_error(exc, target)
        detail = (
            str(translated)
            if translated is not exc
            else f"PostgreSQL {target}: cannot connect ({first_line(str(exc))})"
        )
        return [Health("postgres", False, first_line(detail, 600))]
    with conn:
        out = [Health("postgres", True, f"{target} reachable")]
        for check in (_version, _tls, _migrations, _privileges):
            try:
                out.append(check(conn, conninfo, environment))
            except psycopg.Error as exc:  # one check's failure is its own line; the others still run
                name = f"postgres {check.__name__.strip('_')}"
                out.append(Health(name, False, first_line(str(translate_pg_error(exc, target)))))
        return out


def _version(conn: psycopg.Connection, conninfo: Mapping[str, Any], environment: str) -> Health:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    ).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    version, num = row
    major = num // 10000
    if major < TESTED_MAJORS[0]:
        return Health(
            "postgres version",
            False,
            f"{version}: older than PostgreSQL {TESTED_MAJORS[0]}, which ov-assets is not tested on; upgrade the server",
        )
    return Health("postgres version", True, f"{version} (tested on {' and '.join(map(str, TESTED_MAJORS))})")


def _tls(conn: psycopg.Connection, conninfo: Mapping[str, Any], environment: str) -> Health:
    """Encrypted (``pg_stat_ssl`` of this backend) and verified (sslmode): production needs
    verify-full; a Unix socket or, outside production, the loopback need no TLS."""
    host = str(conninfo.get("host") or "")
    sslmode = str(conninfo.get("sslmode") or "")
    mode = f"sslmode={sslmode}" if sslmode else "sslmode unset (libpq: prefer)"
    row = conn.execute("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    encrypted, protocol, cipher = row if row is not None else (conn.pgconn.ssl_in_use, "", "")
    if host.startswith("/"):
        return Health(
            "postgres tls", True, "Unix socket on this machine: nothing crosses a network, TLS does not apply"
        )
    if encrypted and sslmode == "verify-full":
        root = str(conninfo.get("sslrootcert") or "system CAs")
        root = "the system CAs" if root == "system" else f"POSTGRES_SSLROOTCERT ({root.rsplit('/', 1)[-1]})"
        return Health(
            "postgres tls",
            True,
            f"encrypted ({protocol}, {cipher}); certificate verified against {root} and its host name checked ({mode})",
        )
    if host in LOOPBACK and environment != "production":
        state = "encrypted" if encrypted else "not encrypted"
        return Health("postgres tls", True, f"{state}, {mode}, on the loopback (development); production: {TLS_FIX}")
    if encrypted:
        return Health(
            "postgres tls",
            False,
            f"encrypted ({protocol}) but the server's certificate is not verified ({mode}): {TLS_FIX}",
        )
    return Health(
        "postgres tls",
        False,
        f"NOT encrypted ({mode}): credentials and personal data cross the network in clear; {TLS_FIX}",
    )


def _migrations(conn: psycopg.Connection, conninfo: Mapping[str, Any], environment: str) -> Health:
    states = migrations.status(conn)
    pending = [s.version for s in states if s.state == "pending"]
    changed = [s.version for s in states if s.state == "changed"]
    unknown = [s.version for s in states if s.state not in ("applied", "pending", "changed")]
    if changed:
        return Health(
            "postgres migrations",
            False,
            f"{', '.join(changed)} changed after being applied: restore the applied text (git history), put the "
            "change in a new migration, then run `ov-assets migrate`",
        )
    if pending:
        return Health(
            "postgres migrations",
            False,
            f"{len(pending)} pending ({pending[0]}{' ... ' + pending[-1] if len(pending) > 1 else ''}): "
            "run `ov-assets migrate` (as the schema owner)",
        )
    newer = (
        f"; applied here but not in this release: {', '.join(unknown)} (a newer ov-assets migrated it)"
        if unknown
        else ""
    )
    files = [s for s in states if migrations.is_versioned(s.version) and s.version not in unknown]
    return Health("postgres migrations", True, f"all {len(files)} applied, data dictionary current{newer}")


def _privileges(conn: psycopg.Connection, conninfo: Mapping[str, Any], environment: str) -> Health:
    """What POSTGRES_USER may do in ``data_general``: USAGE, TEMPORARY (staging tables), the
    pipeline tables' privileges, the adopted tables' sequences; CREATE only said (the schema
    owner applies migrations)."""
    row = conn.execute(
        "SELECT to_regnamespace(%s) IS NOT NULL, has_database_privilege(current_database(), 'TEMPORARY')",
        (SCHEMA,),
    ).fetchone()
    assert row is not None
    schema_exists, temporary = row
    if not schema_exists:
        return Health("postgres privileges", False, f"schema {SCHEMA} does not exist: run `ov-assets migrate`")
    missing = [] if temporary else ["TEMPORARY on the database"]
    usage, create = conn.execute(
        "SELECT has_schema_privilege(%s, 'USAGE'), has_schema_privilege(%s, 'CREATE')", (SCHEMA, SCHEMA)
    ).fetchone() or (False, False)
    if not usage:
        missing.append(f"USAGE on schema {SCHEMA}")
    absent = []
    for table, privileges in PIPELINE_TABLES.items() if usage else ():  # without USAGE nothing in it resolves
        qualified = f"{SCHEMA}.{table}"
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
        if not (found and found[0]):
            absent.append(table)
            continue
        for privilege in privileges:
            granted = conn.execute("SELECT has_table_privilege(%s, %s)", (qualified, privilege)).fetchone()
            if not (granted and granted[0]):
                missing.append(f"{privilege} on {table}")
    sequences = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'S' "
        # CASE: the planner may test the privilege before the relkind, and it refuses non-sequences
        "AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'USAGE') END ORDER BY 1",
        (SCHEMA,),
    ).fetchall()
    missing += [f"USAGE on sequence {name}" for (name,) in sequences]
    if absent:
        return Health("postgres privileges", False, f"tables missing: {', '.join(absent)}: run `ov-assets migrate`")
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        return Health(
            "postgres privileges",
            False,
            f"POSTGRES_USER lacks {shown}: GRANT ov_loader TO that user (ov_assets/warehouse/sql/002_roles.sql), "
            "as the schema owner",
        )
    owner = "may CREATE in it (can apply migrations)" if create else "no CREATE (the schema owner applies migrations)"
    return Health(
        "postgres privileges",
        True,
        f"POSTGRES_USER: USAGE on {SCHEMA}, TEMPORARY, {len(PIPELINE_TABLES)} pipeline tables as the pipeline "
        f"writes them; {owner}",
    )
