"""Imports every builtin policy module so that each registers itself (one line per module)."""

from policies import baseline  # noqa: F401
