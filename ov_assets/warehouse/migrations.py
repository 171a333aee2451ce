"""Forward-only, checksummed migrations from ``sql/``, recorded in ``schema_migrations``.

Applied automatically before the first load of a process and by ``ov-assets migrate``. An
advisory lock makes concurrent runs apply each file once; a file changed after it was applied
is an error (write a new migration instead). Around the files, ``adoption`` sets the old
system's registry aside before 001 and adopts its rows after the last file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ov_assets.errors import OperatorError
from ov_assets.warehouse import adoption, derived

SQL_DIR = Path(__file__).resolve().parent / "sql"  # package data
_LOCK_KEY = 0x0F_A55E75  # any constant shared by every ov-assets process
# What a migration needs done by code after its SQL, in the same transaction: values only Python
# can derive for the rows already stored (011: the E.164 phones, by phonenumbers).
_AFTER: dict[str, Callable[[psycopg.Connection], object]] = {"011_phone_e164": derived.backfill_phone_e164}


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(sql_dir: Path = SQL_DIR) -> list[Migration]:
    if not sql_dir.is_dir():
        raise OperatorError(
            f"migrations folder {sql_dir} not found: install ov-assets from its repository (pip install -e .)"
        )
    return [Migration(p.stem, p) for p in sorted(sql_dir.glob("[0-9][0-9][0-9]_*.sql"))]


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS public.schema_migrations (
               version    TEXT PRIMARY KEY,
               checksum   CHAR(64) NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


def applied(conn: psycopg.Connection) -> dict[str, tuple[str, object]]:
    """version -> (checksum, applied_at) of what this database has applied. Read-only (works
    for the ``ov_loader`` role): a database without ``schema_migrations`` has applied nothing."""
    row = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    (exists,) = row
    if not exists:
        return {}
    rows = conn.execute("SELECT version, checksum, applied_at FROM public.schema_migrations").fetchall()
    return {v: (c, at) for v, c, at in rows}


@dataclass(frozen=True)
class MigrationStatus:
    version: str
    state: str  # "applied", "pending" or "changed" (edited after it was applied)
    applied_at: object = None


def status(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[MigrationStatus]:
    """Every migration of ``sql/`` (and any applied one no longer in ``sql/``) with its state."""
    done = applied(conn)
    out = []
    for m in available(sql_dir):
        if m.version not in done:
            out.append(MigrationStatus(m.version, "pending"))
        else:
            checksum, at = done[m.version]
            out.append(MigrationStatus(m.version, "applied" if checksum == m.checksum else "changed", at))
    known = {m.version for m in available(sql_dir)}
    out += [MigrationStatus(v, "unknown (not in sql/)", at) for v, (_, at) in sorted(done.items()) if v not in known]
    return out


def ensure_current(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations unless everything is applied already (checked read-only, so a
    least-privilege loader whose schema is current never needs DDL rights)."""
    states = status(conn, sql_dir)
    changed = [s.version for s in states if s.state == "changed"]
    if changed:
        raise OperatorError(
            f"migration {changed[0]} changed after it was applied; never edit an applied migration, add a new one"
        )
    if all(s.state != "pending" for s in states):
        return []
    try:
        return apply_all(conn, sql_dir)
    except psycopg.errors.InsufficientPrivilege as exc:
        pending = ", ".join(s.version for s in states if s.state == "pending")
        raise OperatorError(
            f"the database schema is not current (pending: {pending}) and this user may not change it "
            f"({str(exc).splitlines()[0]}). Run the migrations as the schema owner: `ov-assets migrate`."
        ) from exc


def _run(migration: Migration, conn: psycopg.Connection) -> None:
    """Execute one file; a failure is an operator message (the transaction rolls it back)."""
    try:
        conn.execute(migration.sql)
    except psycopg.errors.InsufficientPrivilege:
        raise  # ensure_current turns it into its own message
    except psycopg.errors.ProgrammingError as exc:  # names schema objects, never row values
        raise OperatorError(
            f"migration {migration.version} failed and was rolled back ({str(exc).splitlines()[0]}); nothing of it "
            "was applied. The schema differs from what it expects: compare with CONTRACT §6 and fix the object named."
        ) from exc
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:  # may quote a row: not shown
        raise OperatorError(
            f"migration {migration.version} failed on the data already in the database ({type(exc).__name__}, "
            f"SQLSTATE {exc.sqlstate}) and was rolled back; nothing of it was applied. Run it by hand "
            "(psql -f) as the schema owner to see the row."
        ) from exc


def apply_all(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every pending migration, each in its own transaction; return the versions applied.
    The old system's registries are set aside first and adopted last (``adoption``), on every
    call: rows the old system added since the last call are adopted too."""
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        _ensure_table(conn)
        adoption.set_aside_old_registry(conn)
    for migration in available(sql_dir):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            row = conn.execute(
                "SELECT checksum FROM public.schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise OperatorError(
                        f"migration {migration.version} changed after it was applied; "
                        "never edit an applied migration, add a new one"
                    )
                continue
            _run(migration, conn)
            if migration.version in _AFTER:
                _AFTER[migration.version](conn)
            conn.execute(
                "INSERT INTO public.schema_migrations (version, checksum) VALUES (%s, %s)",
                (migration.version, migration.checksum),
            )
            done.append(migration.version)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if adoption.ready(conn):
            try:
                adoption.adopt(conn)
            except psycopg.errors.InsufficientPrivilege:
                raise
            except (psycopg.errors.ProgrammingError, psycopg.errors.DataError) as exc:
                raise OperatorError(
                    f"adopting the old system's registries failed and was rolled back ({type(exc).__name__}, "
                    f"SQLSTATE {exc.sqlstate}); the migrations are applied, no old row was changed. Compare "
                    "registros_ov_s3 / s3_files_registry_old with CONTRACT §6 and run `ov-assets migrate` again."
                ) from exc
    return done
