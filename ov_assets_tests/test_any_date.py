"""The suite passes on any date: the date-sensitive tests run again in a pytest process whose
clock is moved to each of several fixed "todays" (conftest's OV_TEST_TODAY).

Test data is a function of its seed and of days the tests name; what still reads the clock
(validation's "after today", schedules, partitions' last day, the generator's cap) must give
the same verdicts the day after the tests' last named day, on a year change, on a Sunday after
February and on the day CI went red (2026-12-02 in Bogotá: the day three days earlier had no
attachment for seed 3). The todays lie between the tests' days and the real date: file
modification times come from the kernel's clock, which the travel cannot move, and a clock
behind them only makes files look newer.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ov_assets.core.contract import BOGOTA, today_bogota

ROOT = Path(__file__).resolve().parent.parent
# The tests whose data or verdicts involve today (in-process only: a subprocess they start,
# such as dagster dev, reads the real clock).
DATE_SENSITIVE = (
    "ov_assets_tests/test_any_date.py::test_clock_is_the_named_day",
    "ov_assets_tests/test_iam_policy.py",
    "ov_assets_tests/test_contract.py",
    "ov_assets_tests/test_schedules.py",
)
TODAYS = ("2025-10-21", "2026-01-01", "2026-03-01", "2026-12-02")


def test_clock_is_the_named_day() -> None:
    """Inside a run under OV_TEST_TODAY, today is that day (else the real one)."""
    named = os.environ.get("OV_TEST_TODAY", "").strip()
    assert today_bogota() == (dt.date.fromisoformat(named) if named else dt.datetime.now(BOGOTA).date())


@pytest.mark.parametrize("today", TODAYS)
def test_date_sensitive_tests_pass_on_any_today(today: str, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"} | {"OV_TEST_TODAY": today}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *DATE_SENSITIVE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = [
        c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error") is not None
    ]
    assert proc.returncode == 0 and not failed, f"under today={today}: {failed}\n{proc.stdout[-4000:]}"
    # Only the PostgreSQL 15 variants may skip (when OV_TEST_PG15_DSN is unset), never a whole file.
    ran = [c for c in suite.iter("testcase") if c.find("skipped") is None]
    assert len(ran) > 40 and any(c.get("name") == "test_clock_is_the_named_day" for c in ran)
