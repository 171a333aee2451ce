"""``ov-assets``: operator commands (migrate, generate, demo, status, cleanup, s3-setup,
portal-check, scrape, and one module per further command beside this file).

Everything here calls the same code the assets use; nothing is a separate code path. A command
with more than a few lines lives in its own module of this package, which defines
``register(sub)`` (adds its parser, ``set_defaults(fn=...)``); ``main`` finds those modules
itself, so adding a command never edits this file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ov_assets import settings
from ov_assets.core.contract import EMPRESAS, today_bogota


@contextmanager
def _resources() -> Iterator[Any]:
    """The definitions' resources initialized as in a run (EnvVar secrets resolved): Dagster's
    ``Resources``, whose attributes (``.postgres``, ``.object_store``) are made at run time."""
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env

    res = resources_from_env()
    with dg.build_resources({k: res[k] for k in ("postgres", "object_store")}) as built:
        yield built


def _data_dir() -> Path:
    return Path(settings.data_dir()).resolve()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations of ``sql/`` (as the schema owner), or ``--list`` them with
    their state (applied / pending / changed) without changing anything."""
    from ov_assets.warehouse import adoption, migrations

    with _resources() as res, res.postgres.connect(migrate=False) as conn:
        postgres = res.postgres
        if not args.list:
            applied_now = migrations.apply_all(conn)
            print(f"{postgres.target}: applied {', '.join(applied_now) or 'nothing (up to date)'}")
        states = migrations.status(conn)
        for s in states:
            when = f" {s.applied_at:%Y-%m-%d %H:%M:%S%z}" if s.applied_at else ""
            print(f"{s.version:40} {s.state}{when}")
        for line in adoption.report(conn).lines():  # counts only: the old tables hold personal data
            print(line)
    return 1 if args.list and any(s.state != "applied" for s in states) else 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ov_assets.devkit import generator

    days = [today_bogota() - dt.timedelta(days=i) for i in range(args.days)]
    out = generator.write_days(_data_dir(), days, tuple(args.empresa or EMPRESAS), n=args.per_day, seed=args.seed)
    print(f"wrote {sum(len(g.files) for g in out)} files for {len(out)} partitions under {_data_dir()}")
    return 0


def run_partitions(
    partition_keys: list[str], dagster_home: Path, resources: Mapping[str, object] | None = None
) -> list[tuple[str, bool]]:
    """Run ``pqr_pipeline_job`` for each partition in this process, recorded in the Dagster
    instance at ``dagster_home`` (so ``dagster dev`` on it shows the runs), with ``resources``
    in place of the definitions' own (the demo's data folder and replica size)."""
    import dagster as dg

    from ov_assets.definitions import defs
    from ov_assets.defs import backfill

    job = defs.resolve_job_def("pqr_pipeline_job")
    results = []
    with dg.DagsterInstance.from_config(str(dagster_home.resolve())) as instance:
        for key in partition_keys:
            run = backfill.run_partitions(job, instance, [key], {}, resources)
            results.append((key, run.ok))
            print(f"  {key}: {'success' if run.ok else 'FAILED'} (run {run.run_id})")
    return results


