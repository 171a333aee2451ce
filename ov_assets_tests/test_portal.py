"""The scraper against the replica portal, in real Chromium (no mocks).

Chromium: OV_BROWSER_PATH, else Playwright's own browser, else /usr/bin/chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from ov_assets.core.contract import ValidRecord, today_bogota, validate_record
from ov_assets.core.file_names import FILE_ATTACHMENT, FILE_PDF, FILE_RECORD, landing_dir, parse_name
from ov_assets.defs.resources import resources_from_env
from ov_assets.devkit.replica import Faults, ReplicaPortal
from ov_assets.devkit.servers import free_port
from ov_assets.errors import ConfigurationError
from ov_assets.portal.pages import LoginError
from ov_assets.portal.scraper import (
    DEBIAN_CHROMIUM,
    ScraperConfig,
    landing_state,
    prune_artifacts,
    scrape_day,
)
from ov_assets_tests.support import configured_browser, personal_values

REPO = Path(__file__).resolve().parents[1]
USER = "analista.ov"
PASSWORD = "Pw-7c1f0a9e-no-en-trazas"  # must never appear in any artifact
DAY_37 = dt.date(2025, 10, 8)
DAY_AIRE = dt.date(2025, 10, 9)
DAY_FAULTS = dt.date(2025, 10, 10)
DAY_KILL = dt.date(2025, 10, 11)


def _per_day(empresa: str, day: dt.date) -> int:
    return {DAY_37: 37, DAY_AIRE: 14, DAY_FAULTS: 23, DAY_KILL: 30}.get(day, 5)


def _browser_available() -> bool:
    if configured_browser():
        return True
    return Path(DEBIAN_CHROMIUM).exists() or any(Path.home().glob(".cache/ms-playwright/chromium*"))


pytestmark = pytest.mark.skipif(not _browser_available(), reason="no Chromium for Playwright")


@pytest.fixture(scope="module")
def portal():
    with ReplicaPortal(per_day=_per_day, seed=7, username=USER, password=PASSWORD) as p:
        yield p


def _config(portal: ReplicaPortal, empresa: str, **kw) -> ScraperConfig:
    kw.setdefault("max_per_min", None)
    kw.setdefault("timeout_s", 15)
    kw.setdefault("browser_path", configured_browser())
    return ScraperConfig(empresa, portal.url(empresa), USER, PASSWORD, **kw)


def _landing_files(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {FILE_RECORD: [], FILE_PDF: [], FILE_ATTACHMENT: []}
    for p in folder.iterdir():
        name = parse_name(p.name)
        if name is not None:
            out[name.kind].append(p)
    return out


def _check_complete(portal: ReplicaPortal, empresa: str, day: dt.date, folder: Path) -> dict[str, dict]:
    """Exactly one record per PQR of the day, equal to what the portal shows, with its PDF and
    attachments; returns radicado -> JSON document."""
    expected = {r["numero_radicado"]: r for r in portal.records(empresa, day)}
    files = _landing_files(folder)
    docs = {}
    per_radicado = Counter()
    for path in files[FILE_RECORD]:
        doc = json.loads(path.read_text("utf-8"))
        per_radicado[doc["numero_radicado"]] += 1
        docs[doc["numero_radicado"]] = (path, doc)
    assert set(per_radicado) == set(expected)
    assert all(n == 1 for n in per_radicado.values()), "a PQR was written twice"
    names = {p.name for kind in files.values() for p in kind}
    attachments = portal.attachments(empresa, day)
    today = today_bogota()
    for rad, (path, doc) in docs.items():
        got, want = validate_record(doc, today), validate_record(expected[rad], today)
        assert isinstance(got, ValidRecord) and isinstance(want, ValidRecord)
        assert got.hash_registro == want.hash_registro, f"{rad}: fields differ from the portal"
        name = parse_name(path.name)
        sgc, ts = name.sgc, name.ts
        assert doc["extraction_timestamp"] == ts and doc["page_url"].split("#")[1].startswith("/Detail/")
        pdf = folder / f"{sgc}_{ts}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF"), f"{rad}: no PDF"
        for att in attachments[rad]:
            if att.name.endswith(".jpg"):
                assert (folder / f"{sgc}_adjunto_{ts}.jpg").read_bytes() == att.data
            else:
                assert att.name == doc["documento_prueba"] and att.name in names
                assert (folder / att.name).read_bytes() == att.data
    return {rad: doc for rad, (_, doc) in docs.items()}


def test_day_of_37_over_4_pages_rerun_and_reextraction(portal, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ov_assets")
    folder, artifacts = tmp_path / "landing", tmp_path / "artifacts"
    result = scrape_day(_config(portal, "afinia"), DAY_37, folder, set(), artifacts)
    assert (result.listed, result.listed_total, result.pages_walked) == (37, 37, 4)
    assert (result.written, result.unchanged, result.failed) == (37, 0, 0)
    assert len(set(result.radicados_written)) == 37
    assert result.complete and not result.failure_artifacts and not result.missing_labels
    _check_complete(portal, "afinia", DAY_37, folder)
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]
    assert (
        sum(
            1
            for r in portal.records("afinia", DAY_37)
            for _ in portal.attachments("afinia", DAY_37)[r["numero_radicado"]]
        )
        > 5
    )

    # Rerun of a complete day: writes nothing, and reuses the saved session (no new login).
    before = sorted(p.name for p in folder.iterdir())
    logins = portal.stats["logins"]
    again = scrape_day(
        _config(portal, "afinia", concurrency=2), DAY_37, folder, landing_state(folder).hashes, artifacts
    )
    assert (again.listed, again.written, again.unchanged, again.failed) == (37, 0, 37, 0)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert portal.stats["logins"] == logins and again.relogins == 0

    # Re-extraction (what a 03:00 re-extraction run does for a day with a PQR not final yet): with
    # the landing folder's hashes, only the PQR that changed on the portal is written again.
    state = landing_state(folder)
    open_rad = next(r for r in portal.records("afinia", DAY_37) if r["estado_solicitud"] != "Finalizado")
    portal.set_fields("afinia", open_rad["numero_radicado"], estado_solicitud="Finalizado", comentarios="Respondida.")
    redo = scrape_day(_config(portal, "afinia"), DAY_37, folder, state.hashes, artifacts)
    assert (redo.written, redo.unchanged, redo.failed) == (1, 36, 0)
    assert redo.radicados_written == [open_rad["numero_radicado"]]
    latest = landing_state(folder).latest[open_rad["numero_radicado"]][2]
    assert latest.values["estado_solicitud"] == "Finalizado"

    secrets_and_personal = personal_values(open_rad) | {PASSWORD}
    for record in portal.records("afinia", DAY_37):
        secrets_and_personal |= personal_values(record)
    assert not [v for v in secrets_and_personal if v in caplog.text]


def test_aire_variant_and_bad_password(portal, tmp_path):
    folder, artifacts = tmp_path / "landing", tmp_path / "artifacts"
    result = scrape_day(_config(portal, "aire", concurrency=3), DAY_AIRE, folder, set(), artifacts)
    assert (result.listed, result.written, result.failed, result.pages_walked) == (14, 14, 0, 2)
    docs = _check_complete(portal, "aire", DAY_AIRE, folder)
    assert all(rad[8] == "2" for rad in docs)  # Air-e's radicados, not Afinia's

    bad = ScraperConfig(
        "aire",
        portal.url("aire"),
        USER,
        "wrong-" + PASSWORD,
        max_per_min=None,
        timeout_s=10,
        browser_path=configured_browser(),
    )
    assert PASSWORD not in repr(bad) and USER not in repr(bad)
    with pytest.raises(LoginError) as err:
        scrape_day(bad, DAY_AIRE, tmp_path / "other", set(), tmp_path / "artifacts2")
    assert PASSWORD not in str(err.value)
    assert "refused the login: check OV_AIRE_USER and OV_AIRE_PASSWORD" in str(err.value)

    # Nothing listening there: the message says which setting to check, not "login failed".
    unreachable = ScraperConfig(
        "aire",
        f"http://127.0.0.1:{free_port()}",
        USER,
        PASSWORD,
        max_per_min=None,
        browser_path=configured_browser(),
        timeout_s=10,
    )
    with pytest.raises(LoginError) as err:
        scrape_day(unreachable, DAY_AIRE, tmp_path / "nowhere", set(), tmp_path / "artifacts3")
    assert "cannot reach the aire portal's login page" in str(err.value)
    assert "OV_AIRE_PORTAL_URL" in str(err.value) and PASSWORD not in str(err.value)


def test_faults_are_survived_and_failures_leave_private_artifacts(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ov_assets")
    broken_forever = None
    with ReplicaPortal(per_day=_per_day, seed=7, username=USER, password=PASSWORD) as portal:
        records = portal.records("afinia", DAY_FAULTS)
        broken_forever = records[5]["numero_radicado"]
        portal.set_faults(
            Faults(delay_s=0.05, fail_every=7, expire_every=13, fail_radicados=frozenset({broken_forever}))
        )
        folder, artifacts = tmp_path / "landing", tmp_path / "artifacts"
        result = scrape_day(_config(portal, "afinia"), DAY_FAULTS, folder, set(), artifacts)
        stats = portal.stats
        assert stats["errors_500"] >= 3 and stats["expired"] >= 2
        assert result.listed == 23 and result.written == 22 and result.failed == 1
        assert result.radicados_failed == [broken_forever]
        assert result.relogins >= 3 and result.retries >= 3  # first login + one per expiry

        # Artifacts: a masked screenshot and the trace, readable by the owner only, no password.
        paths = [Path(p) for p in result.failure_artifacts]
        assert {p.suffix for p in paths} == {".png", ".zip"}
        assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700
        for p in artifacts.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
            blobs = [p.read_bytes()]
            if p.suffix == ".zip":
                with zipfile.ZipFile(p) as z:
                    blobs += [z.read(n) for n in z.namelist()]
            for blob in blobs:
                assert PASSWORD.encode() not in blob, f"password in {p.name}"
        personal = set()
        for r in records:
            personal |= personal_values(r)
        assert not [v for v in personal | {PASSWORD} if v in caplog.text]

        # The portal heals: the rerun writes only the missing PQR, and the day is complete.
        portal.set_faults(Faults())
        again = scrape_day(_config(portal, "afinia"), DAY_FAULTS, folder, landing_state(folder).hashes, artifacts)
        assert (again.written, again.unchanged, again.failed) == (1, 22, 0)
        _check_complete(portal, "afinia", DAY_FAULTS, folder)


def test_killed_midway_then_rerun_completes_without_duplicates(portal, tmp_path):
    data_dir = tmp_path / "data"
    folder, artifacts = landing_dir(data_dir, "afinia"), data_dir / "artifacts" / "scraper"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OV_AFINIA", "OV_SCRAPER", "OV_ENV"))}
    # Slow enough (politeness limit) that the kill lands in the middle of the day.
    env.update(
        OV_AFINIA_PORTAL_URL=portal.url("afinia"),
        OV_AFINIA_USER=USER,
        OV_AFINIA_PASSWORD=PASSWORD,
        OV_DATA_DIR=str(data_dir),
        OV_SCRAPER_CONCURRENCY="2",
        OV_SCRAPER_MAX_PER_MIN="300",
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ov_assets.cli", "scrape", "--empresa", "afinia", "--day", DAY_KILL.isoformat()],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # barrier: wait until 8 records exist
            n = len(list(folder.glob("*_data_*.json"))) if folder.exists() else 0
            if n >= 8:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the scraper wrote nothing"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the scraper, its Playwright driver and Chromium
        proc.wait()
        proc.stderr.close()
    written_before = len(list(folder.glob("*_data_*.json")))
    assert 8 <= written_before < 30

    result = scrape_day(_config(portal, "afinia"), DAY_KILL, folder, landing_state(folder).hashes, artifacts)
    assert result.failed == 0 and result.written + result.unchanged == 30
    assert result.unchanged == written_before
    _check_complete(portal, "afinia", DAY_KILL, folder)


def test_portal_settings_from_the_environment_and_artifact_retention(tmp_path, monkeypatch):
    for name in (
        "OV_AIRE_PORTAL_URL",
        "OV_AIRE_USER",
        "OV_AIRE_PASSWORD",
        "OV_SCRAPER_CONCURRENCY",
        "OV_SCRAPER_MAX_PER_MIN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OV_ENV", "production")
    monkeypatch.setenv("OV_AIRE_PORTAL_URL", "https://x.invalid")
    monkeypatch.setenv("OV_AIRE_USER", "u")
    with pytest.raises(ConfigurationError) as err:
        resources_from_env()["portal"].uses_replica("aire")
    assert "OV_AIRE_PASSWORD" in str(err.value)
    monkeypatch.setenv("OV_AIRE_PASSWORD", PASSWORD)
    monkeypatch.setenv("OV_SCRAPER_CONCURRENCY", "2")
    monkeypatch.setenv("OV_SCRAPER_MAX_PER_MIN", "0")
    with (
        dg.build_resources({"portal": resources_from_env()["portal"]}) as built,
        built.portal.scraper_configs(["aire"]) as config_for,
    ):
        cfg = config_for("aire")
    assert (cfg.base_url, cfg.password, cfg.concurrency, cfg.max_per_min) == ("https://x.invalid", PASSWORD, 2, None)
    assert PASSWORD not in repr(cfg)
    old, new = tmp_path / "trace-afinia-old.zip", tmp_path / "fail-afinia-new.png"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 31 * 86400,) * 2)
    assert prune_artifacts(tmp_path, 30) == [old] and new.exists()
