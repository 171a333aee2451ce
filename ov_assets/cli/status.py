"""``ov-assets status [--json]``: where each empresa stands, read from PostgreSQL
(``ov_assets.warehouse.summary.status``): rows (and how many have every file archived), the last
load, history rows, unresolved rejects seen in the last 7 days by reason, the object registry by
status with its bytes, pending and error counts. Counts, times and codes only."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="per empresa: rows, last load, history, rejects (7 days), registry")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(fn=run)


def report() -> dict[str, Any]:
    """The status of both empresas and the configured object store, as ``--json`` prints it."""
    import dagster as dg

    from ov_assets.defs.resources import resources_from_env
    from ov_assets.warehouse.summary import REJECT_WINDOW_DAYS, status

    res = resources_from_env()
    with dg.build_resources({k: res[k] for k in ("postgres", "object_store")}) as built:
        with built.postgres.connect() as conn:
            empresas = status(conn)
        bucket = built.object_store.open().bucket
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "object_store": {"bucket": bucket},
        "rejects_window_days": REJECT_WINDOW_DAYS,
        "empresas": {e.empresa: e.as_dict() for e in empresas},
    }


def _text(data: dict[str, Any]) -> str:
    lines = []
    total, days = 0, data["rejects_window_days"]
    rejects_key = f"rejects_last_{days}_days"
    for empresa, s in data["empresas"].items():
        lines.append(
            f"data_general.ov_{empresa}: {s['rows']} rows ({s['rows_archived']} with all files archived), "
            f"{s['history_rows']} history rows, last load {s['last_load_at'] or 'never'}"
        )
        rejects = s[rejects_key]
        total += sum(rejects.values())
        lines.append(
            f"  rejects unresolved, seen in the last {days} days: {sum(rejects.values())}"
            + (" (" + ", ".join(f"{k} {v}" for k, v in rejects.items()) + ")" if rejects else "")
        )
        registry = ", ".join(f"{k} {v['objects']} ({v['bytes']} bytes)" for k, v in s["registry"].items())
        lines.append(f"  s3_files_registry: {registry or 'empty'}; pending {s['pending']}, error {s['error']}")
    lines.append(f"ov_rejects: {total} unresolved, seen in the last {days} days")
    lines.append(f"object store: bucket {data['object_store']['bucket']}")
    return "\n".join(lines)


def summary() -> str:
    """The text ``ov-assets status`` prints (the demo ends with it)."""
    return _text(report())


def run(args: argparse.Namespace) -> int:
    data = report()
    print(json.dumps(data, indent=2) if args.json else _text(data))
    return 0
