"""Write or check what the data dictionary (ov_assets/core/dictionary.py) generates.

    python scripts/data_dictionary.py            # rewrite docs/data-dictionary.md
    python scripts/data_dictionary.py --check    # exit 1 when the docs or the migrations lag
    python scripts/data_dictionary.py --sql      # print the COMMENT block for a new migration

A description changed in the dictionary reaches PostgreSQL only through a new migration
(applied ones are checksummed): paste the --sql block into ov_assets/warehouse/sql/NNN_*.sql.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ov_assets.core import dictionary_render
from ov_assets.warehouse.migrations import available

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument("--sql", action="store_true", help="print the COMMENT block of a migration")
    args = parser.parse_args(argv)
    if args.sql:
        sys.stdout.write(dictionary_render.comments_sql())
        return 0
    docs = ROOT / dictionary_render.DOCS_PATH
    wanted = dictionary_render.markdown()
    if not args.check:
        docs.write_text(wanted, encoding="utf-8")
        print(f"wrote {dictionary_render.DOCS_PATH}")
        return 0
    stale = []
    if not docs.is_file() or docs.read_text(encoding="utf-8") != wanted:
        stale.append(f"{dictionary_render.DOCS_PATH}: run python scripts/data_dictionary.py")
    if dictionary_render.latest_block([m.sql for m in available()]) != dictionary_render.comments_sql():
        stale.append("migrations: the latest dictionary block differs; add a migration with --sql's block")
    for line in stale:
        print(line, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
