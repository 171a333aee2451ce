"""``python -m ov_assets.cli``: the same as the ``ov-assets`` script."""

import sys

from ov_assets.cli import main

sys.exit(main())
