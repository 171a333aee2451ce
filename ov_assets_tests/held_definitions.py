"""``ov_assets.definitions`` for a Dagster run a test holds at a checkpoint (``OV_TEST_HOLD_AT``,
see ``checkpoint_barrier``): ``dagster asset materialize -m ov_assets_tests.held_definitions``;
every step process loads this module too, so the listener is in the process that reaches the point."""

from ov_assets.definitions import defs
from ov_assets_tests.checkpoint_barrier import hold_from_environment

hold_from_environment()

__all__ = ["defs"]
