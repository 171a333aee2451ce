"""What a scrape reports (``ScrapeResult``) and how a failed extraction is said to the
operator: no browser needed."""

from __future__ import annotations

import json

from ov_assets.portal.scraper import ScrapeResult, describe_failures


def test_failure_description_names_lost_pqrs_and_unwalked_lists() -> None:
    """A run that could not walk a day's results list must not read "extraction failed for 1
    PQRs": PQRs after that point were never seen, and the operator must know it."""
    pqr = ScrapeResult("afinia", "2025-10-08", failed=2, radicados_failed=["RAD-1", "RAD-2"])
    walked = ScrapeResult("aire", "2025-10-09", failed=1, list_error="PortalError")
    text = describe_failures([pqr, walked])
    assert text.startswith(
        "2 PQRs could not be extracted; the results list of aire 2025-10-09 (PortalError) "
        "could not be walked to the end"
    )
    assert "failure_artifacts" in text
    assert "1 PQRs" not in describe_failures([walked]) and "list of aire" in describe_failures([walked])


def test_result_as_the_command_line_prints_it_and_when_a_day_is_complete() -> None:
    """``ov-assets scrape`` prints ``to_dict()`` as JSON; a day is complete
    only with nothing failed and every PQR the listing announced seen."""
    failed = ScrapeResult(
        "aire", "2025-10-09", listed=3, listed_total=3, failed=1, list_error="PortalError", radicados_failed=["RAD-9"]
    )
    out = json.loads(json.dumps(failed.to_dict()))
    assert (out["failed"], out["list_error"], out["radicados_failed"]) == (1, "PortalError", ["RAD-9"])
    assert not failed.complete
    assert ScrapeResult("aire", "2025-10-09", listed=3, listed_total=3).complete
    assert not ScrapeResult("aire", "2025-10-09", listed=2, listed_total=3).complete
