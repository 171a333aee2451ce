"""The load of a run's partitions into PostgreSQL (CONTRACT §6): one COPY of the winners per
empresa (straight into the table when none of them is stored yet, else into a staging table
followed by set-based statements), all in ONE transaction under one advisory lock per partition
(taken in sorted order), whatever the number of partitions of the run.

- new radicados are inserted;
- a changed row is updated only when the incoming extraction is not older than the stored one
  (adopted rows, ``archivo_origen IS NULL``, count as older than anything), and its previous
  version goes to ``ov_{empresa}_history``;
- unchanged rows are counted as duplicates and not touched (idempotency);
- rejects are upserted into ``ov_rejects`` (``last_seen_at`` moves; a file name that loads
  later resolves its rejects, ``resolved_at``), one audit row is appended
  per partition and run (a retry of the same run after a lost COMMIT acknowledgement adds none:
  the row of the load that committed stays); the counts are grouped per partition from the
  staged ``partition_date``. The rejects and audit rows are written by ``audit``, the
  partition's ``ov_quality_daily`` row by ``quality``; the table names are in ``tables``.

Why one transaction per run, not per partition: the fixed costs of a transaction (COMMIT's
WAL flush, a handful of statements and round trips, the lock) dominated the old per-partition
load (~6,500 rows/s); per run they are paid once for up to 14 partitions. The price is that a
run commits its whole range or nothing, which keeps "a whole partition commits or nothing does".

Two loads of the same partition (or overlapping ranges) serialize on the locks; a killed load
leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.core.checkpoints import checkpoint
from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.warehouse.audit import LoadCounts, record_audit, resolve_rejects, upsert_rejects
from ov_assets.warehouse.derived import phone_e164_columns
from ov_assets.warehouse.quality import record_quality
from ov_assets.warehouse.tables import DERIVED_COLUMNS, LOAD_COLUMNS, SCHEMA, TABLE_COLUMNS, lock_key, table_name

# Callers import these from here: the load's names, wherever they live.
__all__ = [
    "LOAD_COLUMNS",
    "SCHEMA",
    "TABLE_COLUMNS",
    "LoadCounts",
    "load_partition",
    "load_partitions",
    "lock_key",
    "resolve_rejects",
    "stage_csv_chunks",
    "table_name",
    "text_array",
    "upsert_rejects",
]


def _ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def _cols(names: tuple[str, ...], prefix: str | None = None) -> sql.Composed:
    if prefix:
        return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _newer_or_equal() -> sql.SQL:
    """The incoming version (s) may replace the stored one (t)."""
    return sql.SQL(
        "(t.archivo_origen IS NULL OR t.fecha_extraccion IS NULL OR "
        '(s.fecha_extraccion, s.archivo_origen COLLATE "C") >= (t.fecha_extraccion, t.archivo_origen COLLATE "C"))'
    )


# One temporary staging table per empresa and session, created once (no catalog churn per
# transaction) and emptied at every commit. ``partition_date`` groups the per-partition counts
# of a range load.
def _stage_table(empresa: str) -> str:
    return f"ov_stage_{table_name(empresa)}"


def _stage_ddl(empresa: str) -> str:
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {_stage_table(empresa)} (partition_date DATE, "
        + ", ".join("fecha TIMESTAMP" if f == "fecha" else f"{f} TEXT" for f in BUSINESS_FIELDS)
        + ", hash_registro TEXT, fecha_extraccion TIMESTAMP, archivo_origen TEXT, warnings JSONB, "
        + ", ".join(f"{c} TEXT" for c in DERIVED_COLUMNS)
        + ") ON COMMIT DELETE ROWS"
    )


# Rows per CSV chunk: the server parses one chunk while polars writes the next (2 cores), and a
# chunk (~0.5 MB) stays far below libpq's send buffer limits.
_CSV_ROWS = 2000


def stage_csv_chunks(winners: pl.DataFrame, with_partition: bool = False) -> Iterator[bytes]:
    """The winners as CSV in ``LOAD_COLUMNS`` order (``partition_date`` first when
    ``with_partition``), as COPY reads them, in chunks of ``_CSV_ROWS`` rows (polars writes
    them in native code: no Python loop per row). Empty strings are quoted, NULL is empty."""
    warnings_json = (
        pl.format("[{}]", pl.col("warnings").list.eval(pl.format('"{}"', pl.element())).list.join(","))
        .fill_null("[]")
        .alias("warnings")
    )
    frame = winners.select(
        *(["partition_date"] if with_partition else []),
        *[pl.col("fecha_dt").alias("fecha") if f == "fecha" else pl.col(f) for f in BUSINESS_FIELDS],
        "hash_registro",
        "fecha_extraccion",
        pl.col("file_name").alias("archivo_origen"),
        warnings_json,
        *phone_e164_columns(winners),
    )
    for chunk in frame.iter_slices(_CSV_ROWS):
        buf = io.BytesIO()
        chunk.write_csv(buf, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.f", null_value="")
        yield buf.getvalue()


def _copy(
    conn: psycopg.Connection, target: sql.Composable, columns: sql.Composable, chunks: Iterable[bytes], rows: int
) -> None:
    """COPY ``chunks`` of CSV (``rows`` rows in all) into ``target``: each chunk is sent as soon
    as it is written."""
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, columns)) as copy:
        sent, halfway = 0, False
        for chunk in chunks:
            n = min(_CSV_ROWS, rows - sent)
            if not halfway and sent + n > rows // 2:
                cut, halfway = len(chunk) // 2, True
                copy.write(chunk[:cut])
                checkpoint("copy")  # tests: killed with about half the rows sent
                chunk = chunk[cut:]
            copy.write(chunk)
            sent += n


def _stage(conn: psycopg.Connection, empresa: str, winners: pl.DataFrame, fresh: bool) -> None:
    """One COPY of ``winners`` (sorted by radicado, so every later statement meets the keys in
    the same order as a concurrent load would) into the session's staging table."""
    conn.execute(_stage_ddl(empresa))
    if not fresh:
        conn.execute(f"TRUNCATE {_stage_table(empresa)}")  # a second wave in one transaction (rare)
    _copy(
        conn,
        sql.Identifier(_stage_table(empresa)),
        sql.SQL("partition_date, {}").format(_cols(LOAD_COLUMNS)),
        stage_csv_chunks(winners, with_partition=True),
        winners.height,
    )


