"""``ov-assets docs`` and ``ov-assets status`` (issue 19, acceptance 5), through the CLI against
the embedded PostgreSQL and moto's S3 server: presigned URLs fetched over HTTP give the exact
bytes the registry recorded; ``status --json`` equals counts made here from the rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
import psycopg
import pytest

from ov_assets import cli
from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.core.file_names import landing_dir
from ov_assets.defs.resources import ObjectStoreResource
from ov_assets.devkit.generator import write_record_files
from ov_assets.devkit.servers import postgres_env
from ov_assets.objects.archive import archive_objects, link_table_rows, plan_objects
from ov_assets.warehouse import loading
from ov_assets_tests.archive_support import DAY, frame_for, prepare, store_resource
from ov_assets_tests.support import leaked, personal_search_terms

LAYOUT, BASE = "default", "oficina-virtual"


def _env(monkeypatch: pytest.MonkeyPatch, conninfo: dict[str, Any], endpoint: str, bucket: str) -> None:
    for k, v in postgres_env(conninfo).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_S3_BUCKET_NAME", bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret


def _archive(conninfo: dict[str, Any], endpoint: str, bucket: str, data_dir: Path, frame: pl.DataFrame) -> None:
    store = store_resource(endpoint, bucket, data_dir).open()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        counts, _ = archive_objects(conn, store, plan_objects(frame, data_dir, LAYOUT, BASE), 4)
        assert counts.s3_errors == 0
        link_table_rows(conn, store, frame, LAYOUT, BASE)


def _stored(conninfo: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """radicado -> [(file_type, file_hash)] of its uploaded / pre_existing objects."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with psycopg.connect(**conninfo) as conn:
        for radicado, file_type, file_hash in conn.execute(
            "SELECT numero_radicado, file_type, file_hash FROM data_general.s3_files_registry "
            "WHERE upload_status IN ('uploaded', 'pre_existing')"
        ):
            out[radicado].append((file_type, file_hash.strip()))
    return out


def test_docs_urls_download_the_exact_bytes(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, monkeypatch, capsys
) -> None:
    frame = prepare(data_dir, pg_conninfo18, seed=3)
    _archive(pg_conninfo18, s3_endpoint, s3_bucket, data_dir, frame)
    stored = _stored(pg_conninfo18)
    # the PQR with most objects: JSON and PDF of each version, and an attachment
    radicado = max(stored, key=lambda r: (len(stored[r]), r))
    assert {t for t, _ in stored[radicado]} == {"json", "pdf", "attachment"}
    _env(monkeypatch, pg_conninfo18, s3_endpoint, s3_bucket)

    assert cli.main(["docs", radicado, "--expires", "300"]) == 0
    out = capsys.readouterr().out
    urls = [line.strip() for line in out.splitlines() if line.startswith("  http")]
    assert len(urls) == len(stored[radicado])
    hashes = []
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Signature"]
        with urllib.request.urlopen(url, timeout=30) as resp:  # no credentials: the URL is the grant
            hashes.append(hashlib.sha256(resp.read()).hexdigest())
    assert sorted(hashes) == sorted(h for _, h in stored[radicado])
    records = frame.filter(pl.col("status") == "valid").to_dicts()
    assert not leaked(out, personal_search_terms(records))


def test_docs_local_store_gives_file_urls(pg_conninfo18: dict[str, Any], data_dir: Path, monkeypatch, capsys) -> None:
    """Without a bucket (the demo's local object store) the same command lists file:// URLs."""
    frame = prepare(data_dir, pg_conninfo18, n=2, seed=3)
    store = ObjectStoreResource(data_dir=str(data_dir)).open()
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        archive_objects(conn, store, plan_objects(frame, data_dir, LAYOUT, BASE), 2)
    stored = _stored(pg_conninfo18)
    radicado = sorted(stored)[0]
    for k, v in postgres_env(pg_conninfo18).items():
        monkeypatch.setenv(k, v)
    assert cli.main(["docs", radicado]) == 0
    urls = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  file://")]
    hashes = [hashlib.sha256(Path(urlsplit(u).path).read_bytes()).hexdigest() for u in urls]
    assert hashes and sorted(hashes) == sorted(h for _, h in stored[radicado])


