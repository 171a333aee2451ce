"""Cleanup against real PostgreSQL and the local object store: only files of records whose every
file is registered uploaded/pre_existing with the landing file's SHA-256 and older than the
retention go; dry run deletes nothing; the report says what was freed."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest

from ov_assets.core.file_names import landing_dir
from ov_assets.defs.assets import pqr_assets
from ov_assets.devkit import generator
from ov_assets.landing.cleanup import cleanup_landing
from ov_assets.landing.index import LandingFolderUnavailable, LandingIndex
from ov_assets.reports.consolidated import consolidated_paths
from ov_assets_tests.checks_support import write_newer_version
from ov_assets_tests.support import pipeline_resources

# Fixed days (data never depends on the date the suite runs on); how old a file is comes from
# its modification time, set by _set_age.
OLD = dt.date(2025, 8, 26)
RECENT = dt.date(2025, 10, 8)


def _materialize(resources: dict[str, Any], day: dt.date, empresa: str) -> None:
    result = dg.materialize(pqr_assets, resources=resources, partition_key=f"{day}|{empresa}", raise_on_error=False)
    assert result.success


def _set_age(paths: list[Path], days: float) -> None:
    when = time.time() - days * 86400
    for p in paths:
        os.utime(p, (when, when))


def _landing(data_dir: Path, empresa: str) -> set[str]:
    return {p.name for p in landing_dir(data_dir, empresa).iterdir()}


def _setup(
    conninfo: dict[str, Any],
    data_dir: Path,
    bucket: str | None = None,
    endpoint: str | None = None,
) -> tuple[dict[str, Any], generator.GeneratedDay, generator.GeneratedDay]:
    resources = pipeline_resources(conninfo, data_dir, bucket, endpoint)
    old = generator.write_day(data_dir, "afinia", OLD, n=8)
    recent = generator.write_day(data_dir, "afinia", RECENT, n=4)
    _set_age(old.files, 40)
    _set_age(recent.files, 2)
    for day in (OLD, RECENT):
        _materialize(resources, day, "afinia")
    return resources, old, recent


def _record_groups(data_dir: Path, empresa: str, day: dt.date) -> dict[str, list[str]]:
    index = LandingIndex(data_dir)
    records = [r for r in index.record_files(empresa, day) if r.status == "valid"]
    linked = index.linked_files(empresa, records)
    return {r.name: [r.name, *[f.name for f in linked[r.name]]] for r in records}


def test_cleanup_deletes_only_verified_old_files(pg_conninfo18: dict[str, Any], data_dir: Path) -> None:
    resources, old, recent = _setup(pg_conninfo18, data_dir)
    reports = consolidated_paths(data_dir, "afinia", OLD)
    reports_before = {k: p.read_bytes() for k, p in reports.items()}
    groups = _record_groups(data_dir, "afinia", OLD)
    names = sorted(groups)
    tampered, errored = names[0], names[1]
    stray = landing_dir(data_dir, "afinia") / "notas_operador.txt"
    stray.write_text("not ours")
    _set_age([stray], 90)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        # One record's JSON registered with another hash; another's PDF left in error.
        conn.execute(
            "UPDATE data_general.s3_files_registry SET file_hash = %s WHERE filename = %s", ("f" * 64, tampered)
        )
        pdf = next(n for n in groups[errored] if n.endswith(".pdf"))
        conn.execute("UPDATE data_general.s3_files_registry SET upload_status = 'error' WHERE filename = %s", (pdf,))
    before = _landing(data_dir, "afinia")
    sizes = {p.name: p.stat().st_size for p in landing_dir(data_dir, "afinia").iterdir()}

    store = resources["object_store"].open()
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        dry = cleanup_landing(LandingIndex(data_dir), conn, store, retention=30, dry_run=True)
    assert _landing(data_dir, "afinia") == before  # dry run deletes nothing
    assert dry.files > 0

    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        report = cleanup_landing(LandingIndex(data_dir), conn, store, retention=30)
    after = _landing(data_dir, "afinia")
    deleted = before - after
    assert (report.files, report.bytes, report.records) == (dry.files, dry.bytes, dry.records)
    assert report.files == len(deleted) and report.bytes == sum(sizes[n] for n in deleted)

    kept_groups = {tampered, errored}
    shared_with_kept = {f for r in kept_groups for f in groups[r]}
    expected = {f for r, files in groups.items() if r not in kept_groups for f in files} - shared_with_kept
    assert deleted == expected
    assert report.records == len(groups) - 2 and report.kept_not_verified == 2
    # Never anything else: rejects, the recent partition, the kept records, a stray file.
    assert set(old.broken) <= after
    assert {p.name for p in recent.files} <= after
    assert set(groups[tampered]) <= after and set(groups[errored]) <= after
    assert stray.name in after
    # The objects are still in the store; the index forgot the deleted files.
    index = LandingIndex(data_dir)
    assert {r.name for r in index.record_files("afinia", OLD)} == {
        n for n in after if n.endswith(".json") and any(n in g for g in groups.values())
    } | set(old.broken)
    # A second cleanup finds nothing more.
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        assert cleanup_landing(LandingIndex(data_dir), conn, store, retention=30).files == 0

    # The partition materialized again (the re-extraction schedule does, for 60 days): its frame
    # lacks the deleted files, but its reports keep every winner, as written before the cleanup.
    _materialize(resources, OLD, "afinia")
    assert {k: p.read_bytes() for k, p in reports.items()} == reports_before

    # A newer version of a PQR whose files were deleted: the report takes it, keeps the others.
    def rows() -> dict[str, str]:
        return dict(pl.read_parquet(reports["parquet"]).select("numero_radicado", "hash_registro").iter_rows())

    earlier = rows()
    remaining = {r.numero_radicado for r in LandingIndex(data_dir).record_files("afinia", OLD)}
    gone_radicado = next(r for r in sorted(earlier) if r not in remaining)  # every version deleted
    write_newer_version(
        data_dir, old, index=next(i for i, r in enumerate(old.records) if r["numero_radicado"] == gone_radicado)
    )
    _materialize(resources, OLD, "afinia")
    now = rows()
    assert now[gone_radicado] != earlier[gone_radicado] and now == {**earlier, gone_radicado: now[gone_radicado]}
    assert pl.read_csv(reports["csv"], infer_schema=False).height == len(earlier)


def test_cleanup_respects_retention_and_changed_bytes(
    pg_conninfo18: dict[str, Any], data_dir: Path, monkeypatch
) -> None:
    resources, _old, _ = _setup(pg_conninfo18, data_dir)
    groups = _record_groups(data_dir, "afinia", OLD)
    store = resources["object_store"].open()
    monkeypatch.setenv("OV_RETENTION_DAYS", "60")  # files are 40 days old: too young
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        assert cleanup_landing(LandingIndex(data_dir), conn, store).files == 0
    monkeypatch.delenv("OV_RETENTION_DAYS")
    # A landing file rewritten with other bytes (same name, old mtime) is not the archived one.
    victim = landing_dir(data_dir, "afinia") / sorted(groups)[0]
    victim.write_bytes(victim.read_bytes().replace(b"Detalle PQR", b"Detalle PQR "))
    _set_age([victim], 40)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        report = cleanup_landing(LandingIndex(data_dir), conn, store)  # default 30 days
    assert victim.exists()
    assert report.records == len(groups) - 1


def test_cleanup_cli_dry_run(pg_conninfo18: dict[str, Any], data_dir: Path, monkeypatch, capsys) -> None:
    from ov_assets import cli
    from ov_assets.devkit.servers import postgres_env

    _setup(pg_conninfo18, data_dir)
    for k, v in postgres_env(pg_conninfo18).items():
        monkeypatch.setenv(k, v)
    before = _landing(data_dir, "afinia")
    assert cli.main(["cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cleanup (dry run): would free" in out and "afinia:" in out
    assert _landing(data_dir, "afinia") == before
    assert cli.main(["cleanup", "--no-backup"]) == 0
    assert "freed" in capsys.readouterr().out
    assert _landing(data_dir, "afinia") < before


def test_retention_below_one_day_deletes_nothing(tmp_path: Path, monkeypatch) -> None:
    """OV_RETENTION_DAYS=0 (or a negative) would make everything "old": the cleanup and the
    scraper's pruning of its failure artifacts both refuse it, and delete nothing."""
    from ov_assets.errors import ConfigurationError
    from ov_assets.portal.scraper import prune_artifacts

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    trace = artifacts / "trace-afinia-20251008-1.zip"
    trace.write_bytes(b"zip")
    _set_age([trace], 2)
    for days in ("0", "-3"):
        monkeypatch.setenv("OV_RETENTION_DAYS", days)
        with pytest.raises(ConfigurationError, match="OV_RETENTION_DAYS must be at least 1"):
            prune_artifacts(artifacts)
        with pytest.raises(ConfigurationError, match="OV_RETENTION_DAYS must be at least 1"):
            cleanup_landing(LandingIndex(tmp_path / "data"), None, "bucket")  # type: ignore[arg-type]
        # given explicitly (ov-assets cleanup --retention-days, the job's config): the same
        with pytest.raises(ConfigurationError, match="must be at least 1 day"):
            prune_artifacts(artifacts, int(days))
        with pytest.raises(ConfigurationError, match="must be at least 1 day"):
            cleanup_landing(LandingIndex(tmp_path / "data"), None, "bucket", retention=int(days))  # type: ignore[arg-type]
    assert trace.exists()
    monkeypatch.setenv("OV_RETENTION_DAYS", "1")
    assert prune_artifacts(artifacts) == [trace] and not trace.exists()


