"""``ov-assets import-landing`` (issue 16): a hostile old landing folder (Windows-era names, a
cp1252 file, a duplicate, a name taken by other bytes, links, a traversal name, an undecodable
JSON, names that are no landing file's) copied into the landing folder, reported, and then
loaded by a real materialization (embedded PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path

import dagster as dg
import psycopg

from ov_assets import cli
from ov_assets.core.file_names import landing_dir
from ov_assets.defs.assets import pqr_assets
from ov_assets.devkit import generator
from ov_assets.landing import import_old
from ov_assets.landing.import_old import import_landing, name_problem
from ov_assets_tests.support import leaked, personal_search_terms, pipeline_resources

DAY = dt.date(2025, 10, 8)
TS = "20251008_101010"


def old_name(name: str) -> str:
    """The old extractor's record name: ``pqr_data_{sgc}_{ts}.json``."""
    if name.endswith(".json") and "_data_" in name:
        sgc, ts = name[: -len(".json")].split("_data_")
        return f"pqr_data_{sgc}_{ts}.json"
    return name


def old_folder(tmp_path: Path) -> tuple[Path, generator.GeneratedDay, dict[str, dict]]:
    """A generated day renamed the old way, plus hostile entries; also the extra records."""
    scratch = tmp_path / "scratch"
    gen = generator.write_day(scratch, "afinia", DAY, n=8, seed=5, broken=False)
    old = tmp_path / "old"
    old.mkdir()
    for path in gen.files:
        shutil.copy2(path, old / old_name(path.name))
    # A Windows-era record: cp1252 bytes (not UTF-8), an accented name.
    cp = dict(generator.fake_pqr("afinia", DAY, 90, seed=5), nombres_apellidos="María José Ñáñez Peña")
    cp_bytes = json.dumps(dict(cp, extraction_timestamp=TS), ensure_ascii=False).encode("cp1252")
    (old / f"pqr_data_RECP1252_{TS}.json").write_bytes(cp_bytes)
    # The same file twice (a copy of a copy, in a subfolder): same bytes.
    (old / "copia").mkdir()
    first = next(p for p in old.iterdir() if p.name.startswith("pqr_data_"))
    shutil.copy2(first, old / "copia" / first.name)
    # Undecodable (UTF-16 BOM): copied, and the pipeline keeps it as a reject.
    (old / f"pqr_data_ROTO_{TS}.json").write_bytes(b"\xff\xfe{\x00}\x00")
    # Links: to a file outside, and to a folder; never followed.
    secret = tmp_path / "secret.txt"
    secret.write_text("not to be copied")
    (old / f"pqr_data_LINK_{TS}.json").symlink_to(secret)
    (old / "enlace").symlink_to(tmp_path / "scratch", target_is_directory=True)
    # Names that are no landing file's name, or are paths.
    (old / "..\\evil_data_20251008_101010.json").write_bytes(b"{}")
    (old / "Thumbs.db").write_bytes(b"\0")
    (old / f"pqr_data_A\x01B_{TS}.json").write_bytes(b"{}")
    os.close(os.open(os.fsencode(old) + b"/pqr_data_\xf1_20251008_101010.json", os.O_CREAT | os.O_WRONLY, 0o600))
    os.mkfifo(old / f"pqr_data_FIFO_{TS}.json")
    return old, gen, {"cp": cp}


def test_names_are_text_never_paths():
    assert name_problem("../x") == "unsafe_name"
    assert name_problem("..\\x_data_20251008_101010.json") == "unsafe_name"
    assert name_problem(f"pqr_data_A\0_{TS}.json") == "unsafe_name"
    assert name_problem(f"pqr_data_{'A' * 200}_{TS}.json") == "name_too_long"
    assert name_problem("pqr_data_\udcf1_20251008_101010.json") == "name_not_utf8"
    assert name_problem("..") == "unknown_name" and name_problem(".hidden_data_20251008_101010.json") == "unknown_name"
    assert name_problem(f"pqr_data_RE2210202542239_{TS}.json") is None
    assert name_problem("3f2b9c1e-8a47-4c8e-9d55-0b7e6a1c2d3f.pdf") is None