def cmd_demo(args: argparse.Namespace) -> int:
    from ov_assets.cli.status import summary
    from ov_assets.defs.resources import resources_from_env
    from ov_assets.devkit import generator

    data_dir = _data_dir()  # owner-only since main()
    home = settings.dagster_home(data_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    days = [today_bogota() - dt.timedelta(days=i) for i in range(args.days)][::-1]
    # The source is the local replica portal (no OV_*_PORTAL_URL set): raw_pqr_files extracts
    # each day's PQRs from it with the real scraper; a few broken files are dropped by hand
    # so the rejects show.
    resources = resources_from_env(data_dir=str(data_dir), replica_per_day=args.per_day)
    print(
        f"1/3 broken demo files for {days[0]}..{days[-1]} into {data_dir}/downloads (PQRs come from the replica portal)"
    )
    for day in days:
        for empresa in EMPRESAS:
            generator.write_broken_files(data_dir, empresa, day)
    keys = [f"{d.isoformat()}|{e}" for d in days for e in EMPRESAS]
    print(
        f"2/3 extracting from the replica portal and materializing raw_pqr_files -> pqr_records -> pqr_table -> pqr_s3_objects for {len(keys)} partitions"
    )
    results = run_partitions(keys, home, resources)
    print("3/3 summary")
    print(summary())
    print(
        f"\nOpen the UI: bash scripts/ui.sh  (DAGSTER_HOME={home}, OV_DATA_DIR={data_dir}), then http://127.0.0.1:3000"
    )
    return 0 if all(ok for _, ok in results) else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete landing files verified in the object store and older than the retention."""
    from ov_assets.landing.cleanup import cleanup_landing
    from ov_assets.landing.index import LandingIndex

    with _resources() as res, res.postgres.connect() as conn:
        if not args.dry_run:  # (issue 16: a backup before bulk work)
            from ov_assets.cli.backup import backup_before

            backup_before(res, "cleanup", skip=args.no_backup)
        store = res.object_store.open()
        report = cleanup_landing(
            LandingIndex(_data_dir()), conn, store, retention=args.retention_days, dry_run=args.dry_run
        )
    for path in report.deleted if args.verbose else []:
        print(f"  {'would delete' if args.dry_run else 'deleted'} {path.name}")
    for empresa, c in report.per_empresa.items():
        print(f"  {empresa}: {c['files']} files, {c['bytes']} bytes, {c['records']} records")
    print(report.summary())
    for name in report.unproven:  # file names: SGC and timestamps, no personal data
        print(f"  kept, not proven in the bucket: {name}")
    return 0


def cmd_portal_check(args: argparse.Namespace) -> int:
    """Probe an empresa's portal before enabling schedules: the scraper's settings and
    selectors, nothing downloaded, nothing personal printed (``ov_assets.portal.probe``)."""
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.portal.probe import portal_check

    day = args.day or today_bogota() - dt.timedelta(days=1)
    with dg.build_resources({"portal": resources_from_env()["portal"]}) as built:
        portal = built.portal
        prefix = f"OV_{args.empresa.upper()}_"
        source = (
            f"local replica portal: no {prefix}PORTAL_URL/_USER/_PASSWORD set"
            if portal.uses_replica(args.empresa)
            else f"{prefix}PORTAL_URL"
        )
        with portal.scraper_configs([args.empresa]) as config_for:
            config = config_for(args.empresa)
            return portal_check(config, day, Path(settings.data_dir()).resolve() / "artifacts", source=source)


def cmd_scrape(args: argparse.Namespace) -> int:
    """Extract one day of an empresa's PQRs into its landing folder with the scraper
    ``raw_pqr_files`` uses, from the portal the environment configures (the same resource):
    what the landing folder already holds is not written again. Prints the result as JSON
    (counts and radicados, nothing personal)."""
    import logging

    import dagster as dg

    from ov_assets.core.file_names import landing_dir
    from ov_assets.defs.resources import resources_from_env
    from ov_assets.portal.scraper import landing_state, scrape_day

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = landing_dir(_data_dir(), args.empresa)
    with dg.build_resources({"portal": resources_from_env()["portal"]}) as built:
        portal = built.portal
        with portal.scraper_configs([args.empresa]) as config_for:
            result = scrape_day(
                config_for(args.empresa), args.day, folder, landing_state(folder).hashes, portal.artifacts_dir
            )
    print(json.dumps(result.to_dict()))
    return 0


def cmd_s3_setup(args: argparse.Namespace) -> int:
    """Apply ``aws/``'s bucket configuration (or print an IAM policy filled in), for the bucket
    and settings of the environment (CONTRACT §8)."""
    import boto3

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.errors import ConfigurationError, translate_aws_error
    from ov_assets.objects import bucket_setup

    res = resources_from_env()["object_store"]
    bucket = args.bucket or res.bucket
    if not bucket:
        raise ConfigurationError("s3-setup needs a bucket: set AWS_S3_BUCKET_NAME or pass --bucket")
    if args.print_policy:
        print(
            json.dumps(
                bucket_setup.render(
                    args.print_policy,
                    bucket,
                    res.base_path,
                    res.s3.region_name or "",
                    args.account_id or "",
                    res.kms_key_id,
                ),
                indent=2,
            )
        )
        return 0
    client = boto3.session.Session(profile_name=args.profile or None).client(
        "s3", region_name=res.s3.region_name or None, endpoint_url=res.s3.endpoint_url or None
    )
    try:
        done = bucket_setup.apply(client, bucket, res.base_path, res.kms_key_id, dry_run=args.dry_run)
    except Exception as exc:
        translated = translate_aws_error(exc, bucket, res.s3.region_name)
        if translated is exc:
            raise
        raise translated from exc
    for line in done:
        print(f"{'would apply' if args.dry_run else 'applied'} to s3://{bucket}: {line}")
    return 0


def _command_modules() -> list[Any]:
    """The modules of this package that define a command (``register(sub)``), by name.

    Their heavy imports (Dagster, boto3, Playwright) stay inside their functions, so listing them
    costs milliseconds."""
    import importlib
    import pkgutil

    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            found.append(module)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ov-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="apply (or --list) the migrations of sql/")
    p.add_argument("--list", action="store_true")
    p.set_defaults(fn=cmd_migrate)
    p = sub.add_parser("generate", help="write synthetic landing files")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--per-day", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--empresa", action="append", choices=EMPRESAS)
    p.set_defaults(fn=cmd_generate)
    p = sub.add_parser(
        "demo", help="extract the last days from the replica portal (plus broken files) and materialize both empresas"
    )
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--per-day", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("cleanup", help="delete landing files already verified in the object store")
    p.add_argument("--dry-run", action="store_true", help="report what would be freed; delete nothing")
    p.add_argument("--retention-days", type=int, default=None, help="default: OV_RETENTION_DAYS or 30")
    p.add_argument("--verbose", action="store_true", help="list every file")
    p.add_argument("--no-backup", action="store_true", help="skip the backup of data_general taken before deleting")
    p.set_defaults(fn=cmd_cleanup)
    p = sub.add_parser(
        "portal-check",
        help="probe an empresa's portal (login, list, filter, one detail) before "
        "enabling schedules; exit 0 only when everything the scraper needs is there",
    )
    p.add_argument("--empresa", required=True, choices=EMPRESAS)
    p.add_argument(
        "--day",
        type=dt.date.fromisoformat,
        default=None,
        help="YYYY-MM-DD, a day with PQRs (default: yesterday, Bogotá)",
    )
    p.set_defaults(fn=cmd_portal_check)
    p = sub.add_parser("scrape", help="extract one day of an empresa's PQRs from its portal into the landing folder")
    p.add_argument("--empresa", required=True, choices=EMPRESAS)
    p.add_argument("--day", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD (the PQRs' fecha)")
    p.set_defaults(fn=cmd_scrape)
    p = sub.add_parser("s3-setup", help="apply aws/ bucket versioning, lifecycle, encryption (admin credentials)")
    p.add_argument("--bucket", default="", help="default: AWS_S3_BUCKET_NAME")
    p.add_argument("--profile", default="", help="AWS profile with aws/iam-policy-admin.json (default chain otherwise)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--print-policy", choices=("runtime", "admin"), help="print an IAM policy filled in, apply nothing")
    p.add_argument("--account-id", default="", help="for the KMS key ARN in --print-policy runtime")
    p.set_defaults(fn=cmd_s3_setup)
    for module in _command_modules():
        module.register(sub)
    args = parser.parse_args(argv)
    from ov_assets.errors import OperatorError

    settings.private_data_dir()  # owner-only from the first file a command writes

    try:
        return args.fn(args)
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
