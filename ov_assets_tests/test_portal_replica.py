"""The replica portal's own behaviour (CONTRACT §9 "How the real portal behaves"), over HTTP
and in real Chromium: what a scraper may rely on, and what it must not."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from ov_assets.portal.replica import ReplicaPortal


def test_request_log_records_api_requests_in_order() -> None:
    with ReplicaPortal(per_day=3) as portal:
        before = time.time()
        for empresa in ("afinia", "aire"):
            try:
                urllib.request.urlopen(f"{portal.url(empresa)}/api/pqr?desde=2025-10-08&hasta=2025-10-08")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401  # no session
        urllib.request.urlopen(f"{portal.url('afinia')}/login").read()  # a page, not an API request
        log = portal.request_log()
        assert [(r.empresa, r.method, r.path.split("?")[0]) for r in log] == [
            ("afinia", "GET", "/afinia/api/pqr"), ("aire", "GET", "/aire/api/pqr")]
        assert before <= log[0].at <= log[1].at <= time.time()
        served = json.loads(urllib.request.urlopen(f"{portal.base_url}/__admin/requests").read())
        assert [tuple(r.values()) for r in served["requests"]] == [tuple(r) for r in log]