def text_array(values: pl.Series) -> str:
    """``values`` as one PostgreSQL text-array literal, built by polars in native code: a
    7,000-element list of str costs psycopg ~10 ms to adapt in Python, this ~0.3 ms. Every
    element is double-quoted with ``\\`` and ``"`` escaped, so no value can break out of it."""
    values = values.drop_nulls()
    if values.is_empty():
        return "{}"
    quoted = (
        values.cast(pl.String).str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    )
    return "{" + ('"' + quoted + '"').str.join(",").item() + "}"


@contextmanager
def _index_joins(conn: psycopg.Connection) -> Iterator[None]:
    """Joins of the staged rows with the table go through the table's unique index (a nested
    loop), for this transaction's statements inside the block, then the session's own settings
    come back. Why: a run stages a few thousand rows against a table of hundreds of thousands;
    without statistics on the temporary staging table (and often stale ones on the table right
    after a backfill) the planner hashes the whole table for every run, making each reload run
    cost O(table) instead of O(run) (measured: 86 ms against 23 ms for 7,000 rows in 100,000)."""
    saved = conn.execute(
        "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'), "
        "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
    ).fetchone()
    assert saved is not None  # a SELECT without FROM returns one row
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute(
                "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
                (saved[0], saved[1]),
            )


def _per_day(rows: list[tuple[Any, ...]]) -> dict[dt.date, tuple[int, ...]]:
    return {r[0]: tuple(int(x or 0) for x in r[1:]) for r in rows}


