"""``ov-assets backfill --from YYYY-MM-DD --to YYYY-MM-DD [--empresa E ...] [--files-only]
[--tables-only] [--days-per-run N]``: a range of days loaded in this one process, newest day
first, without the daemon; resumable (run the same command again), one progress line per
partition (README "Loading the history")."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from ov_assets import settings
from ov_assets.core.contract import EMPRESAS, today_bogota
from ov_assets.core.history_plan import BACKUP_OVER_DAYS, FILES_DAYS_PER_RUN


def _say(line: str) -> None:
    print(line, flush=True)  # (progress read through a pipe shows at once)


def _command(args: argparse.Namespace, empresas: list[str]) -> str:
    """The command that resumes this load (the same arguments give the same load)."""
    parts = ["ov-assets backfill", f"--from {args.first}", f"--to {args.last}"]
    if args.empresa:
        parts += [f"--empresa {e}" for e in empresas]
    if args.files_only:
        parts.append("--files-only")
    if args.tables_only:
        parts.append("--tables-only")
    if args.days_per_run is not None:
        parts.append(f"--days-per-run {args.days_per_run}")
    if args.no_backup:
        parts.append("--no-backup")
    return " ".join(parts)


def _backup_before_load(no_backup: bool) -> None:
    """Back up ``data_general`` to the bucket before a history load (issue 16 §4): the
    ``backup`` command's ``backup_before`` (``objects.backups.backup_schema``). A failed backup
    stops the load before its first run; ``--no-backup`` says so instead."""
    from ov_assets.cli.backup import backup_before, command_resources

    with command_resources() as res:
        if not no_backup:
            with res.postgres.connect():  # (a first load: the schema is made before it is dumped)
                pass
        backup_before(res, "history-load", skip=no_backup)


def cmd_backfill(args: argparse.Namespace) -> int:
    """Load ``--from``..``--to`` (both included) partition by partition, newest day first."""
    try:
        return _backfill(args)
    except KeyboardInterrupt:  # (before the first run or during the backup: nothing half done)
        _say(f"stopped. Resume with: {_command(args, [e for e in EMPRESAS if e in (args.empresa or EMPRESAS)])}")
        return 130


def _backfill(args: argparse.Namespace) -> int:
    from ov_assets.core import history_plan as hp
    from ov_assets.errors import ConfigurationError

    try:
        hp.check_range(args.first, args.last, today_bogota())
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    days_per_run = args.days_per_run if args.days_per_run is not None else FILES_DAYS_PER_RUN if args.files_only else 1
    if days_per_run < 1:
        raise ConfigurationError(f"--days-per-run {args.days_per_run}: give 1 or more days")
    if settings.environment() == "production" and not settings.env_str("DAGSTER_HOME"):
        raise ConfigurationError(
            "OV_ENV=production and no DAGSTER_HOME: set it to the instance the UI shows "
            "(/var/lib/ov-assets/dagster_home on the host), or the load's runs are recorded where nobody sees them"
        )
    import dagster as dg  # (after the checks: seconds of imports)

    from ov_assets.definitions import defs
    from ov_assets.defs import backfill as bf
    from ov_assets.defs.resources import resources_from_env

    empresas = [e for e in EMPRESAS if e in (args.empresa or EMPRESAS)]
    backfill = hp.backfill_id(args.first, args.last, empresas, args.files_only, args.tables_only)
    resume = f"Resume with: {_command(args, empresas)}"
    data_dir = Path(settings.private_data_dir()).resolve()
    home = settings.dagster_home(data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    partitions = hp.ordered_partitions(args.first, args.last, empresas)
    job = defs.resolve_job_def(bf.job_name(args.files_only, args.tables_only))
    resources = dict(resources_from_env())  # (the environment of now, not of the definitions' import)
    mode = "history-files" if args.files_only else "history"
    with bf.exclusive(home, backfill), dg.DagsterInstance.from_config(str(home)) as instance:
        abandoned = bf.fail_abandoned_runs(instance, backfill)
        if abandoned:
            _say(f"runs left unfinished by a stopped load, marked failed and run again: {', '.join(abandoned)}")
        finished = bf.finished_partitions(instance, backfill, partitions, args.files_only, data_dir, args.tables_only)
        plan = hp.make_plan(partitions, finished)
        _say(
            f"load {backfill}: {len(partitions)} partitions ({plan.days} days x {len(empresas)} empresas, "
            f"{'landing folder only' if args.files_only else 'portal and landing folder'}"
            f"{', tables only (no objects)' if args.tables_only else ''}; up to {days_per_run} days per run), "
            "newest day first; "
            f"{plan.skipped} already finished, skipped; {len(plan.todo)} to run. The runs carry the tag "
            f"{bf.BACKFILL_TAG}={backfill} in the Dagster UI (DAGSTER_HOME={home})."
        )
        if plan.todo and plan.days > hp.BACKUP_OVER_DAYS:
            if bf.load_started(instance, backfill):
                _say("backup: none, this load is resumed (a load takes its backup when it starts)")
            else:
                _backup_before_load(args.no_backup)
        with bf.stop_on_interrupt(_say, resume) as stop:
            try:
                progress = bf.load(job, instance, plan, backfill, mode, _say, stop, resources, days_per_run)
            except bf.Interrupted:
                _say(f"stopped; the partitions of the run in progress run again when resumed. {resume}")
                return 130
    if progress.done < progress.total:
        _say(f"stopped after {progress.done}/{progress.total} partitions ({progress.records} records). {resume}")
        return 130
    _say(
        f"finished: {progress.ran} partitions run, {progress.skipped} skipped (already finished), "
        f"{progress.records} records, {len(progress.failed)} failed"
    )
    if progress.failed:
        _say(
            f"failed partitions: {', '.join(progress.failed)}. Their runs (tag {bf.BACKFILL_TAG}={backfill}) say "
            f"which step failed; run the same command again to retry them (finished ones are skipped)."
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="load a range of days, newest first, in this process (no daemon); resumable: run it again",
        description=__doc__,
    )
    p.add_argument("--from", dest="first", required=True, type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, type=dt.date.fromisoformat, help="last day, YYYY-MM-DD")
    p.add_argument("--empresa", action="append", choices=EMPRESAS, help="repeat for both; default: both")
    p.add_argument(
        "--files-only",
        action="store_true",
        help="load only what the landing folder already holds (pqr_landing_job): no portal, no browser",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="PostgreSQL only, no objects (the history's rows first); with --files-only, the same command "
        "without it stores the objects later (another load: the rows are then unchanged; from the portal it "
        "would extract every day again)",
    )
    p.add_argument(
        "--days-per-run",
        type=int,
        help=f"consecutive days of one empresa per run (default {FILES_DAYS_PER_RUN} with --files-only, else 1); "
        "a failed run is run again day by day",
    )
    p.add_argument(
        "--no-backup",
        action="store_true",
        help=f"skip the backup of data_general taken before a load of more than {BACKUP_OVER_DAYS} days",
    )
    p.set_defaults(fn=cmd_backfill)
