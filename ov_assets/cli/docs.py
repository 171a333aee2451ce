"""``ov-assets docs RADICADO [--empresa E] [--expires SECONDS]``: a PQR's stored documents (its
JSON, detail PDF and attachments, every version the registry holds as ``uploaded`` or
``pre_existing``), each with a presigned HTTPS GET URL that expires soon (15 minutes by
default). Prints landing file names, sizes and URLs, nothing personal; an unknown radicado, or
one with nothing stored yet, is an operator message and exit status 2."""

from __future__ import annotations

import argparse
import datetime as dt

from ov_assets.core.contract import EMPRESAS

DEFAULT_EXPIRES_S = 900  # 15 minutes: long enough to open a document, too short to become a link


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs", help="presigned URLs (short-lived) of a PQR's stored documents")
    p.add_argument("radicado", help="numero_radicado of the PQR")
    p.add_argument("--empresa", choices=EMPRESAS, default=None, help="default: whichever holds the radicado")
    p.add_argument(
        "--expires",
        type=int,
        default=DEFAULT_EXPIRES_S,
        metavar="SECONDS",
        help=f"lifetime of the URLs (default {DEFAULT_EXPIRES_S}; at most 7 days)",
    )
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.objects.documents import documents

    res = resources_from_env()
    with (
        dg.build_resources({k: res[k] for k in ("postgres", "object_store")}) as built,
        built.postgres.connect() as conn,
    ):
        docs = documents(conn, built.object_store.open(), args.radicado, args.empresa, args.expires)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=args.expires)
    print(
        f"radicado {args.radicado}: {len(docs)} stored object(s); the URLs expire at {until:%Y-%m-%d %H:%M:%S} UTC "
        "(they open the document for whoever holds them: do not paste them in tickets or chats)"
    )
    for d in docs:
        size = f"{d.size} bytes" if d.size is not None else "size unknown"
        print(f"{d.empresa}  {d.file_type:<10}  {d.filename}  ({size}, sha256 {d.sha256[:12]})")
        print(f"  {d.url}")
    return 0