def _compare(conn: psycopg.Connection, table: sql.Identifier, stage: sql.Identifier) -> dict[dt.date, tuple[int, ...]]:
    """Per partition of the staged rows: (unchanged, older than stored, stored)."""
    return _per_day(
        conn.execute(
            sql.SQL(
                "SELECT s.partition_date, count(*) FILTER (WHERE t.hash_registro = s.hash_registro), "
                "count(*) FILTER (WHERE t.hash_registro IS DISTINCT FROM s.hash_registro AND NOT {newer}), "
                "count(*) "
                "FROM {stage} s JOIN {table} t USING (numero_radicado) GROUP BY 1"
            ).format(table=table, stage=stage, newer=_newer_or_equal())
        ).fetchall()
    )


def _replace_newer(
    conn: psycopg.Connection, table: sql.Identifier, history: sql.Identifier, stage: sql.Identifier, run_id: str
) -> dict[dt.date, tuple[int, ...]]:
    """One statement: lock the stored rows that a staged version replaces (different and not
    older; in key order), copy them to history and update them. Per partition: (updated,)."""
    # ``old`` carries both versions (the incoming one as ``_new_*``), so the UPDATE finds its
    # rows by primary key without joining the staging table again.
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = old.{}").format(sql.Identifier(c), sql.Identifier(f"_new_{c}")) for c in LOAD_COLUMNS
    )
    incoming = sql.SQL(", ").join(
        sql.SQL("s.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"_new_{c}")) for c in LOAD_COLUMNS
    )
    return _per_day(
        conn.execute(
            sql.SQL(
                "WITH old AS ("
                "  SELECT s.partition_date AS _day, {tcols}, {incoming} "
                "  FROM {table} t JOIN {stage} s USING (numero_radicado) "
                "  WHERE t.hash_registro IS DISTINCT FROM s.hash_registro AND {newer} "
                "  ORDER BY t.numero_radicado FOR UPDATE OF t), "
                "upd AS ("
                "  UPDATE {table} t SET {assignments}, archivos_s3_urls = '[]'::jsonb, "
                "  procesado_flag = FALSE, updated_at = now() "
                "  FROM old WHERE t.id = old.id), "
                "hist AS (INSERT INTO {history} (replaced_by_run, {cols}) SELECT %s, {cols} FROM old) "
                "SELECT _day, count(*) FROM old GROUP BY 1"
            ).format(
                history=history,
                cols=_cols(TABLE_COLUMNS),
                tcols=_cols(TABLE_COLUMNS, "t"),
                incoming=incoming,
                table=table,
                stage=stage,
                newer=_newer_or_equal(),
                assignments=assignments,
            ),
            (run_id,),
        ).fetchall()
    )


def _upsert_wave(
    conn: psycopg.Connection, empresa: str, winners: pl.DataFrame, run_id: str, fresh: bool
) -> dict[dt.date, LoadCounts]:
    """Winners of several partitions of one empresa (each radicado at most once), inside the
    caller's transaction: one COPY, then set-based statements, counts grouped by partition.

    Fast path (a first load): when the target holds none of the radicados, one COPY into the
    table itself, as fast as a plain COPY (no staging, no compare, no speculative insertion).
    General path: COPY into the staging table, then 1. compare (unchanged / older / stored, per partition); 2. one statement that
    locks the rows to replace (in key order), copies their current version to history and
    updates them; 3. insert the radicados not stored yet; 4. only when that INSERT skipped a
    radicado that a concurrent load committed meanwhile: 1 and 2 again, so the winner rule (not
    the order of the commits) decides which version the table keeps.
    """
    table = _ident(SCHEMA, table_name(empresa))
    history = _ident(SCHEMA, f"{table_name(empresa)}_history")
    stage = sql.Identifier(_stage_table(empresa))
    staged = dict(winners.group_by("partition_date").len().iter_rows())
    out = {day: LoadCounts() for day in staged}
    row = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} WHERE numero_radicado = ANY(%s::text[]))").format(table=table),
        (text_array(winners["numero_radicado"]),),
    ).fetchone()
    assert row is not None  # SELECT EXISTS returns one row
    (any_stored,) = row
    if not any_stored:
        # First load of these radicados: the COPY goes straight into the table (what the floor
        # does), under a savepoint. A concurrent load of another partition that inserted one of
        # them since (its fecha moved) makes the COPY fail: undone, the general path runs.
        checkpoint("insert")  # tests: a concurrent load inserts one of our radicados here
        try:
            with conn.transaction():  # a savepoint
                _copy(conn, table, _cols(LOAD_COLUMNS), stage_csv_chunks(winners), winners.height)
            for day, n in staged.items():
                out[day].db_inserted = n
            return out
        except psycopg.errors.UniqueViolation:
            pass
    _stage(conn, empresa, winners, fresh)
    with _index_joins(conn):
        # General path (reloads; or the race above).
        compare = _compare(conn, table, stage)
        stored_total = 0
        for day, (dups, older, stored) in compare.items():
            out[day].db_duplicates, out[day].db_skipped_older = dups, older
            stored_total += stored
        if any(stored - dups - older > 0 for dups, older, stored in compare.values()):
            for day, (n,) in _replace_newer(conn, table, history, stage, run_id).items():
                out[day].db_updated = n
        if winners.height > stored_total:
            checkpoint("insert_new")  # tests: a load of another partition inserts one of ours here
            inserted = _per_day(
                conn.execute(
                    sql.SQL(
                        "WITH ins AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} s "
                        "  WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.numero_radicado = s.numero_radicado) "
                        "  ON CONFLICT (numero_radicado) DO NOTHING RETURNING numero_radicado) "
                        "SELECT s.partition_date, count(*) FROM ins JOIN {stage} s USING (numero_radicado) GROUP BY 1"
                    ).format(table=table, cols=_cols(LOAD_COLUMNS), stage=stage)
                ).fetchall()
            )
            for day, (n,) in inserted.items():
                out[day].db_inserted = n
        if any(n > compare.get(day, (0, 0, 0))[2] + out[day].db_inserted for day, n in staged.items()):
            # A radicado our INSERT skipped was inserted meanwhile by a load of another
            # partition (its fecha moved between versions), committed before our INSERT saw
            # it. Every staged radicado is stored now: compare again (this statement's snapshot
            # sees that row) and let the winner rule decide, in this transaction. Rows we wrote
            # now equal ours, so they count once, as inserted or updated.
            compare = _compare(conn, table, stage)
            again = _replace_newer(conn, table, history, stage, run_id)
            for day in staged:
                dups, older, _ = compare.get(day, (0, 0, 0))
                c = out[day]
                c.db_duplicates = dups - c.db_inserted - c.db_updated
                c.db_skipped_older = older
                c.db_updated += again.get(day, (0,))[0]
    return out


