"""Layout migration against moto's S3: copy, verify, re-register, delete; resumed after an
interruption at any step; idempotent."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from ov_assets.objects.archive import archive_objects, link_table_rows, object_key, plan_objects
from ov_assets.objects.layout_migration import migrate_layout
from ov_assets_tests.archive_support import bucket_keys, client, prepare, registry, store_resource
from ov_assets_tests.loadkit import login_roles


class Crash(BaseException):
    """A process dying mid-migration (not an error the migration may catch)."""


class CrashingStore:
    """The real store, dying at the ``n``-th call of ``op``."""

    def __init__(self, store, op: str, n: int) -> None:
        self._store, self._op, self._left = store, op, n

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name != self._op:
            return attr

        def call(*args, **kwargs):
            self._left -= 1
            if self._left < 0:
                raise Crash(name)
            return attr(*args, **kwargs)

        return call


def _archive(conninfo, store, frame, data_dir, layout):
    objects = plan_objects(frame, data_dir, layout, "oficina-virtual")
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        counts, _ = archive_objects(conn, store, objects, 4)
        link_table_rows(conn, store, frame, layout, "oficina-virtual")
    assert counts.s3_uploaded == len(objects)
    return objects


def _migrate(conninfo, store, layout="central", workers=1):
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        return migrate_layout(conn, store, layout, "oficina-virtual", workers)


def _assert_all_in(conninfo, endpoint, bucket, objects, layout):
    expected = {
        object_key(
            layout,
            "oficina-virtual",
            o.empresa,
            o.partition_date,
            o.numero_reclamo_sgc or o.numero_radicado,
            o.filename,
        ): o
        for o in objects
    }
    assert bucket_keys(endpoint, bucket) == set(expected)
    reg = registry(conninfo)
    assert set(reg) == set(expected)
    c = client(endpoint)
    for key, o in expected.items():
        assert reg[key]["upload_status"] == "uploaded" and reg[key]["s3_url"] == f"s3://{bucket}/{key}"
        body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == o.sha256
        head = c.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256" and head["Metadata"]["sha256"] == o.sha256
    with psycopg.connect(**conninfo) as conn:
        urls = [
            u["s3_url"] for (us,) in conn.execute("SELECT archivos_s3_urls FROM data_general.ov_afinia") for u in us
        ]
    assert urls and all(u.removeprefix(f"s3://{bucket}/") in expected for u in urls)


@pytest.mark.parametrize("crash_at", [("copy", 3), ("delete", 2)])
def test_migration_resumes_after_interruption_and_is_idempotent(
    data_dir, pg_conninfo18, s3_endpoint, s3_bucket, crash_at
):
    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, big=6 << 20)
    store = store_resource(s3_endpoint, s3_bucket, data_dir, multipart_threshold_mb=5, multipart_chunksize_mb=5).open()
    objects = _archive(conninfo, store, frame, data_dir, "default")

    with pytest.raises(Crash):
        _migrate(conninfo, CrashingStore(store, *crash_at))
    reg = registry(conninfo)
    moved = [r for r in reg.values() if r["s3_key"].startswith("Central_De_Escritos/")]
    assert 0 < len(moved) < len(objects)  # really interrupted half way

    counts = _migrate(conninfo, store, workers=4)
    assert not counts.errors
    assert counts.moved + counts.finished + counts.already_there == len(objects)
    if crash_at[0] == "delete":
        assert counts.finished >= 1  # copied and re-registered, old key not yet deleted
    _assert_all_in(conninfo, s3_endpoint, s3_bucket, objects, "central")
    for row in registry(conninfo).values():
        assert row["upload_source"] == "migration" and row["metadata"]["old_key_deleted"] is True
        assert row["metadata"]["migrated_from"].startswith("oficina-virtual/afinia/")

    # idempotent: nothing left to do, nothing changes
    before = registry(conninfo)
    again = _migrate(conninfo, store, workers=4)
    assert (again.moved, again.finished, again.already_there, again.errors) == (0, 0, len(objects), [])
    assert registry(conninfo) == before

    # and back again, the other way
    back = _migrate(conninfo, store, layout="default", workers=4)
    assert back.moved == len(objects) and not back.errors
    _assert_all_in(conninfo, s3_endpoint, s3_bucket, objects, "default")
    # the pipeline in the default layout finds everything registered
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        counts, _ = archive_objects(conn, store, plan_objects(frame, data_dir, "default", "oficina-virtual"), 4)
    assert counts.s3_already_registered == len(objects) and counts.s3_uploaded == 0


def test_migration_never_overwrites_a_foreign_object(data_dir, pg_conninfo18, s3_endpoint, s3_bucket):
    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects = _archive(conninfo, store, frame, data_dir, "default")
    victim = objects[0]
    dst = object_key(
        "central",
        "oficina-virtual",
        victim.empresa,
        victim.partition_date,
        victim.numero_reclamo_sgc or victim.numero_radicado,
        victim.filename,
    )
    client(s3_endpoint).put_object(Bucket=s3_bucket, Key=dst, Body=b"someone else's")
    counts = _migrate(conninfo, store, workers=2)
    assert len(counts.errors) == 1 and "different bytes" in counts.errors[0]
    assert counts.moved == len(objects) - 1
    assert client(s3_endpoint).get_object(Bucket=s3_bucket, Key=dst)["Body"].read() == b"someone else's"
    assert registry(conninfo)[victim.key]["upload_status"] == "uploaded"  # still at its old key
    assert victim.key in bucket_keys(s3_endpoint, s3_bucket)


def test_pending_rows_are_rekeyed_and_uploaded_by_the_next_run(data_dir, pg_conninfo18, s3_endpoint, s3_bucket):
    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
    from ov_assets.objects.archive import register_pending

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        register_pending(conn, store, objects)  # a run killed before uploading anything
    counts = _migrate(conninfo, store, workers=2)
    assert counts.rekeyed == len(objects) and bucket_keys(s3_endpoint, s3_bucket) == set()
    central = plan_objects(frame, data_dir, "central", "oficina-virtual")
    reg = registry(conninfo)
    assert set(reg) == {o.key for o in central} and {r["upload_status"] for r in reg.values()} == {"pending"}
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        done, _ = archive_objects(conn, store, central, 4)
    assert done.s3_uploaded == len(central)


def test_layout_migration_job_runs_in_dagster(data_dir, pg_conninfo18, s3_endpoint, s3_bucket):
    from ov_assets.defs.jobs import layout_migration_job
    from ov_assets.defs.resources import PostgresResource

    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, n=3)
    store_res = store_resource(s3_endpoint, s3_bucket, data_dir, layout="central")
    objects = _archive(conninfo, store_res.open(), frame, data_dir, "default")
    postgres = PostgresResource(
        host=conninfo["host"],
        port=int(conninfo["port"]),
        dbname=conninfo["dbname"],
        user=conninfo["user"],
        data_dir=str(data_dir),
    )
    result = layout_migration_job.execute_in_process(
        resources={"postgres": postgres, "object_store": store_res},
        run_config={"ops": {"migrate_object_layout": {"config": {"backup": False}}}},  # test_backups.py takes one
    )
    assert result.success
    assert result.output_for_node("migrate_object_layout")["moved"] == len(objects)
    _assert_all_in(conninfo, s3_endpoint, s3_bucket, objects, "central")


def test_a_database_error_is_reported_without_the_rows_values(data_dir, pg_conninfo18, s3_endpoint, s3_bucket):
    """The errors go to the job's Dagster metadata: PostgreSQL's "Failing row contains (...)"
    (names, documents, ...) must not go with them."""
    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    _archive(conninfo, store, frame, data_dir, "default")
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        # Any update of a table row now fails, quoting the whole row in its DETAIL.
        conn.execute(
            "ALTER TABLE data_general.ov_afinia ADD CONSTRAINT frozen CHECK (updated_at < '2000-01-01') NOT VALID"
        )
        names = [n for (n,) in conn.execute("SELECT nombres_apellidos FROM data_general.ov_afinia") if n]
    counts = _migrate(conninfo, store)
    assert names and counts.errors
    assert all("23514" in e and "frozen" in e and "withheld" in e for e in counts.errors), counts.errors
    assert not [n for n in names for e in counts.errors if n in e]


@pytest.mark.parametrize("first", ["uploaded", "pending"])
def test_migration_runs_as_the_least_privilege_loader(data_dir, pg_conninfo18, s3_endpoint, s3_bucket, first):
    """Issue 21: the migration drops registry rows that the row at their target key supersedes
    (a pipeline run in the target layout came first), which ov_loader (no DELETE) could not do.
    ``uploaded``: the old rows hold objects (merged, old keys deleted); ``pending``: they never
    held one (re-keying finds the key taken)."""
    from ov_assets.objects.archive import register_pending

    conninfo = pg_conninfo18
    frame = prepare(data_dir, conninfo, n=3)
    store = store_resource(s3_endpoint, s3_bucket, data_dir).open()
    if first == "uploaded":
        objects = _archive(conninfo, store, frame, data_dir, "default")
    else:
        objects = plan_objects(frame, data_dir, "default", "oficina-virtual")
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            register_pending(conn, store, objects)
    with psycopg.connect(**conninfo, autocommit=True) as conn:  # the pipeline, now in the central layout
        archive_objects(conn, store, plan_objects(frame, data_dir, "central", "oficina-virtual"), 4)
        link_table_rows(conn, store, frame, "central", "oficina-virtual")
    with login_roles(conninfo, "ov_loader") as users:
        counts = _migrate(users["ov_loader"], store, workers=2)
    assert counts.errors == []
    assert (counts.merged, counts.rekeyed) == ((len(objects), 0) if first == "uploaded" else (0, len(objects)))
    _assert_all_in(conninfo, s3_endpoint, s3_bucket, objects, "central")
