"""SGLang's own released code (sglang==0.5.23), imported without running its package ``__init__``.

``import sglang`` pulls in the whole GPU runtime (orjson, triton, CUDA kernels). The DSpark
pieces spectune is judged by are pure Python: the SPS tables and STS calibration
(``dspark_sps``, ``dspark_sts``: msgspec, torch), the server-argument field declarations
(``arg_groups.fields``) and, inside modules that also hold GPU code, the planner's
``DSparkScheduleConfig`` / ``compute_verify_token_budget`` and the torch reference allocator
``schedule_verify_lens_topk``. :func:`module` imports a module with its parent packages
registered as bare namespaces (as SGLang's own ``dspark_sps_profiler`` falls back to loading
``dspark_sps.py`` by path); :func:`functions` executes only the named top-level definitions of a
module's *source* (verbatim, from the installed file) when the module itself cannot load.
Nothing here is copied from SGLang: every definition comes from the installed package.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

VERSION = "0.5.23"


@functools.cache
def root() -> Path | None:
    """The installed ``sglang`` package directory (None when not installed)."""
    if "sglang" in sys.modules and getattr(sys.modules["sglang"], "__path__", None):
        return Path(next(iter(sys.modules["sglang"].__path__)))
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("sglang")
    except PackageNotFoundError:
        return None


def module(name: str) -> types.ModuleType:
    """Import ``sglang.<...>`` with every parent package a bare namespace (no ``__init__``)."""
    base = root()
    if base is None:
        raise ImportError("sglang is not installed")
    parts = name.split(".")
    for i in range(1, len(parts)):
        pkg = ".".join(parts[:i])
        if pkg not in sys.modules:
            m = types.ModuleType(pkg)
            m.__path__ = [str(base.joinpath(*parts[1:i]))]
            sys.modules[pkg] = m
    return importlib.import_module(name)


def functions(name: str, names: tuple[str, ...], namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute the top-level definitions ``names`` of module ``name``'s installed source in
    ``namespace`` (which supplies what they reference); returns the namespace."""
    base = root()
    if base is None:
        raise ImportError("sglang is not installed")
    path = base.joinpath(*name.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    keep = [n for n in tree.body if getattr(n, "name", None) in names]
    missing = set(names) - {n.name for n in keep}
    if missing:
        raise ImportError(f"{path} defines no {', '.join(sorted(missing))}")
    namespace.setdefault("__name__", name)
    exec(compile(ast.Module(keep, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace
