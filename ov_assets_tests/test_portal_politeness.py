"""Politeness per portal (issue 14 part 4): OV_SCRAPER_MAX_PER_MIN holds for one portal across
concurrent runs, shared through the real PostgreSQL; measured from the replica's request log."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ov_assets.defs.resources import PostgresResource
from ov_assets.devkit.replica import ReplicaPortal
from ov_assets.devkit.servers import free_port
from ov_assets.portal import politeness
from ov_assets.portal.politeness import LocalRateLimiter, PolitenessUnavailable, SharedRateLimiter
from ov_assets.portal.scraper import ScraperConfig, scrape_day
from ov_assets_tests.loadkit import login_roles, migrate, resource, run_together
from ov_assets_tests.support import configured_browser

USER, PASSWORD = "analista.ov", "Pw-politeness-no-en-trazas"
DAYS = (dt.date(2025, 10, 8), dt.date(2025, 10, 9))
PER_DAY = 8


def _postgres(conninfo: dict[str, Any], data_dir: Path, **kw: Any) -> PostgresResource:
    return resource(conninfo, data_dir=str(data_dir), **kw)


def test_portal_key_ignores_credentials_case_and_trailing_slash() -> None:
    assert politeness.portal_key("https://u:secret@Caribemar.Facture.co/") == "https://caribemar.facture.co"
    assert politeness.portal_key("http://127.0.0.1:8765/afinia/") == "http://127.0.0.1:8765/afinia"
    assert politeness.portal_key("http://127.0.0.1:8765/aire") != politeness.portal_key("http://127.0.0.1:8765/afinia")


def test_slots_are_spaced_across_limiters_with_their_own_connections(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """Two limiters of one portal (as two runs would hold) in two threads: every slot they take
    is one step after the previous one, whoever took it; another portal is not slowed."""
    pg = _postgres(pg_conninfo18, tmp_path)
    step = 0.2
    limiters = [SharedRateLimiter(pg, "https://portal.invalid", 60 / step) for _ in range(2)]
    other = SharedRateLimiter(pg, "https://other.invalid", 60 / step)
    slots: list[float] = []
    lock = threading.Lock()

    def take(limiter: SharedRateLimiter) -> None:
        for _ in range(6):
            delay = limiter.take_slot()
            with lock:
                slots.append(time.time() + delay)

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for limiter in limiters:
        limiter.close()
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert len(slots) == 12 and min(gaps) > step * 0.8, gaps
    assert other.take_slot() <= 0  # the first request to another portal waits for nobody
    other.close()
    with psycopg.connect(**pg_conninfo18) as conn:
        rows = conn.execute("SELECT portal FROM data_general.portal_request_slots ORDER BY 1").fetchall()
    assert rows == [("https://other.invalid",), ("https://portal.invalid",)]


def test_unreachable_database_stops_the_scrape_before_the_portal_is_touched(tmp_path: Path) -> None:
    down = PostgresResource(
        host="127.0.0.1",
        port=free_port(),
        user="ov",
        password="pg-secret-no-en-mensajes",
        connect_timeout_s=2,
        retries=0,
        data_dir=str(tmp_path),
    )
    with ReplicaPortal(per_day=3, username=USER, password=PASSWORD) as portal:
        config = ScraperConfig(
            "afinia",
            portal.url("afinia"),
            USER,
            PASSWORD,
            browser_path=configured_browser(),
            max_per_min=60,
            politeness_db=down,
        )
        with pytest.raises(PolitenessUnavailable) as info:
            scrape_day(config, DAYS[0], tmp_path / "landing", set(), tmp_path / "artifacts")
        assert portal.request_log() == [] and portal.stats["logins"] == 0
    message = str(info.value)
    assert "OV_SCRAPER_MAX_PER_MIN" in message and "POSTGRES_" in message and "127.0.0.1" in message
    assert "pg-secret" not in message and PASSWORD not in message


def test_without_a_database_the_limit_is_per_process_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ov_assets.portal.politeness")
    limiter = politeness.limiter_for("https://portal.invalid", 120, None)
    assert isinstance(limiter, LocalRateLimiter)
    assert "this process only" in caplog.text
    assert isinstance(politeness.limiter_for("https://portal.invalid", None, None), politeness.NoLimit)


def test_two_concurrent_scrapes_of_one_portal_stay_under_the_limit_together(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """Two runs (a backfill beside a schedule, say) scrape two days of one portal at once, each
    with its own database connections: the detail requests (what the limit gates) the portal
    receives from both together never exceed OV_SCRAPER_MAX_PER_MIN. Nothing of either day is
    lost though they share the landing folder and the PQRs have no SGC."""
    per_min = 60.0
    pg = _postgres(pg_conninfo18, tmp_path)
    folder = tmp_path / "landing"
    results = []
    with ReplicaPortal(per_day=PER_DAY, username=USER, password=PASSWORD) as portal:
        for day in DAYS:
            for rec in portal.records("aire", day):
                portal.set_fields("aire", rec["numero_radicado"], numero_reclamo_sgc="")

        def run(day: dt.date) -> None:
            config = ScraperConfig(
                "aire",
                portal.url("aire"),
                USER,
                PASSWORD,
                browser_path=configured_browser(),
                max_per_min=per_min,
                politeness_db=pg,
                timeout_s=20,
                trace=False,
            )
            results.append(scrape_day(config, day, folder, set(), tmp_path / f"artifacts-{day}"))

        run_together([lambda d=day: run(d) for day in DAYS], timeout=300)
        log = portal.request_log()
    assert sorted(r.written for r in results) == [PER_DAY, PER_DAY] and not any(r.failed for r in results)
    details = sorted(r.at for r in log if re.fullmatch(r"/aire/api/pqr/\d+", r.path.split("?")[0]))
    assert len(details) >= 2 * PER_DAY
    # Any k consecutive detail requests span at least (k - 1) slots of 60/per_min seconds, less
    # one slot for the time between a slot and its request reaching the portal.
    step, k = 60.0 / per_min, 8
    spans = [details[i + k - 1] - details[i] for i in range(len(details) - k + 1)]
    assert min(spans) >= (k - 2) * step, f"{k} detail requests within {min(spans):.2f}s"


def test_raw_pqr_files_takes_its_slots_from_the_pipeline_database(
    pg_conninfo18: dict[str, Any], data_dir: Path
) -> None:
    """The asset passes its PostgreSQL to the scraper: the slots of the portal it extracted from
    (here the replica it starts) are in ``portal_request_slots``."""
    import dagster as dg

    from ov_assets.defs.assets import raw_pqr_files
    from ov_assets.defs.partitions import partition_key
    from ov_assets.defs.resources import LandingResource, PortalResource

    portal = PortalResource(replica_per_day=3, data_dir=str(data_dir), max_per_min=600)
    resources = {
        "landing": LandingResource(data_dir=str(data_dir)),
        "portal": portal,
        "postgres": _postgres(pg_conninfo18, data_dir),
    }
    result = dg.materialize([raw_pqr_files], partition_key=partition_key(DAYS[0], "afinia"), resources=resources)
    assert result.success
    with psycopg.connect(**pg_conninfo18) as conn:
        rows = conn.execute("SELECT portal FROM data_general.portal_request_slots").fetchall()
    assert len(rows) == 1 and re.fullmatch(r"http://127\.0\.0\.1:\d+/afinia", rows[0][0])


def test_database_lost_mid_scrape_stops_it_with_the_operator_message(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """The slots become unavailable after the start (here their table goes away once the list is
    read): the scrape stops with PolitenessUnavailable instead of counting every PQR as failed,
    and nothing is written without a slot."""
    pg = _postgres(pg_conninfo18, tmp_path)
    folder = tmp_path / "landing"

    def lose_the_slots(row: object) -> bool:
        with psycopg.connect(**pg_conninfo18, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS data_general.portal_request_slots")
        return True

    with ReplicaPortal(per_day=3, username=USER, password=PASSWORD) as portal:
        config = ScraperConfig(
            "afinia",
            portal.url("afinia"),
            USER,
            PASSWORD,
            browser_path=configured_browser(),
            max_per_min=600,
            politeness_db=pg,
            timeout_s=20,
            trace=False,
        )
        with pytest.raises(
            PolitenessUnavailable, match=r"\(OV_SCRAPER_MAX_PER_MIN\) is kept in PostgreSQL.*ov-assets migrate"
        ):
            scrape_day(config, DAYS[0], folder, set(), tmp_path / "artifacts", only=lose_the_slots)
        assert not [r for r in portal.request_log() if re.fullmatch(r"/afinia/api/pqr/\d+", r.path.split("?")[0])]
    assert not folder.exists() or not list(folder.iterdir())


def test_the_least_privilege_loader_takes_slots(pg_conninfo18: dict[str, Any], tmp_path: Path) -> None:
    """Production runs as a member of ov_loader (no DDL): migration 003 grants it the slots."""
    migrate(pg_conninfo18)
    with login_roles(pg_conninfo18, "ov_loader") as users:
        loader = _postgres(users["ov_loader"], tmp_path, retries=0)
        limiter = politeness.limiter_for("https://portal.invalid", 120, loader)
        assert isinstance(limiter, SharedRateLimiter)
        assert limiter.take_slot() <= 0 < limiter.take_slot() <= 0.5  # the second waits for its slot
        limiter.close()


# Server-side witness of the slots' connections: a trigger records the backend pid of every slot
# taken (BEFORE INSERT fires once per take, conflict or not) and can end its own backend at the
# Nth take, as a restart or an RDS failover ends it (57P01). Its row goes with the aborted take.
_WITNESS = """
CREATE TABLE public.slot_takers (pid int NOT NULL);
CREATE SEQUENCE public.slot_takes;
CREATE TABLE public.slot_fault (end_backend_at bigint);
INSERT INTO public.slot_fault VALUES (NULL);
CREATE FUNCTION public.witness_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.slot_takers VALUES (pg_backend_pid());
    IF nextval('public.slot_takes') = (SELECT end_backend_at FROM public.slot_fault) THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination interrupts it
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER witness_slot BEFORE INSERT ON data_general.portal_request_slots
    FOR EACH ROW EXECUTE FUNCTION public.witness_slot();