def _upsert_empresa(
    conn: psycopg.Connection, empresa: str, winners: pl.DataFrame, run_id: str, fresh: bool
) -> dict[dt.date, LoadCounts]:
    """All of one empresa's winners of the run. A radicado that is a winner in several
    partitions of the run (its fecha moved between extractions) is applied partition by
    partition, oldest day first, exactly as single-partition runs in day order would: wave k
    holds each radicado's k-th partition. Normally there is one wave."""
    ordered = winners.sort("numero_radicado", "partition_date")
    if ordered["numero_radicado"].n_unique() == ordered.height:
        waves = [ordered]
    else:
        ranked = ordered.with_columns(pl.int_range(pl.len()).over("numero_radicado").alias("_wave"))
        last = ranked["_wave"].max()
        assert isinstance(last, int)  # an int_range over rows: never empty here
        waves = [ranked.filter(pl.col("_wave") == k).drop("_wave") for k in range(last + 1)]
    out: dict[dt.date, LoadCounts] = {}
    for wave in waves:
        counts = _upsert_wave(conn, empresa, wave, run_id, fresh)
        fresh = False
        for day, c in counts.items():
            out[day] = out.get(day, LoadCounts()).add(c)
    return out


def load_partitions(
    conn: psycopg.Connection,
    empresa_day_keys: Iterable[tuple[str, dt.date]],
    frame: pl.DataFrame,
    run_id: str,
    dry_run: bool = False,
) -> dict[tuple[str, dt.date], LoadCounts]:
    """Load the partitions ``(empresa, day)`` of a run (rows of ``frame`` from ``pqr_records``)
    in ONE transaction: the whole range commits or nothing does.

    The per-partition advisory locks are taken first, in sorted order (two runs with
    overlapping ranges wait for each other, never deadlock); then per empresa one COPY of all
    the range's winners and set-based statements whose counts are grouped by partition; one
    statement for the rejects and one for the audit rows (one per partition). With ``dry_run``
    everything is computed and rolled back: the counts say what would happen."""
    keys = sorted(set(empresa_day_keys))
    for empresa, _ in keys:
        table_name(empresa)  # validates
    started = dt.datetime.now(dt.UTC)
    wanted = pl.DataFrame(
        {"empresa": [e for e, _ in keys], "partition_date": [d for _, d in keys]},
        schema={"empresa": pl.String(), "partition_date": pl.Date()},
    )
    part = frame.join(wanted, on=["empresa", "partition_date"], how="semi")
    out = {k: LoadCounts() for k in keys}
    seen = part.group_by("empresa", "partition_date").agg(
        pl.len().alias("files_seen"),
        (pl.col("status") == "valid").sum().alias("records_valid"),
        (pl.col("status") == "rejected").sum().alias("rejected"),
    )
    for empresa, day, files_seen, valid, rejected in seen.iter_rows():
        c = out[(empresa, day)]
        c.files_seen, c.records_valid, c.rejected = files_seen, valid, rejected
    # The staging tables are emptied at every commit: empty now unless the caller already holds
    # a transaction (then ours is a savepoint and an earlier load may have staged rows).
    fresh = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction(force_rollback=dry_run):
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) WITH ORDINALITY AS u(k, i)",
            ([lock_key(e, d) for e, d in keys],),
        )  # a function scan yields the array in order: the locks are taken in sorted order
        winners = part.filter(pl.col("is_winner"))
        for empresa in sorted({e for e, _ in keys}):
            mine = winners.filter(pl.col("empresa") == empresa)
            if mine.is_empty():
                continue
            for day, c in _upsert_empresa(conn, empresa, mine, run_id, fresh).items():
                won = out[(empresa, day)]
                won.db_inserted, won.db_updated = c.db_inserted, c.db_updated
                won.db_duplicates, won.db_skipped_older = c.db_duplicates, c.db_skipped_older
        upsert_rejects(conn, part.filter(pl.col("status") == "rejected"))
        resolve_rejects(conn, part)
        record_quality(conn, keys, part)  # ov_quality_daily, from what this transaction did
        record_audit(conn, run_id, started, out)
        checkpoint("commit")  # tests: killed with everything written but not committed
    return out


def load_partition(
    conn: psycopg.Connection,
    empresa: str,
    day: dt.date,
    frame: pl.DataFrame,
    run_id: str,
    dry_run: bool = False,
) -> LoadCounts:
    """Load one partition's frame (from ``pqr_records``) in one transaction (see
    ``load_partitions``)."""
    return load_partitions(conn, [(empresa, day)], frame, run_id, dry_run=dry_run)[(empresa, day)]