def test_hostile_old_folder_is_imported_reported_and_loaded(tmp_path, data_dir, pg_conninfo18, capsys):
    old, gen, extra = old_folder(tmp_path)
    target = landing_dir(data_dir, "afinia")
    target.mkdir(parents=True, mode=0o700)
    taken_name = next(old_name(p.name) for p in gen.files if p.suffix == ".pdf")
    (target / taken_name).write_bytes(b"other bytes, there first")  # a name taken by other bytes
    mtimes = {p.name: p.stat().st_mtime_ns for p in old.iterdir() if p.is_file() and not p.is_symlink()}

    assert cli.main(["import-landing", str(old), "--empresa", "afinia"]) == 1  # some refused
    out = capsys.readouterr().out
    assert not leaked(out, personal_search_terms([*gen.records, extra["cp"]]))  # names and counts only

    report = import_landing(old, data_dir, "afinia")  # again: everything is there already
    assert report.taken == [] and report.already and "conflict" in report.refused

    expected_copied = {old_name(p.name) for p in gen.files} - {taken_name}
    expected_copied |= {f"pqr_data_RECP1252_{TS}.json", f"pqr_data_ROTO_{TS}.json"}
    landed = {p.name for p in target.iterdir()}
    assert landed == expected_copied | {taken_name}
    assert (target / taken_name).read_bytes() == b"other bytes, there first"  # never overwritten
    for name in expected_copied:  # byte for byte, owner-only, the original's time kept
        st = (target / name).stat()
        assert (target / name).read_bytes() == (old / name).read_bytes()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_mtime_ns == mtimes[name]
    assert not (landing_dir(data_dir, "aire")).exists()

    lines = out.splitlines()
    assert f"taken: {len(expected_copied)} files" in lines
    assert "already present (same name, same bytes): 1 files" in lines  # the copy in copia/
    for reason, count in {
        "conflict": 1,
        "symlink": 2,
        "unsafe_name": 2,
        "unknown_name": 1,
        "name_not_utf8": 1,
        "not_a_regular_file": 1,
    }.items():
        assert f"  refused {reason}: {count}" in lines, (reason, out)
    assert f"    {taken_name}" in lines and "    enlace" in lines and f"    pqr_data_LINK_{TS}.json" in lines
    assert "    pqr_data_\\xf1_20251008_101010.json" in lines  # shown escaped, not as raw bytes
    assert f"    pqr_data_ROTO_{TS}.json" in lines  # its day could not be read: named
    assert any(line.startswith("afinia: ") and "2025-10-08 .. 2025-10-08" in line for line in lines)

    # The pipeline loads what was imported: every PQR, the cp1252 one decoded, the broken one a reject.
    result = dg.materialize(
        pqr_assets,
        resources=pipeline_resources(pg_conninfo18, data_dir),
        partition_key="2025-10-08|afinia",
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    with psycopg.connect(**pg_conninfo18) as conn:
        rows = dict(conn.execute("SELECT numero_radicado, warnings::text FROM data_general.ov_afinia").fetchall())
        rejects = conn.execute("SELECT file_name, reason_code FROM data_general.ov_rejects").fetchall()
    assert set(rows) == gen.radicados | {extra["cp"]["numero_radicado"]}
    assert "decoded_cp1252" in rows[extra["cp"]["numero_radicado"]]
    assert rejects == [(f"pqr_data_ROTO_{TS}.json", "undecodable")]


def _record(empresa: str, index: int, page_url: str) -> bytes:
    rec = generator.fake_pqr(empresa, DAY, index, seed=7)
    return json.dumps(dict(rec, extraction_timestamp=TS, page_url=page_url)).encode()


def test_empresa_from_folder_names_or_the_records_portal(tmp_path, data_dir):
    old = tmp_path / "old"
    (old / "downloads" / "aire" / "oficina_virtual" / "processed").mkdir(parents=True)
    (old / "downloads" / "aire" / "oficina_virtual" / "processed" / f"pqr_data_AIRE1_{TS}.json").write_bytes(
        _record("aire", 1, "")
    )
    flat = old / "sueltos"
    flat.mkdir()
    (flat / f"pqr_data_AF1_{TS}.json").write_bytes(_record("afinia", 2, "https://caribemar.facture.co/#/Detail/1"))
    (flat / f"AF1_{TS}.pdf").write_bytes(b"%PDF-1.4 detail")  # linked to AF1's record: afinia
    (flat / f"AE2_{TS}.pdf").write_bytes(b"%PDF-1.4 orphan")  # no record, no folder: undecidable
    (flat / f"pqr_data_NOURL_{TS}.json").write_bytes(_record("afinia", 3, ""))  # undecidable
    (old / "afinia").mkdir()
    (old / "afinia" / f"pqr_data_WRONG_{TS}.json").write_bytes(
        _record("aire", 4, "https://caribesol.facture.co/#/Detail/4")  # Air-e's portal in Afinia's folder
    )

    report = import_old.import_landing(old, data_dir)
    assert sorted(report.taken) == sorted(
        [
            f"downloads/aire/oficina_virtual/processed/pqr_data_AIRE1_{TS}.json",
            f"sueltos/pqr_data_AF1_{TS}.json",
            f"sueltos/AF1_{TS}.pdf",
        ]
    )
    assert {k: sorted(v) for k, v in report.refused.items()} == {
        "empresa_undecidable": [f"sueltos/AE2_{TS}.pdf", f"sueltos/pqr_data_NOURL_{TS}.json"],
        "empresa_mismatch": [f"afinia/pqr_data_WRONG_{TS}.json"],
    }
    assert {p.name for p in landing_dir(data_dir, "aire").iterdir()} == {f"pqr_data_AIRE1_{TS}.json"}
    assert {p.name for p in landing_dir(data_dir, "afinia").iterdir()} == {f"pqr_data_AF1_{TS}.json", f"AF1_{TS}.pdf"}
    assert report.partitions == {("2025-10-08", "aire"): 1, ("2025-10-08", "afinia"): 1}


def test_a_missing_or_overlapping_folder_is_an_operator_error(tmp_path, data_dir, capsys):
    assert cli.main(["import-landing", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    # The data folder itself (its object store holds landing names): never imported into itself.
    generator.write_day(data_dir, "afinia", DAY, n=2, broken=False)
    for folder in (data_dir, data_dir / "downloads", tmp_path):
        assert cli.main(["import-landing", str(folder)]) == 2
        assert "overlap" in capsys.readouterr().err


def test_nothing_is_half_written_or_left_behind(tmp_path, data_dir):
    old, _, _ = old_folder(tmp_path)
    import_landing(old, data_dir, "afinia")
    leftovers = [p.name for p in landing_dir(data_dir, "afinia").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # every temporary was linked into place or removed
