"""README "Queries for analysts" (issue 19): every SQL block of that section is one of the data
dictionary's examples (so README and docs/data-dictionary.md say the same), and each runs as
``ov_analyst`` against a loaded database and returns exactly the rows recomputed from the
landing files' frames: PQRs per status and week, open PQRs older than 15 days, a customer's PQRs
by NIC, the near-duplicates of a month."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from ov_assets.core.contract import BOGOTA, FINAL_STATUSES, today_bogota
from ov_assets.core.dictionary_render import EXAMPLES
from ov_assets.devkit import generator
from ov_assets.landing.index import LandingIndex, partition_frame
from ov_assets.warehouse import loading
from ov_assets.warehouse import near_duplicates as wnd
from ov_assets_tests import loadkit
from ov_assets_tests.test_near_duplicates import DAYS, MAX_DAYS, NIC_A, PAIRS, THRESHOLD, _plant

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[str]:
    """The ```sql blocks of README's "Queries for analysts" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Queries for analysts", 1)[1].split("\n## ", 1)[0]
    return [q.strip() for q in re.findall(r"```sql\n(.*?)```", section, re.S)]


def test_readme_queries_are_the_dictionarys_examples() -> None:
    queries = readme_queries()
    assert len(queries) == 4
    analyst = {ex.sql.strip(): ex for ex in EXAMPLES}
    for q in queries:
        assert q in analyst, f"README query not among core/dictionary_render.py EXAMPLES:\n{q}"
        assert analyst[q].role == "ov_analyst"


def _load(conninfo: dict[str, Any], data_dir: Path) -> pl.DataFrame:
    """The near-duplicate corpus (September 2025) and two recent days of both empresas (3 and 20
    days ago), loaded with their near-duplicates found; the winners, as the table holds them."""
    today = today_bogota()
    _plant(data_dir)
    recent = [today - dt.timedelta(days=20), today - dt.timedelta(days=3)]
    for day in recent:
        for empresa in ("afinia", "aire"):
            generator.write_day(data_dir, empresa, day, n=8, broken=False)
    days = sorted({*DAYS, *recent})
    index = LandingIndex(data_dir)
    frames = []
    for empresa in ("afinia", "aire"):
        index.refresh(empresa, today)
        frames += [partition_frame(index, empresa, day, today) for day in days]
    frame = pl.concat(frames)
    loadkit.migrate(conninfo)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        loading.load_partitions(conn, [(e, d) for d in days for e in ("afinia", "aire")], frame, "analyst")
        for day in days:
            for empresa in ("afinia", "aire"):
                wnd.refresh_partition(conn, empresa, day, THRESHOLD, MAX_DAYS)
    return frame.filter(pl.col("is_winner"))


def test_readme_queries_return_what_the_landing_files_say(pg_conninfo18, data_dir) -> None:
    winners = _load(pg_conninfo18, data_dir)
    rows = winners.select("empresa", "numero_radicado", "fecha_dt", "estado_solicitud", "nic").rows()
    now = dt.datetime.now(BOGOTA).replace(tzinfo=None)
    monday = now.date() - dt.timedelta(days=now.weekday())
    since = dt.datetime.combine(monday - dt.timedelta(weeks=8), dt.time())
    per_week = Counter((e, (f.date() - dt.timedelta(days=f.weekday())), s) for e, _, f, s, _ in rows if f >= since)
    open_old = {(e, r) for e, r, f, s, _ in rows if s not in FINAL_STATUSES and f < now - dt.timedelta(days=15)}
    by_nic = {(e, r) for e, r, _, _, n in rows if n == NIC_A}
    assert per_week and open_old and len(by_nic) == 4  # the data holds what each query looks for

    weekly, opened, customer, near = readme_queries()
    with (
        loadkit.login_roles(pg_conninfo18, "ov_analyst") as users,
        psycopg.connect(**users["ov_analyst"], autocommit=True) as conn,
    ):
        got_week = {(e, w, s): n for e, w, s, n in conn.execute(weekly).fetchall()}
        got_open = conn.execute(opened).fetchall()
        got_nic = conn.execute(customer).fetchall()
        got_near = conn.execute(near).fetchall()
        (quality_rows,) = conn.execute("SELECT count(*) FROM data_general.ov_quality_daily").fetchone()

    assert got_week == dict(per_week)
    assert {(e, r) for e, r, *_ in got_open} == open_old and len(got_open) == len(open_old)
    assert [f for _, _, f, *_ in got_open] == sorted(f for _, _, f, *_ in got_open)
    assert {(e, r) for e, r, *_ in got_nic} == by_nic and len(got_nic) == 4
    assert {(e, a, b, days, rule) for e, a, _, b, _, days, _, rule, *_ in got_near} == {
        ("afinia", a, b, days, rule) for a, b, days, rule in PAIRS
    }
    assert quality_rows > 0  # ov_analyst reads the quality table too
