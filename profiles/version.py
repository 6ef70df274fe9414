"""spectune's version (as in ``pyproject.toml``), stamped into every file it writes.

It lives in the lowest package so that profiles/, simulator/ and engine/ can stamp it without
importing the experiment library (``runner`` re-exports it as ``runner.__version__``).
"""

__version__ = "0.1.0"
