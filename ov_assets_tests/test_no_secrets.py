"""No secret in the repository or its git history (issue 21; the previous system committed its
credentials): every line ever added, in every commit of every branch, is scanned with
detect-secrets' detectors (AWS keys, private keys, credentials in URLs/DSNs, passwords
assigned in code, Slack/GitHub/Stripe/... tokens). The high-entropy detectors stay off: the
repository is full of SHA-256 values and test data, which they flag by the thousand.

A fake credential that a test needs is marked on its line with ``# pragma: allowlist secret``
(detect-secrets' own marker). Those committed before the marker existed are listed below by
detect-secrets' hash of the value (SHA-1), each checked by hand: the history cannot change."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parent.parent
NOISY = {"Base64 High Entropy String", "Hex High Entropy String"}
KNOWN_FAKES = {
    "e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4": "test_portal_politeness: 'u:secret@' in a URL being normalized",
    "0388f76dae905e416875614bafeec4e6b5e7718e": "test_portal_scraper: the replica portal's test password",
    "06804c7ed44415dd18a5657db43f3a2ca244c573": "test_pg_errors: a deliberately wrong password",
    "132c36e946cff3fe5448416d88026a4134590995": "test_portal_replica: the replica portal's test password",
    "1d6ed29a5ff4080150c4c0c09e0103af132886de": "test_portal_politeness: a password that must not reach messages",
    "4aa6e3e2c6610e94cdc7fadee0fb1903c5707f22": "test_portal: the replica portal's test password",
    "4fece336d4a2d9f8c0fe7d6e15bc51314ab5cda6": "test_portal_replica: a wrong password ('otra')",
    "86604cba7f7b8b082a38c8a09edc7dc5d1a24821": "portal/replica: the name of the portal's password input",
    "98e47efa44372d23865248d9e437c89820a0b96f": "test_portal_check: the replica portal's test password",
    "565ea9bfed5323e71ddeebb173b60d1c26777b37": "test_doctor: the replica portal's test password",
    "25ab86bed149ca6ca9c1c0d5db7c9a91388ddeab": "test_backups: a password kept off pg_dump's command line",
    "bd9f4911cea34d37916956019386afed6e37d497": "test_pg_errors: a password that must not reach messages",
    "dc724af18fbdd4e59189f5fe768a5f8311527050": "conftest: moto's dummy AWS secret 'testing'",
    "e5c89c529dccb9b42716f4d9118d61079c883d9e": "bench/scrape: the replica portal's bench password",
    "e903fbbbc0764db2a4dcd4b8c1968631ff275335": "pgcluster: a random password made at test time",
}


def findings(lines: Iterable[tuple[str, str]]) -> list[str]:
    """``path: type: line`` for every (path, line) that holds a secret not known to be fake."""
    out = []
    with default_settings():
        for path, line in lines:
            for secret in scan_line(line):
                if secret.type not in NOISY and secret.secret_hash not in KNOWN_FAKES:
                    out.append(f"{path}: {secret.type}: {line.strip()[:100]}")
    return out


def added_lines() -> list[tuple[str, str]]:
    """Every line added by any commit reachable from any ref, with its file."""
    log = subprocess.run(
        ["git", "log", "-p", "--all", "--no-ext-diff", "--no-color", "--format=commit %H"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        check=True,
    ).stdout
    out, path = [], "?"
    for line in log.splitlines():
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        elif line.startswith("+"):
            out.append((path, line[1:]))
    return out


def test_the_scan_finds_what_it_must() -> None:
    """The scanner itself: planted secrets (assembled here, so this file holds none) are found."""
    planted = [
        "aws_access_key_id = '" + "AKIA" + "Q3EGRJ5XKBVM7T2P" + "'",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "DSN = 'postgresql://ov_pipeline:" + "Xk29-ha" + "93Lq@db.example.com:5432/ov'",
        "POSTGRES_PASSWORD = '" + "h7Gv-29" + "xLq-Mz'",
    ]
    assert len(findings(("planted.py", line) for line in planted)) >= len(planted)


def test_no_secret_in_the_repository_or_its_history() -> None:
    lines = added_lines()
    assert len(lines) > 10_000  # the history was really read
    assert findings(lines) == []