"""


def _scrape_with_witness(
    conninfo: dict[str, Any], tmp_path: Path, end_backend_at: int | None
) -> tuple[Any, list[int], int]:
    """Scrape one day of PER_DAY details with the shared limiter; (result, backend pid of each
    slot taken, detail requests the portal received)."""
    migrate(conninfo)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(_WITNESS)
        conn.execute("UPDATE public.slot_fault SET end_backend_at = %s", (end_backend_at,))
    pg = _postgres(conninfo, tmp_path)
    with ReplicaPortal(per_day=PER_DAY, username=USER, password=PASSWORD) as portal:
        config = ScraperConfig(
            "afinia",
            portal.url("afinia"),
            USER,
            PASSWORD,
            browser_path=configured_browser(),
            max_per_min=6000,
            politeness_db=pg,
            timeout_s=20,
            trace=False,
        )
        result = scrape_day(config, DAYS[0], tmp_path / "landing", set(), tmp_path / "artifacts")
        details = [r for r in portal.request_log() if re.fullmatch(r"/afinia/api/pqr/\d+", r.path.split("?")[0])]
    with psycopg.connect(**conninfo) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM public.slot_takers").fetchall()]
    return result, pids, len(details)


def _no_ov_assets_backend_left(conninfo: dict[str, Any]) -> bool:
    """Wait (a backend ends shortly after its client closes) until no ov-assets connection to the
    test database is left; False if one stays."""
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for _ in range(200):
            (left,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'ov-assets'",
                (conninfo["dbname"],),
            ).fetchone()
            if not left:
                return True
            time.sleep(0.05)
    return False


def test_a_scrape_takes_every_slot_on_one_connection_and_closes_it(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """On RDS each connection is a TLS handshake: the slots of a whole scrape (every detail
    request, from concurrent workers) are taken by one server backend, gone after the scrape."""
    result, pids, details = _scrape_with_witness(pg_conninfo18, tmp_path, None)
    assert result.written == PER_DAY and not result.failed
    assert len(pids) >= details >= PER_DAY  # every detail request took its slot
    assert len(set(pids)) == 1, f"{len(set(pids))} connections for {len(pids)} slots"
    assert _no_ov_assets_backend_left(pg_conninfo18)


def test_a_lost_slots_connection_is_replaced_once_and_the_scrape_goes_on(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """The server ends the limiter's backend at its third slot (restart, failover, idle timeout):
    the limiter connects once more and the scrape completes on that second connection."""
    result, pids, details = _scrape_with_witness(pg_conninfo18, tmp_path, 3)
    assert result.written == PER_DAY and not result.failed
    assert len(pids) >= details >= PER_DAY
    assert len(set(pids)) == 2, f"{len(set(pids))} connections for {len(pids)} slots"
    assert _no_ov_assets_backend_left(pg_conninfo18)


def test_a_closed_limiter_takes_no_slot_and_holds_no_connection(pg_conninfo18: dict[str, Any], tmp_path: Path) -> None:
    """A worker still in its slot when the scrape ends (its thread outlives a cancelled task)
    cannot open the connection again behind the scrape's back."""
    limiter = politeness.limiter_for("https://portal.invalid", 120, _postgres(pg_conninfo18, tmp_path))
    assert isinstance(limiter, SharedRateLimiter)
    limiter.close()
    assert _no_ov_assets_backend_left(pg_conninfo18)
    with pytest.raises(PolitenessUnavailable, match="closed"):
        limiter.take_slot()
    assert _no_ov_assets_backend_left(pg_conninfo18)
