"""The heartbeat and tick-error alerts under a real ``dagster-daemon`` (issue 17, acceptance 1
and 3): the daemon GETs OV_HEARTBEAT_URL from a local HTTP server while it runs and stops when
it is stopped; a sensor whose ticks fail reaches the stand-in Slack once (not once per tick),
without the personal value its error holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ov_assets_tests.alerting_defs import PERSONAL

DEFS = Path(__file__).with_name("alerting_defs.py")
INTERVAL = 2

pytest_plugins = ("ov_assets_tests.alert_servers",)  # webhook, smtp_server


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"dagster-daemon exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def test_heartbeat_follows_the_daemon_and_tick_errors_alert(webhook, tmp_path: Path) -> None:
    url, receiver = webhook
    base = url.split("/services/")[0]
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OV_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "OV_DATA_DIR": str(tmp_path / "data"),
        "OV_HEARTBEAT_URL": f"{base}/ping/0f1e2d3c",
        "OV_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL),
        "OV_ALERT_INTERVAL_SECONDS": str(INTERVAL),
        "OV_SLACK_WEBHOOK_URL": url,
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "daemon.log"
    daemon = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-f", str(DEFS)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            daemon,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(lambda: len(receiver.pings) >= 3, 180, "three heartbeats", proc, log)
        assert set(receiver.pings) == {"/ping/0f1e2d3c"}

        def tick_alerts() -> list[str]:
            return [t for t in receiver.texts() if "broken_sensor" in t]

        wait_until(lambda: tick_alerts(), 180, "the tick-error alert", proc, log)
        [alert] = tick_alerts()
        assert alert.startswith("[ov-assets] sensor tick failed: broken_sensor")
        assert "error: ValueError" in alert
        # more failed ticks of broken_sensor, still one alert (one per sensor and day)
        seen = len(receiver.pings)
        wait_until(lambda: len(receiver.pings) >= seen + 2, 60, "two more heartbeats", proc, log)
        assert len(tick_alerts()) == 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    # The daemon is stopped: so is the heartbeat (a few intervals pass without a GET).
    stopped = len(receiver.pings)
    time.sleep(4 * INTERVAL)
    assert len(receiver.pings) == stopped
    for text in receiver.texts():
        for value in PERSONAL.split():
            assert value not in text, value
    assert "0f1e2d3c" not in log.read_text()  # the heartbeat's token is never logged
