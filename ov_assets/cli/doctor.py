"""``ov-assets doctor``: every connection the pipeline needs, checked in one command, one line per
check: ``OK ...`` or ``FAIL ...: what to do``; exit status 0 only when every check passed.

PostgreSQL, the bucket, each configured portal (through ``portal-check``'s probe) and the Dagster
instance are checked with the settings the runs use (the same resources, from the environment),
each on its own: a wrong database password still lets the bucket, the portals and the instance
be checked. Lines name settings, counts and keys, never a secret or a value read from a portal.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from ov_assets import settings
from ov_assets.core.contract import EMPRESAS, today_bogota
from ov_assets.core.health import Health, first_line
from ov_assets.errors import OperatorError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check PostgreSQL, the bucket, the portals and the Dagster instance; one line each, exit 0 when all pass",
    )
    p.add_argument(
        "--write", action="store_true", help="also put, head and delete a probe key under S3_BASE_PATH/doctor/"
    )
    p.add_argument("--skip-portal", action="store_true", help="do not log in to the portals")
    p.add_argument("--empresa", action="append", choices=EMPRESAS, help="portals to check (default: both)")
    p.add_argument(
        "--day", type=dt.date.fromisoformat, default=None, help="portal probe day, YYYY-MM-DD (default: yesterday)"
    )
    p.add_argument(
        "--profile",
        default="",
        help="AWS profile that reads the bucket's configuration (aws/iam-policy-admin.json); default: the runtime credentials",
    )
    p.set_defaults(fn=run)


def _guarded(section: str, check: Callable[[], list[Health]]) -> list[Health]:
    """A section's lines; an error escaping it becomes its one FAIL line (never a traceback)."""
    try:
        return check()
    except OperatorError as exc:
        return [Health(section, False, first_line(str(exc), 600))]
    except Exception as exc:  # noqa: BLE001 - doctor reports every section, whatever one of them raises
        return [Health(section, False, f"unexpected {type(exc).__name__}: {first_line(str(exc), 200)}")]


def _postgres() -> list[Health]:
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.warehouse.health import postgres_health

    with dg.build_resources({"postgres": resources_from_env()["postgres"]}) as built:
        pg = built.postgres
        return postgres_health(pg.conninfo(), pg.target, pg.environment)


def _bucket(args: argparse.Namespace) -> list[Health]:
    import boto3
    import dagster as dg
    from botocore.exceptions import ProfileNotFound

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.objects.health import bucket_health

    with dg.build_resources({"object_store": resources_from_env()["object_store"]}) as built:
        # Two attempts, not a run's eight: an operator is waiting, and one retry still rides out a blip.
        res = built.object_store.model_copy(update={"max_attempts": 2})
        store = res.open()
        admin, out = None, []
        if args.profile:
            try:
                admin = boto3.session.Session(profile_name=args.profile).client(
                    "s3", region_name=res.s3.region_name or None, endpoint_url=res.s3.endpoint_url or None
                )
            except ProfileNotFound:
                out.append(
                    Health(
                        "bucket profile",
                        False,
                        f"AWS profile {args.profile!r} not found: check --profile and the AWS config and "
                        "credentials files of this user (the configuration below is read with the runtime credentials)",
                    )
                )
        return out + bucket_health(store, res.base_path, res.kms_key_id, admin, args.write)


def _portals(args: argparse.Namespace) -> list[Health]:
    """Each empresa's portal through ``portal-check``'s probe, when it is configured; the
    replica (development) is only said, never probed."""
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.portal.politeness import portal_key
    from ov_assets.portal.probe import probe_portal

    day = args.day or today_bogota() - dt.timedelta(days=1)
    artifacts = Path(settings.data_dir()).resolve() / "artifacts"
    out = []
    with dg.build_resources({"portal": resources_from_env()["portal"]}) as built:
        portal = built.portal
        for empresa in args.empresa or EMPRESAS:
            name = f"portal {empresa}"
            prefix = f"OV_{empresa.upper()}_"

            def probe(empresa: str = empresa, name: str = name, prefix: str = prefix) -> list[Health]:
                if portal.uses_replica(empresa):  # production: ConfigurationError naming the variables
                    return [
                        Health(
                            name,
                            True,
                            f"not configured ({prefix}PORTAL_URL/_USER/_PASSWORD unset): runs extract from the "
                            "local replica portal (development only)",
                        )
                    ]
                with portal.scraper_configs([empresa]) as config_for:
                    config = config_for(empresa)
                    report = probe_portal(config, day, artifacts)
                return [report.health(f"{portal_key(config.base_url)} ({prefix}PORTAL_URL), day {day}")]

            out += _guarded(name, probe)
    return out


def _dagster() -> list[Health]:
    from ov_assets.defs.instance_health import instance_health

    home = settings.dagster_home(Path(settings.data_dir()).resolve() / "dagster_home")
    return instance_health(home.resolve(), settings.environment())


def run(args: argparse.Namespace) -> int:
    sections: list[tuple[str, Callable[[], list[Health]]]] = [
        ("postgres", _postgres),
        ("bucket", lambda: _bucket(args)),
        ("dagster instance", _dagster),
    ]
    if not args.skip_portal:
        sections.insert(2, ("portals", lambda: _portals(args)))
    results: list[Health] = []
    for section, check in sections:
        for health in _guarded(section, check):
            results.append(health)
            print(health.line(), flush=True)
    if args.skip_portal:
        print("SKIP portals: --skip-portal given; check them with `ov-assets portal-check --empresa ...`")
    failed = [h for h in results if not h.ok]
    if failed:
        print(f"doctor: {len(failed)} of {len(results)} checks failed: fix the FAIL lines above, then run it again")
        return 1
    print(f"doctor: all {len(results)} checks passed")
    return 0
