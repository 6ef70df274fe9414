"""Imports every builtin policy module so that each registers itself (one line per module)."""

import policies.baseline  # noqa: F401
import policies.capacity  # noqa: F401
import policies.dspark  # noqa: F401
import policies.goodput  # noqa: F401
import policies.lagged  # noqa: F401
import policies.oracle  # noqa: F401
import policies.tables  # noqa: F401
import policies.threshold  # noqa: F401