def test_docs_default_expiry_is_short(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, monkeypatch, capsys
) -> None:
    frame = prepare(data_dir, pg_conninfo18, n=2, seed=3)
    _archive(pg_conninfo18, s3_endpoint, s3_bucket, data_dir, frame)
    radicado = sorted(_stored(pg_conninfo18))[0]
    _env(monkeypatch, pg_conninfo18, s3_endpoint, s3_bucket)
    assert cli.main(["docs", radicado, "--empresa", "afinia"]) == 0
    urls = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  http")]
    assert urls and all(parse_qs(urlsplit(u).query)["X-Amz-Expires"] == ["900"] for u in urls)
    assert cli.main(["docs", radicado, "--expires", str(8 * 24 * 3600)]) == 2  # beyond S3's 7 days
    assert "--expires must be" in capsys.readouterr().err


def test_docs_unknown_or_unarchived_radicado_is_an_operator_message(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, monkeypatch, capsys
) -> None:
    archived = prepare(data_dir, pg_conninfo18, n=3, seed=3)
    _archive(pg_conninfo18, s3_endpoint, s3_bucket, data_dir, archived)
    later = prepare(data_dir, pg_conninfo18, day=DAY + dt.timedelta(days=1), n=3, seed=3)  # loaded, not archived
    _env(monkeypatch, pg_conninfo18, s3_endpoint, s3_bucket)
    known = archived.filter(pl.col("is_winner"))["numero_radicado"][0]
    unarchived = later.filter(pl.col("is_winner"))["numero_radicado"][0]
    cases = [
        (["docs", "999999999"], "is not in the PQR table of either empresa"),
        (["docs", known, "--empresa", "aire"], "is not in the PQR table of empresa aire"),
        (["docs", unarchived], "has no stored object yet"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err and "Traceback" not in captured.err and "http" not in captured.out


# --- status ------------------------------------------------------------------------------------


def _newer_version(data_dir: Path, frame: pl.DataFrame) -> None:
    """A later extraction of one stored PQR with another status: the reload moves the stored
    version to history."""
    row = frame.filter(pl.col("is_winner")).row(0, named=True)
    record = {k: row[k] for k in BUSINESS_FIELDS}
    record["estado_solicitud"] = "Cerrado"
    write_record_files(landing_dir(data_dir, "afinia"), record, row["fecha_extraccion"] + dt.timedelta(hours=1), 99)


def _expected(conninfo: dict[str, Any]) -> dict[str, Any]:
    """What status must say, counted in Python from every row (not by the status queries)."""
    out: dict[str, Any] = {}
    with psycopg.connect(**conninfo) as conn:
        (now,) = conn.execute("SELECT now()").fetchone()
        audit = conn.execute("SELECT empresa, finished_at FROM data_general.ov_load_audit").fetchall()
        rejects = conn.execute(
            "SELECT empresa, reason_code, last_seen_at, resolved_at FROM data_general.ov_rejects"
        ).fetchall()
        registry = conn.execute(
            "SELECT empresa, upload_status, file_size FROM data_general.s3_files_registry"
        ).fetchall()
        for empresa in ("afinia", "aire"):
            flags = [f for (f,) in conn.execute(f"SELECT procesado_flag FROM data_general.ov_{empresa}")]
            history = conn.execute(f"SELECT history_id FROM data_general.ov_{empresa}_history").fetchall()
            loads = [t for e, t in audit if e == empresa]
            by_status: dict[str, dict[str, int]] = {}
            for e, status, size in registry:
                if e == empresa:
                    s = by_status.setdefault(status, {"objects": 0, "bytes": 0})
                    s["objects"] += 1
                    s["bytes"] += size or 0
            out[empresa] = {
                "rows": len(flags),
                "rows_archived": sum(bool(f) for f in flags),
                "last_load_at": max(loads) if loads else None,
                "history_rows": len(history),
                "rejects_last_7_days": dict(
                    Counter(
                        code
                        for e, code, seen, resolved in rejects
                        if e == empresa and resolved is None and seen >= now - dt.timedelta(days=7)
                    )
                ),
                "registry": by_status,
                "pending": by_status.get("pending", {}).get("objects", 0),
                "error": by_status.get("error", {}).get("objects", 0),
            }
    return out


def test_status_json_equals_the_database(
    pg_conninfo18: dict[str, Any], data_dir: Path, s3_endpoint: str, s3_bucket: str, monkeypatch, capsys
) -> None:
    afinia = prepare(data_dir, pg_conninfo18, n=8, seed=3)  # with broken files: rejects
    prepare(data_dir, pg_conninfo18, empresa="aire", n=5, seed=4)
    _archive(pg_conninfo18, s3_endpoint, s3_bucket, data_dir, afinia)
    _newer_version(data_dir, afinia)
    with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
        loading.load_partition(conn, "afinia", DAY, frame_for(data_dir), "status-run-2")
        # what status must leave out or count apart: a resolved reject, a reject not seen for
        # 8 days, objects pending and in error
        conn.execute(
            "UPDATE data_general.ov_rejects SET resolved_at = now() WHERE id = "
            "(SELECT min(id) FROM data_general.ov_rejects WHERE empresa = 'afinia')"
        )
        conn.execute(
            "UPDATE data_general.ov_rejects SET last_seen_at = now() - interval '8 days' WHERE id = "
            "(SELECT max(id) FROM data_general.ov_rejects WHERE empresa = 'afinia')"
        )
        conn.execute(
            "UPDATE data_general.s3_files_registry SET upload_status = CASE WHEN id % 2 = 0 THEN 'pending' "
            "ELSE 'error' END WHERE id IN (SELECT id FROM data_general.s3_files_registry ORDER BY id LIMIT 3)"
        )
    _env(monkeypatch, pg_conninfo18, s3_endpoint, s3_bucket)

    assert cli.main(["status", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = _expected(pg_conninfo18)
    for empresa, want in expected.items():
        have = dict(got["empresas"][empresa])
        last = have.pop("last_load_at")
        assert (dt.datetime.fromisoformat(last) if last else None) == want.pop("last_load_at"), empresa
        assert have == want, empresa
    assert got["object_store"] == {"bucket": s3_bucket}
    a = got["empresas"]["afinia"]
    # the corpus exercises every number: rows, history, rejects (some left out), each status
    assert a["rows"] > 0 and a["history_rows"] == 1 and a["rows_archived"] > 0
    assert a["pending"] >= 1 and a["error"] >= 1 and a["registry"]["uploaded"]["bytes"] > 0
    with psycopg.connect(**pg_conninfo18) as conn:
        (all_afinia,) = conn.execute("SELECT count(*) FROM data_general.ov_rejects WHERE empresa = 'afinia'").fetchone()
    assert 0 < sum(a["rejects_last_7_days"].values()) == all_afinia - 2
    assert got["empresas"]["aire"]["rows"] > 0 and got["empresas"]["aire"]["registry"] == {}

    assert cli.main(["status"]) == 0
    text = capsys.readouterr().out
    assert f"data_general.ov_afinia: {a['rows']} rows ({a['rows_archived']} with all files archived)" in text
    total = sum(sum(e["rejects_last_7_days"].values()) for e in got["empresas"].values())
    assert f"ov_rejects: {total} unresolved" in text and "1 history rows" in text
    assert f"object store: bucket {s3_bucket}" in text
