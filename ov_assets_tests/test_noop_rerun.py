"""A rerun costs what changed (issue 20): objects registered stored with the same key and SHA-256
are trusted, not re-read from the bucket; what changed is stored and re-read as before. Every
S3 request goes through a real HTTP proxy in front of moto, which logs it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psycopg

from ov_assets.defs.assets import pqr_assets
from ov_assets.defs.checks import tablewide
from ov_assets.defs.jobs import reconciliation_checks_job
from ov_assets.devkit import generator
from ov_assets.objects.registry_keys import versioned_key
from ov_assets_tests.checks_support import DAY_A, evaluation, key, make_resources, materialize, meta
from ov_assets_tests.s3_fault_proxy import FaultProxy, fault_proxy

PARTITION = key(DAY_A, "afinia")


def _object_reads(proxy: FaultProxy) -> list[tuple[str, str]]:
    """GET/HEAD requests of one object (``/bucket/key``), not of the bucket (listings)."""
    out = []
    for method, path, _ in proxy.log:
        parts = urlsplit(path).path.strip("/").split("/", 1)
        if method in ("GET", "HEAD") and len(parts) == 2 and parts[1]:
            out.append((method, parts[1]))
    return out


def _registry(conninfo: dict[str, Any]) -> dict[str, tuple[str, str]]:
    with psycopg.connect(**conninfo) as conn:
        rows = conn.execute("SELECT s3_key, file_hash, upload_status FROM data_general.s3_files_registry").fetchall()
    return {k: (h.strip(), s) for k, h, s in rows}


def test_rerun_with_nothing_new_reads_no_object_from_the_bucket(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    generator.write_day(data_dir, "afinia", DAY_A, n=8, broken=False)
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        res = make_resources(pg_conninfo18, data_dir, s3_bucket, endpoint)
        first = materialize(res, PARTITION)
        assert first.success
        registered = _registry(pg_conninfo18)
        assert registered and {s for _, s in registered.values()} == {"uploaded"}
        assert meta(evaluation(first, "objects_match_bucket"), "verified") == len(registered)

        proxy.log.clear()
        again = materialize(res, PARTITION)
        assert again.success
        assert _object_reads(proxy) == []  # no GET/HEAD per object
        assert not [m for m, _, _ in proxy.log if m in ("PUT", "POST", "DELETE")]  # nothing stored
        ev = evaluation(again, "objects_match_bucket")
        assert ev.passed and meta(ev, "trusted") == len(registered) and meta(ev, "verified") == 0
        assert _registry(pg_conninfo18) == registered

        # The hourly reconciliation (checks only) still re-reads every registered object.
        defs = dg.Definitions(
            assets=pqr_assets, asset_checks=tablewide.all_checks, jobs=[reconciliation_checks_job], resources=res
        )
        job = defs.resolve_job_def("reconciliation_checks_job")
        checked = job.execute_in_process(raise_on_error=False, tags=tablewide.partition_tags(PARTITION))
        ev = evaluation(checked, "registry_matches_bucket")
        assert ev.passed and meta(ev, "verified") == len(registered)
        assert len({k for m, k in _object_reads(proxy) if m == "HEAD"}) == len(registered)


def test_registered_object_whose_landing_bytes_changed_is_stored_and_verified_as_before(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    out = generator.write_day(data_dir, "afinia", DAY_A, n=6, broken=False)
    with fault_proxy(s3_endpoint) as (endpoint, proxy):
        res = make_resources(pg_conninfo18, data_dir, s3_bucket, endpoint)
        assert materialize(res, PARTITION).success
        before = _registry(pg_conninfo18)
        pdf = next(p for p in out.files if p.suffix == ".pdf")
        old_key = next(k for k in before if k.endswith("/" + pdf.name))
        pdf.write_bytes(pdf.read_bytes() + b"\n% replaced by hand\n")  # same name, other bytes
        st = pdf.stat()
        os.utime(pdf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

        proxy.log.clear()
        again = materialize(res, PARTITION)
        assert again.success
        after = _registry(pg_conninfo18)
        new_sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
        new_key = versioned_key(old_key, new_sha)
        # The old row still describes the stored old bytes; the new bytes have a key and row of their own.
        assert after[old_key] == before[old_key]
        assert after[new_key] == (new_sha, "uploaded")
        assert {k: v for k, v in after.items() if k != new_key} == before
        # Stored with a conditional put and re-read by the run's check; nothing else was read.
        puts = [urlsplit(p).path for m, p, _ in proxy.log if m == "PUT"]
        assert len(puts) == 1 and puts[0].endswith(new_key)
        assert {k for _, k in _object_reads(proxy)} == {new_key}
        ev = evaluation(again, "objects_match_bucket")
        assert ev.passed and meta(ev, "verified") == 1 and meta(ev, "trusted") == len(before)
