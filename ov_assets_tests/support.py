"""Helpers shared by the tests: searches for leaked personal data, the configured browser,
the definitions' resources on a test database. The servers themselves (ports, PostgreSQL,
``dagster dev``, GraphQL) are ``ov_assets.devkit.servers``, shared with ``bench/``.

Real servers only; nothing here mocks anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def personal_values(record: Mapping[str, Any]) -> set[str]:
    """Every personal value of a record (what the tests search logs and artifacts for)."""
    from ov_assets.core.contract import PERSONAL_FIELDS

    return {str(record[f]) for f in PERSONAL_FIELDS if record.get(f)}


def personal_search_terms(records: Iterable[Mapping[str, Any]]) -> set[str]:
    """What a search for leaked personal data looks for: every personal value of these records
    as written and in its canonical form, and every word of 4+ letters of a name (a surname
    alone is a leak too)."""
    from ov_assets.core.contract import canonical

    records = list(records)
    terms = set().union(*map(personal_values, records))
    terms |= {c for v in terms if (c := canonical(v))}
    terms |= {w for r in records for w in canonical(r.get("nombres_apellidos")).split() if len(w) >= 4}
    return terms


def leaked(text: str, terms: Iterable[str]) -> list[str]:
    """The terms found in ``text``; numbers only as whole numbers (a 7-digit NIC may occur
    inside a float timestamp, before or after its point), anything else anywhere."""
    return sorted(
        t for t in terms if (re.search(rf"(?<![0-9.]){re.escape(t)}(?![0-9])", text) if t.isdigit() else t in text)
    )


def event_log_text(instance: Any) -> str:
    """Every event of every run of a Dagster instance, and the runs' tags, as text. (Dagster's
    JSON escapes non-ASCII, "Mar\\u00eda": read back and written as text, so that accented
    names and complaint texts can match at all.)"""
    parts = []
    for run in instance.get_runs():
        for record in instance.get_records_for_run(run.run_id, limit=100_000).records:
            parts.append(json.dumps(json.loads(record.event_log_entry.to_json()), ensure_ascii=False))
        parts.append(json.dumps(run.tags, ensure_ascii=False))
    return "\n".join(parts)


def configured_browser() -> str | None:
    """OV_BROWSER_PATH, which must exist when set: CI sets it, and a browser missing there must
    fail the browser tests, not skip them (they skip only where no browser was promised)."""
    configured = os.environ.get("OV_BROWSER_PATH")
    if configured and not Path(configured).exists():
        raise RuntimeError(f"OV_BROWSER_PATH={configured} does not exist: install Chromium or fix the path")
    return configured or None


def sqlalchemy_url(conninfo: Mapping[str, Any], driver: str = "psycopg2") -> str:
    """A SQLAlchemy URL (dagster-postgres needs `postgresql+psycopg2://`, see NOTES).

    A Unix-socket host (a directory) goes into the query string.
    """
    from urllib.parse import quote

    user = quote(str(conninfo["user"]), safe="")
    pw = conninfo.get("password") or ""
    auth = f"{user}:{quote(str(pw), safe='')}@" if pw else f"{user}@"
    host = str(conninfo["host"])
    db = quote(str(conninfo["dbname"]), safe="")
    if host.startswith("/"):
        return f"postgresql+{driver}://{auth}/{db}?host={quote(host, safe='/')}&port={conninfo['port']}"
    return f"postgresql+{driver}://{auth}{host}:{conninfo['port']}/{db}"


def pipeline_resources(
    conninfo: Mapping[str, Any],
    data_dir: Path,
    bucket: str | None = None,
    endpoint: str | None = None,
    **object_store: Any,
) -> dict[str, Any]:
    """The definitions' resources pointed at a test database and a bucket (or the local store)."""
    from dagster_aws.s3 import S3Resource

    from ov_assets.defs.resources import (
        LandingResource,
        ObjectStoreResource,
        PartitionedFrameIOManager,
        PortalResource,
        PostgresResource,
    )

    return {
        "landing": LandingResource(data_dir=str(data_dir)),
        "postgres": PostgresResource(
            host=str(conninfo["host"]),
            port=int(conninfo["port"]),
            dbname=str(conninfo["dbname"]),
            user=str(conninfo["user"]),
            password=str(conninfo.get("password") or ""),
            data_dir=str(data_dir),
        ),
        "object_store": ObjectStoreResource(
            bucket=bucket or "",
            data_dir=str(data_dir),
            s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
            **object_store,
        ),
        "frames_io_manager": PartitionedFrameIOManager(data_dir=str(data_dir)),
        # The landing folder is the source here; extraction has its own tests (test_portal*).
        "portal": PortalResource(extract=False, data_dir=str(data_dir)),
    }


class FilesOpened:
    """How many landing files ``index`` reads from now on: what its refreshes report
    (``RefreshResult.opened``, worker processes included) plus the files a partition frame
    examines again in this process (``examine_file``, whichever index calls it)."""

    def __init__(self, monkeypatch: Any, index: Any) -> None:
        import ov_assets.landing.index as index_module

        self.count = 0
        refresh, examine_file = index.refresh, index_module.examine_file

        def counted_refresh(*args: Any, **kwargs: Any) -> Any:
            result = refresh(*args, **kwargs)
            self.count += result.opened
            return result

        def counted_examine(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return examine_file(*args, **kwargs)

        monkeypatch.setattr(index, "refresh", counted_refresh)
        monkeypatch.setattr(index_module, "examine_file", counted_examine)
