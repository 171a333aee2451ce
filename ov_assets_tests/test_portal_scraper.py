"""The scraper against a replica that behaves like the real portal (CONTRACT §9 "How the real
portal behaves"), in real Chromium: a script-driven login, a debounced date filter, rows that
arrive after the label, HTTP 500s and expiring sessions. Nothing of another day is saved, and a
day that cannot be listed completely fails the run saying so."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ov_assets.devkit.replica import Faults, ReplicaPortal
from ov_assets.devkit.servers import free_port
from ov_assets.portal.pages import LoginError
from ov_assets.portal.scraper import ScraperConfig, ScrapeResult, describe_failures, scrape_day
from ov_assets_tests.support import configured_browser, leaked, personal_search_terms
from ov_assets_tests.test_portal import _check_complete

REPO = Path(__file__).resolve().parents[1]
USER = "analista.ov"
PASSWORD = "Pw-4d2b9e-nunca-en-archivos"
SECRETS = (PASSWORD.encode(), base64.b64encode(PASSWORD.encode()))  # as typed, and as Afinia posts it
DAY = dt.date(2025, 10, 8)
NEXT_DAY = DAY + dt.timedelta(days=1)


@pytest.fixture
def portal() -> Iterator[ReplicaPortal]:
    # The day of 37 PQRs (4 pages) has a neighbour: an unfiltered list shows both.
    with ReplicaPortal(per_day={DAY: 37, NEXT_DAY: 10, "default": 0}, seed=11, username=USER, password=PASSWORD) as p:
        yield p


def _config(portal: ReplicaPortal, empresa: str, **kw: object) -> ScraperConfig:
    kw.setdefault("max_per_min", None)
    kw.setdefault("timeout_s", 15)
    kw.setdefault("browser_path", configured_browser())
    return ScraperConfig(empresa, portal.url(empresa), USER, PASSWORD, **kw)


def _no_secrets_in_files(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            blobs = [path.read_bytes()]
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as z:
                    blobs += [z.read(n) for n in z.namelist()]
            assert not [s for s in SECRETS for b in blobs if s in b], f"the password is in {path.name}"


def _assert_day_saved(portal: ReplicaPortal, empresa: str, folder: Path, result: ScrapeResult) -> None:
    """All 37 saved once, equal to the portal, with PDFs and byte-exact attachments; nothing of
    another day; no partial files."""
    assert (result.listed, result.listed_total, result.failed) == (37, 37, 0), result.to_dict()
    assert result.complete and not result.list_error
    docs = _check_complete(portal, empresa, DAY, folder)
    assert len(docs) == 37 and all(d["fecha"].startswith(DAY.strftime("%Y/%m/%d")) for d in docs.values())
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]


def test_afinia_logs_in_through_its_script_driven_button(portal: ReplicaPortal, tmp_path: Path) -> None:
    result = scrape_day(_config(portal, "afinia"), DAY, tmp_path / "landing", set(), tmp_path / "artifacts")
    _assert_day_saved(portal, "afinia", tmp_path / "landing", result)
    assert portal.stats["login_failures"] == 0
    with pytest.raises(LoginError) as err:
        scrape_day(
            ScraperConfig(
                "afinia",
                portal.url("afinia"),
                USER,
                PASSWORD + "x",
                max_per_min=None,
                browser_path=configured_browser(),
                timeout_s=10,
            ),
            DAY,
            tmp_path / "other",
            set(),
            tmp_path / "artifacts2",
        )
    assert "refused the login: check OV_AFINIA_USER and OV_AFINIA_PASSWORD" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_debounced_date_filter_never_saves_another_day(portal: ReplicaPortal, tmp_path: Path) -> None:
    """A search launched right after typing lists every day (the filter model still holds the
    previous dates): the scraper searches again until the filter took."""
    folder = tmp_path / "landing"
    result = scrape_day(_config(portal, "aire"), DAY, folder, set(), tmp_path / "artifacts")
    _assert_day_saved(portal, "aire", folder, result)
    searches = [r.path for r in portal.request_log() if r.path.startswith("/aire/api/pqr?")]
    assert f"desde={DAY}&hasta={DAY}&" in searches[-1]


def test_a_search_sent_before_the_filter_took_is_searched_again(portal: ReplicaPortal, tmp_path: Path) -> None:
    """When the typed dates reach the model later than the usual 500 ms, the first search
    lists every day; the request shows it, and the scraper searches again once it carries the
    day."""
    portal.set_faults(Faults(debounce_ms=1500))
    folder = tmp_path / "landing"
    result = scrape_day(_config(portal, "aire"), DAY, folder, set(), tmp_path / "artifacts")
    _assert_day_saved(portal, "aire", folder, result)
    searches = [r.path for r in portal.request_log() if r.path.startswith("/aire/api/pqr?")]
    assert "desde=&hasta=&" in searches[0] and f"desde={DAY}&hasta={DAY}&" in searches[-1]


def test_rows_are_read_only_after_their_answer(portal: ReplicaPortal, tmp_path: Path) -> None:
    """Slow answers: the range label moves at once, the rows only when the XHR answers; rows
    read on the label would be the previous page's again."""
    portal.set_faults(Faults(delay_s=0.3))
    folder = tmp_path / "landing"
    result = scrape_day(_config(portal, "aire"), DAY, folder, set(), tmp_path / "artifacts")
    _assert_day_saved(portal, "aire", folder, result)
    assert result.pages_walked == 4


