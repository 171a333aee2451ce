"""Write or check what the data dictionary (ov_assets/core/dictionary.py) generates.

    python scripts/data_dictionary.py            # rewrite docs/data-dictionary.md
    python scripts/data_dictionary.py --check    # exit 1 when the docs lag
    python scripts/data_dictionary.py --sql      # print the COMMENT block (to read, or for psql)

A description changed in the dictionary needs no migration: `ov-assets migrate` (and the first
load of a process) applies the block again when its checksum differs from the one recorded
(the repeatable step R_data_dictionary of ov_assets/warehouse/migrations.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ov_assets.core import dictionary_render

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument("--sql", action="store_true", help="print the COMMENT block the migrations apply")
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
    if not docs.is_file() or docs.read_text(encoding="utf-8") != wanted:
        print(f"{dictionary_render.DOCS_PATH}: run python scripts/data_dictionary.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
