"""``ov-assets import-landing PATH [--empresa E]``: an old system's landing folder copied into
the landing folder (``ov_assets.landing.import_old``), then a report of what was taken, what was
already there and what was refused (names and counts, never a record's content)."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlparse

from ov_assets import settings
from ov_assets.core.contract import EMPRESAS
from ov_assets.errors import OperatorError


def _configured_portal_hosts() -> dict[str, str]:
    """host -> empresa of the portals OV_{EMPRESA}_PORTAL_URL configure (records name them)."""
    hosts = {}
    urls = {"afinia": settings.env_str("OV_AFINIA_PORTAL_URL"), "aire": settings.env_str("OV_AIRE_PORTAL_URL")}
    for empresa, url in urls.items():
        host = urlparse(url).hostname if url else None
        if host:
            hosts[host.lower()] = empresa
    return hosts


def cmd_import_landing(args: argparse.Namespace) -> int:
    from ov_assets.landing.import_old import import_landing

    source = Path(args.path)
    if not source.is_dir():
        raise OperatorError(f"{args.path}: not a folder; give the old system's landing folder (or its data folder)")
    data_dir = Path(settings.data_dir()).resolve()
    report = import_landing(source, data_dir, args.empresa, portal_hosts=_configured_portal_hosts())
    print(f"import of {source} into {data_dir}/downloads/{{empresa}}/oficina_virtual/processed/")
    for line in report.lines():
        print(line)
    return 1 if report.refused else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-landing",
        help="copy an old landing folder into the landing folder (atomically, names kept, nothing overwritten)",
    )
    p.add_argument("path", help="the old folder (flat, or the old data/ folder with downloads/{empresa}/...)")
    p.add_argument(
        "--empresa",
        choices=EMPRESAS,
        default=None,
        help="every file is this empresa's (default: from the folder names, else from each record's page_url)",
    )
    p.set_defaults(fn=cmd_import_landing)
