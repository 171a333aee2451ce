"""Forward-only, checksummed migrations from ``sql/``, recorded in ``schema_migrations``.

Applied automatically before the first load of a process and by ``ov-assets migrate``. An
advisory lock makes concurrent runs apply each file once; a file changed after it was applied
is an error (write a new migration instead). Around the files, ``adoption`` sets the old
system's registry aside before 001 and adopts its rows after the last file.

After the files, one repeatable step (as Flyway's ``R__`` migrations): the data dictionary's
``COMMENT ON`` block (``dictionary_render.comments_sql``), recorded under ``DICTIONARY`` with
the SHA-256 of the block and applied again whenever that differs, so a changed description needs
no new migration. Applying a versioned file forgets that record in the file's transaction (a new
table or column needs its comments), so the step follows it even after a crash in between.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ov_assets.core import dictionary_render
from ov_assets.errors import OperatorError
from ov_assets.warehouse import adoption, derived

SQL_DIR = Path(__file__).resolve().parent / "sql"  # package data
_LOCK_KEY = 0x0F_A55E75  # any constant shared by every ov-assets process
# What a migration needs done by code after its SQL, in the same transaction: values only Python
# can derive for the rows already stored (011: the E.164 phones, by phonenumbers).
_AFTER: dict[str, Callable[[psycopg.Connection], object]] = {"011_phone_e164": derived.backfill_phone_e164}
# The repeatable step's row in schema_migrations: not NNN_, so no file of sql/ can take the name.
DICTIONARY = "R_data_dictionary"


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


def dictionary_checksum() -> str:
    """SHA-256 of the dictionary block as this release renders it."""
    return hashlib.sha256(dictionary_render.comments_sql().encode("utf-8")).hexdigest()


def is_versioned(version: str) -> bool:
    """Whether a ``schema_migrations`` row names a file of ``sql/`` (not the repeatable step)."""
    return version != DICTIONARY


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
    state: str  # "applied", "pending" or "changed" (a file edited after it was applied)
    applied_at: object = None


def status(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[MigrationStatus]:
    """Every migration of ``sql/``, then the dictionary step ("pending" when its block changed),
    then any applied one no longer in ``sql/``, with its state."""
    done = applied(conn)
    out = []
    for m in available(sql_dir):
        if m.version not in done:
            out.append(MigrationStatus(m.version, "pending"))
        else:
            checksum, at = done[m.version]
            out.append(MigrationStatus(m.version, "applied" if checksum == m.checksum else "changed", at))
    recorded = done.get(DICTIONARY)
    if recorded is not None and recorded[0] == dictionary_checksum():
        out.append(MigrationStatus(DICTIONARY, "applied", recorded[1]))
    else:  # never applied, or its block changed since: either way it runs again
        out.append(MigrationStatus(DICTIONARY, "pending"))
    known = {m.version for m in available(sql_dir)} | {DICTIONARY}
    out += [MigrationStatus(v, "unknown (not in sql/)", at) for v, (_, at) in sorted(done.items()) if v not in known]
    return out


def ensure_current(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations (the dictionary step included) unless everything is applied
    already (checked read-only, so a least-privilege loader whose schema and comments are current
    never needs DDL rights)."""
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


def _run(version: str, text: str, conn: psycopg.Connection) -> None:
    """Execute one migration's SQL; a failure is an operator message (the transaction rolls it back)."""
    try:
        conn.execute(text)
    except psycopg.errors.InsufficientPrivilege:
        raise  # ensure_current turns it into its own message
    except psycopg.errors.ProgrammingError as exc:  # names schema objects, never row values
        raise OperatorError(
            f"migration {version} failed and was rolled back ({str(exc).splitlines()[0]}); nothing of it "
            "was applied. The schema differs from what it expects: compare with CONTRACT §6 and fix the object named."
        ) from exc
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:  # may quote a row: not shown
        raise OperatorError(
            f"migration {version} failed on the data already in the database ({type(exc).__name__}, "
            f"SQLSTATE {exc.sqlstate}) and was rolled back; nothing of it was applied. Run it by hand "
            "(psql -f) as the schema owner to see the row."
        ) from exc


def _apply_dictionary(conn: psycopg.Connection) -> bool:
    """The repeatable step, in its own transaction: the dictionary block when its checksum is not
    the one recorded. Whether it ran."""
    block = dictionary_render.comments_sql()
    checksum = hashlib.sha256(block.encode("utf-8")).hexdigest()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        row = conn.execute("SELECT checksum FROM public.schema_migrations WHERE version = %s", (DICTIONARY,)).fetchone()
        if row is not None and row[0] == checksum:
            return False
        _run(DICTIONARY, block, conn)
        conn.execute(
            "INSERT INTO public.schema_migrations (version, checksum) VALUES (%s, %s) "
            "ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            (DICTIONARY, checksum),
        )
    return True


def apply_all(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every pending migration, each in its own transaction, then the dictionary step when
    pending; return the versions applied (``DICTIONARY`` last when it ran). The old system's
    registries are set aside first and adopted last (``adoption``), on every call: rows the old
    system added since the last call are adopted too."""
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
            _run(migration.version, migration.sql, conn)
            if migration.version in _AFTER:
                _AFTER[migration.version](conn)
            conn.execute(
                "INSERT INTO public.schema_migrations (version, checksum) VALUES (%s, %s)",
                (migration.version, migration.checksum),
            )
            conn.execute("DELETE FROM public.schema_migrations WHERE version = %s", (DICTIONARY,))
            done.append(migration.version)
    if _apply_dictionary(conn):
        done.append(DICTIONARY)
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