@pytest.mark.parametrize("empresa", ["afinia", "aire"])
def test_day_of_37_with_http_500s_and_expiring_sessions(
    portal: ReplicaPortal,
    tmp_path: Path,
    empresa: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """10% of the XHRs answer 500 and the session expires every few seconds (60 s on the live
    portal; shorter here so that one day meets several expiries)."""
    caplog.set_level(logging.INFO, logger="ov_assets")
    portal.set_faults(Faults(fail_rate=0.1, session_ttl_s=3.0))
    folder, artifacts = tmp_path / "landing", tmp_path / "artifacts"
    result = scrape_day(_config(portal, empresa), DAY, folder, set(), artifacts)
    _assert_day_saved(portal, empresa, folder, result)
    stats = portal.stats
    assert stats["errors_500"] >= 2 and stats["expired"] >= 1 and result.relogins >= 2
    _no_secrets_in_files(folder, artifacts)
    output = caplog.text + "".join(capsys.readouterr())
    assert PASSWORD not in output and SECRETS[1].decode() not in output
    assert not leaked(output, personal_search_terms(portal.records(empresa, DAY)))


def test_a_filter_that_never_takes_fails_the_day_and_saves_nothing_of_other_days(
    portal: ReplicaPortal,
    tmp_path: Path,
) -> None:
    portal.set_faults(Faults(ignore_date_filter=True))
    folder = tmp_path / "landing"
    result = scrape_day(_config(portal, "aire", retries=1), DAY, folder, set(), tmp_path / "artifacts")
    assert result.failed and not result.complete
    assert "the date filter did not apply" in result.list_error
    assert "could not be walked to the end" in describe_failures([result])
    # Rows of the other day were on screen; none of them was saved (nor any row at all: a page
    # is taken only when every row on it is of the day).
    saved = [json.loads(p.read_text("utf-8")) for p in folder.glob("*_data_*.json")] if folder.exists() else []
    assert not [d for d in saved if not d["fecha"].startswith(DAY.strftime("%Y/%m/%d"))]


def test_a_day_listed_short_of_its_count_fails_naming_the_gap(portal: ReplicaPortal, tmp_path: Path) -> None:
    """Pages that repeat a row hide another (pages 2-4: three of them): 34 distinct radicados
    for a label of 37 is a gap, never a green run."""
    portal.set_faults(Faults(unstable_order=True))
    folder = tmp_path / "landing"
    result = scrape_day(_config(portal, "aire", retries=1), DAY, folder, set(), tmp_path / "artifacts")
    assert result.failed and not result.complete and (result.listed, result.listed_total) == (34, 37)
    assert "counts 37 PQRs for the day but listed 34 distinct radicados" in result.list_error
    assert len(list(folder.glob("*_data_*.json"))) == 34


def test_a_session_that_never_lasts_fails_the_day(portal: ReplicaPortal, tmp_path: Path) -> None:
    """Logging in again is bounded too: a portal whose every request finds the session expired
    fails the day saying so."""
    portal.set_faults(Faults(expire_every=1))
    result = scrape_day(_config(portal, "aire", retries=1), DAY, tmp_path / "landing", set(), tmp_path / "artifacts")
    assert result.failed and not result.written
    assert "the portal session expired 5 times without a page of results in between" in result.list_error


def test_dagster_materialize_against_a_standalone_faulty_replica(tmp_path: Path) -> None:
    """The operator's command, with OV_AIRE_PORTAL_URL/_USER/_PASSWORD pointing at a replica
    in its own process that answers 10% HTTP 500s and expires sessions."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OV_AFINIA_", "OV_AIRE_", "POSTGRES_", "AWS_"))}
    replica = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ov_assets.devkit.replica",
            "--port",
            str(port),
            "--per-day",
            "37",
            "--seed",
            "5",
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        replica.stdout.readline()  # listening
        base = f"http://127.0.0.1:{port}"
        faults = json.dumps({"fail_rate": 0.1, "session_ttl_s": 4.0}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{base}/__admin/faults", faults, method="POST")).read()
        data = tmp_path / "data"
        run_env = {
            **env,
            "OV_DATA_DIR": str(data),
            "DAGSTER_HOME": str(tmp_path / "home"),
            "OV_AIRE_PORTAL_URL": f"{base}/aire",
            "OV_AIRE_USER": USER,
            "OV_AIRE_PASSWORD": PASSWORD,
            "OV_SCRAPER_MAX_PER_MIN": "0",
        }
        (tmp_path / "home").mkdir()
        proc = subprocess.run(
            [
                str(Path(sys.executable).with_name("dagster")),
                "asset",
                "materialize",
                "-m",
                "ov_assets.definitions",
                "--select",
                "raw_pqr_files",
                "--partition",
                f"{DAY}|aire",
            ],
            cwd=REPO,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        stats = json.loads(urllib.request.urlopen(f"{base}/__admin").read())["stats"]
    finally:
        replica.terminate()
        replica.wait()
        replica.stdout.close()
    assert stats["errors_500"] >= 1 and stats["expired"] >= 1, stats
    output = proc.stdout + proc.stderr
    assert PASSWORD not in output and SECRETS[1].decode() not in output
    folder = data / "downloads" / "aire" / "oficina_virtual" / "processed"
    # The standalone replica's data, computed here from the same seed (no server needed).
    expected = ReplicaPortal(per_day=37, seed=5, username=USER, password=PASSWORD)
    docs = _check_complete(expected, "aire", DAY, folder)
    assert len(docs) == 37
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]
    _no_secrets_in_files(data / "downloads")