def _registered_key(conninfo: dict[str, Any], filename: str) -> tuple[str, str]:
    """(key, sha256) of a landing file's registry row."""
    with psycopg.connect(**conninfo) as conn:
        return conn.execute(
            "SELECT s3_key, file_hash FROM data_general.s3_files_registry WHERE filename = %s", (filename,)
        ).fetchone()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_file_whose_object_left_the_bucket_is_kept(
    where: str, pg_conninfo18: dict[str, Any], data_dir: Path, monkeypatch, capsys, request
) -> None:
    """The registry says uploaded, but the object is gone, or holds other bytes (in S3: a
    multipart object whose sha256 metadata claims the registered hash): the landing file is
    the last copy and stays, also through ``ov-assets cleanup``; the report names it."""
    from ov_assets import cli
    from ov_assets.devkit.servers import postgres_env

    bucket = endpoint = None
    if where == "s3":
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("AWS_S3_BUCKET_NAME", bucket)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
    _setup(pg_conninfo18, data_dir, bucket, endpoint)
    groups = _record_groups(data_dir, "afinia", OLD)
    names = sorted(groups)
    gone = next(n for n in groups[names[0]] if n.endswith(".pdf"))
    swapped = names[1]  # its JSON object replaced by other bytes of the same size
    (gone_key, _), (swapped_key, sha) = _registered_key(pg_conninfo18, gone), _registered_key(pg_conninfo18, swapped)
    if where == "s3":
        from ov_assets_tests.archive_support import client

        c = client(endpoint)
        body = c.get_object(Bucket=bucket, Key=swapped_key)["Body"].read().replace(b"Detalle PQR", b"Detalle XYZ")
        c.delete_object(Bucket=bucket, Key=gone_key)
        upload = c.create_multipart_upload(Bucket=bucket, Key=swapped_key, Metadata={"sha256": sha})
        part = c.upload_part(Bucket=bucket, Key=swapped_key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
        c.complete_multipart_upload(
            Bucket=bucket,
            Key=swapped_key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    else:
        (data_dir / "object_store" / gone_key).unlink()
        obj = data_dir / "object_store" / swapped_key
        obj.write_bytes(obj.read_bytes().replace(b"Detalle PQR", b"Detalle XYZ"))
    for k, v in postgres_env(pg_conninfo18).items():
        monkeypatch.setenv(k, v)
    assert cli.main(["cleanup", "--no-backup"]) == 0
    out = capsys.readouterr().out
    after = _landing(data_dir, "afinia")
    assert set(groups[names[0]]) <= after and set(groups[names[1]]) <= after
    assert f"kept, not proven in the bucket: {gone}" in out and f"kept, not proven in the bucket: {swapped}" in out
    assert "2 registered but not proven" in out
    # every other record of the day went (their objects are there)
    assert not any(
        set(groups[n]) & after
        for n in names[2:]
        if not (set(groups[n]) & (set(groups[names[0]]) | set(groups[names[1]])))
    )


def test_portal_named_attachment_kept_while_another_days_version_is_not_archived(
    pg_conninfo18: dict[str, Any], data_dir: Path
) -> None:
    """A ``<uuid>.pdf`` named by documento_prueba of an old, archived version and of a version
    filed on another day (its fecha moved) that is not archived yet: the cleanup keeps it
    until that version is archived too."""
    from ov_assets.devkit.generator import write_record_files

    resources, old, _ = _setup(pg_conninfo18, data_dir)
    index = next(i for i, r in enumerate(old.records) if r["documento_prueba"])
    record = old.records[index]
    proof = landing_dir(data_dir, "afinia") / record["documento_prueba"]
    other_day = OLD + dt.timedelta(days=3)
    moved = dict(record, fecha=f"{other_day:%Y/%m/%d} 10:00", estado_solicitud="Finalizado")
    written = write_record_files(
        landing_dir(data_dir, "afinia"), moved, dt.datetime.combine(other_day, dt.time(11, 0)), 200
    )
    _set_age(written, 39)
    store = resources["object_store"].open()
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        report = cleanup_landing(LandingIndex(data_dir), conn, store, retention=30)
    assert proof.exists() and report.kept_named_elsewhere == 1
    assert report.records > 0  # the rest of the day was cleaned
    _materialize(resources, other_day, "afinia")  # the other version archived: now it may go
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        cleanup_landing(LandingIndex(data_dir), conn, store, retention=30)
    assert not proof.exists()


def test_file_swapped_for_a_link_is_not_hashed_through_it(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    """A record file swapped for a symbolic link to its own bytes outside the folder after the
    cleanup's refresh (while it proves the files in the bucket): the link is never followed,
    so the file counts as changed and neither the link nor its target goes."""
    resources, _, _ = _setup(pg_conninfo18, data_dir, s3_bucket, s3_endpoint)
    groups = _record_groups(data_dir, "afinia", OLD)
    victim = landing_dir(data_dir, "afinia") / min(groups)
    data = victim.read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    store = resources["object_store"].open()
    lock, swapped = threading.Lock(), []

    def swap(**_: Any) -> None:  # on the first HeadObject of the proofs (several run at once)
        with lock:
            if not swapped:
                swapped.append(victim.rename(outside / victim.name))
                victim.symlink_to(swapped[0])

    store.client.meta.events.register("before-call.s3.HeadObject", swap)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        report = cleanup_landing(LandingIndex(data_dir), conn, store, retention=30)
    assert swapped and victim.is_symlink() and swapped[0].read_bytes() == data
    assert report.kept_changed == 1 and victim not in report.deleted and report.files > 0


def test_cleanup_that_empties_the_folder_succeeds(
    pg_conninfo18: dict[str, Any], data_dir: Path, monkeypatch, capsys
) -> None:
    """Every file of an empresa archived and old: ``ov-assets cleanup`` empties its folder and
    succeeds; the index forgot exactly those files, so the next refresh and pqr_records take the
    empty folder for what it is (nothing to do), while files that vanish otherwise still mean
    an unmounted folder."""
    from ov_assets import cli
    from ov_assets.devkit.servers import postgres_env

    today = RECENT + dt.timedelta(days=1)
    resources = pipeline_resources(pg_conninfo18, data_dir)
    old = generator.write_day(data_dir, "afinia", OLD, n=6, broken=False)
    _set_age(old.files, 40)
    _materialize(resources, OLD, "afinia")
    reports = consolidated_paths(data_dir, "afinia", OLD)
    before = {k: p.read_bytes() for k, p in reports.items()}
    with psycopg.connect(**pg_conninfo18) as conn:
        rows = conn.execute("SELECT * FROM data_general.ov_afinia ORDER BY numero_radicado").fetchall()
    for k, v in postgres_env(pg_conninfo18).items():
        monkeypatch.setenv(k, v)
    assert cli.main(["cleanup", "--no-backup"]) == 0
    assert f"freed {len(old.files)} files" in capsys.readouterr().out
    assert _landing(data_dir, "afinia") == set()

    index = LandingIndex(data_dir)
    refreshed = index.refresh("afinia", today)
    assert (refreshed.scanned, refreshed.removed, index.record_files("afinia", OLD)) == (0, 0, [])
    _materialize(resources, OLD, "afinia")  # the re-extraction's rerun of a cleaned partition
    assert {k: p.read_bytes() for k, p in reports.items()} == before
    with psycopg.connect(**pg_conninfo18) as conn:
        assert conn.execute("SELECT * FROM data_general.ov_afinia ORDER BY numero_radicado").fetchall() == rows
    assert cli.main(["cleanup", "--no-backup"]) == 0  # and again: nothing to do, no error

    # Files the cleanup did not take, gone from the folder: still "is the folder mounted?".
    recent = generator.write_day(data_dir, "afinia", RECENT, n=2, broken=False)
    index.refresh("afinia", today)
    for path in recent.files:
        path.unlink()
    with pytest.raises(LandingFolderUnavailable, match="is the folder mounted"):
        index.refresh("afinia", today)
