"""Landing names from untrusted portal values, and writes that never replace a file (issue 14
part 3): real files, real processes, no mocks."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from ov_assets.core.contract import BUSINESS_FIELDS
from ov_assets.core.file_names import FILE_RECORD, parse_name, safe_token
from ov_assets.devkit.replica import ReplicaPortal
from ov_assets.fs import private_dir
from ov_assets.portal.naming import LandingConflict
from ov_assets.portal.scraper import ScraperConfig, scrape_day, write_version
from ov_assets_tests.support import configured_browser

EXTRACTED = dt.datetime(2025, 10, 8, 9, 32, 21)
UNSAFE_SGCS = ["../../x", "a/b", "R" * 300, "", " RE 22/10\x00..", "..", "."]


def _record(radicado: str, sgc: str) -> dict[str, str]:
    rec = dict.fromkeys(BUSINESS_FIELDS, "")
    rec.update(numero_radicado=radicado, fecha="2025/10/08 09:00", estado_solicitud="Radicado", numero_reclamo_sgc=sgc)
    return rec


def _write(folder: Path, radicado: str, sgc: str, position: int = 1, pdf: bytes = b"%PDF-1.4 x") -> list[Path]:
    return write_version(
        folder,
        _record(radicado, sgc),
        EXTRACTED,
        position,
        pdf,
        [("foto medidor.jpg", b"jpg-" + radicado.encode())],
        f"http://portal.invalid/#/Detail/{radicado}",
    )


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("sgc", UNSAFE_SGCS, ids=["dotdot", "slash", "300chars", "empty", "mixed", "dots", "dot"])
def test_unsafe_sgc_names_files_inside_the_landing_folder(tmp_path: Path, sgc: str) -> None:
    folder = tmp_path / "a" / "b" / "landing"
    written = _write(folder, "202510080012345", sgc)
    assert len(written) == 3
    # Nothing anywhere but the landing folder's own files (and the folders leading to it).
    assert _tree(tmp_path) == {tmp_path / "a", tmp_path / "a" / "b", folder, *written}
    for path in written:
        assert path.parent == folder and len(path.name) < 200
        name = parse_name(path.name)
        assert name is not None and name.ts == "20251008_093221"
        assert "/" not in name.sgc and name.sgc not in ("", ".", "..")
    record = next(p for p in written if parse_name(p.name).kind == FILE_RECORD)
    doc = json.loads(record.read_text("utf-8"))
    assert doc["numero_reclamo_sgc"] == sgc and doc["sgc_number"] == sgc  # verbatim in the JSON
    # The record's files share its {sgc} and {ts}: the indexer links them.
    assert len({parse_name(p.name).link_key for p in written}) == 1


def test_safe_tokens_are_verbatim_when_safe_deterministic_and_apart_otherwise() -> None:
    for sgc in ("RE2210202542239", "63643842", "A-1"):
        assert safe_token(sgc) == sgc
    assert safe_token("a/b") == safe_token("a/b") != safe_token("a\\b")
    assert safe_token("a/b").startswith("ab_h") and safe_token("ab") == "ab"
    assert len(safe_token("R" * 300)) <= 50 and safe_token("R" * 300) != safe_token("R" * 301)
    assert safe_token("") and "_" in safe_token("")


def test_files_and_folders_are_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "downloads" / "afinia" / "oficina_virtual" / "processed"
    folder.parent.mkdir(parents=True, mode=0o755)
    os.chmod(folder.parent, 0o755)
    written = _write(folder, "202510080012345", "RE2210202542239")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    fresh = tmp_path / "new" / "deep"
    private_dir(fresh)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_a_taken_name_is_never_replaced_by_other_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    first = _write(folder, "202510080012345", "RE2210202542239")
    before = {p: p.read_bytes() for p in first}
    # The same version again (same bytes): fine, nothing new.
    assert _write(folder, "202510080012345", "RE2210202542239") == []
    # Another rendering at the same second (a PDF differs): an error naming the file, nothing
    # replaced, and no file of the failed version left behind.
    with pytest.raises(LandingConflict, match=r"RE2210202542239_20251008_093221\.pdf already exists"):
        _write(folder, "202510080012345", "RE2210202542239", pdf=b"%PDF-1.4 other")
    assert {p: p.read_bytes() for p in folder.iterdir()} == before


def _write_many(folder: str, radicados: list[str]) -> None:
    """One scrape's worth of SGC-less PQRs, all at the same second and list positions 1..n."""
    for position, radicado in enumerate(radicados, start=1):
        _write(Path(folder), radicado, "", position, pdf=b"%PDF " + radicado.encode())


def test_concurrent_scrapes_of_sgc_less_pqrs_lose_nothing(tmp_path: Path) -> None:
    """Two processes (a backfill beside a schedule run, say) write different PQRs with the same
    positions at the same second into one folder: every PQR keeps its own JSON and PDF."""
    folder = tmp_path / "landing"
    runs = [[f"2025100800{run}{i:04d}" for i in range(40)] for run in (1, 2)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(folder), rads)) for rads in runs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    docs = {}
    for path in folder.iterdir():
        name = parse_name(path.name)
        assert name is not None, f"a temporary file was left: {path.name}"
        if name.kind == FILE_RECORD:
            doc = json.loads(path.read_text("utf-8"))
            docs[doc["numero_radicado"]] = path
            assert (folder / f"{name.sgc}_{name.ts}.pdf").read_bytes() == b"%PDF " + doc["numero_radicado"].encode()
    assert set(docs) == set(runs[0]) | set(runs[1])


def test_scraping_unsafe_sgcs_from_the_replica_stays_in_the_landing_folder(tmp_path: Path) -> None:
    """The scraper reads these SGCs from the portal's input and names files only with safe
    tokens: every PQR saved, with its files, inside the landing folder; the JSON keeps the SGC."""
    day = dt.date(2025, 10, 8)
    folder = tmp_path / "a" / "b" / "landing"
    with ReplicaPortal(per_day=len(UNSAFE_SGCS), username="u", password="p") as portal:
        wanted = {}
        for rec, sgc in zip(portal.records("aire", day), UNSAFE_SGCS, strict=True):
            portal.set_fields("aire", rec["numero_radicado"], numero_reclamo_sgc=sgc)
            wanted[rec["numero_radicado"]] = sgc.strip()  # the scraper trims what the input shows
        config = ScraperConfig(
            "aire",
            portal.url("aire"),
            "u",
            "p",
            max_per_min=None,
            timeout_s=20,
            trace=False,
            browser_path=configured_browser(),
        )
        result = scrape_day(config, day, folder, set(), tmp_path / "artifacts")
    assert (result.written, result.failed) == (len(UNSAFE_SGCS), 0)
    assert {p for p in _tree(tmp_path / "a") if folder not in p.parents} == {tmp_path / "a" / "b", folder}
    got = {}
    for path in folder.iterdir():
        name = parse_name(path.name)
        assert name is not None, path.name
        if name.kind == FILE_RECORD:
            doc = json.loads(path.read_text("utf-8"))
            got[doc["numero_radicado"]] = doc["numero_reclamo_sgc"]
            assert (folder / f"{name.sgc}_{name.ts}.pdf").exists()
    assert got == wanted
