"""numba's on-disk cache of the compiled step path, stamped with all of its source files.

numba caches a ``cache=True`` function under a stamp of the one file that defines it
(modification time and size) and reuses the machine code while that stamp holds. The step
loop ``simulator/compiled.run`` compiles the decisions of ``policies/kernels.py`` into itself,
so with numba's own stamp an edit to a kernel left ``run``'s cached code stale (the old
decision kept running). Importing this module (``policies/kernels.py``,
``simulator/compiled.py`` and ``simulator/streams.py`` do, before defining anything) puts
cache locators first in numba's list that stamp every function of those files with the stamps
of all of them: an edit to any of them recompiles everything that may have inlined it. Other
files keep numba's locators.

numba's locator list is internal (``numba.core.caching.CacheImpl._locator_classes``; numba
0.61 to 0.65 name the classes with or without a leading underscore); where it is not
there, nothing is registered and the cache is numba's own (then delete ``__pycache__/*.nbi``
after editing a kernel). ``NUMBA_CACHE_LOCATOR_CLASSES`` (numba ≥ 0.65), if set, wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from numba.core import caching

ROOT = Path(__file__).resolve().parents[1]
FILES = tuple(
    str(ROOT / p) for p in ("policies/kernels.py", "simulator/compiled.py", "simulator/streams.py")
)


class _Stamped:
    """Mixin: numba's locator, for the files in :data:`FILES` only, with their joint stamp."""

    def get_source_stamp(self) -> tuple:
        return tuple((st.st_mtime, st.st_size) for st in map(os.stat, FILES))

    @classmethod
    def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206 (numba's signature)
        if os.path.abspath(py_file) not in FILES:
            return None
        return super().from_function(py_func, py_file)


def _register() -> bool:
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    names = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    bases = [getattr(caching, n, None) or getattr(caching, "_" + n, None) for n in names]
    if impl is None or not isinstance(getattr(impl, "_locator_classes", None), list):
        return False
    if None in bases:
        return False
    if any(issubclass(c, _Stamped) for c in impl._locator_classes):
        return True
    ours = [type("Stamped" + b.__name__.lstrip("_"), (_Stamped, b), {}) for b in bases]
    impl._locator_classes[:0] = ours
    return True


REGISTERED = _register()  # False: numba's own per-file stamps (see the module docstring)
