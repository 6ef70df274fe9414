"""List the registered verification policies: name, lossless flag, parameters, description.

Builtins and third-party policies (entry-point group ``spectune.policies``) alike. Build one by
spec, e.g. ``dspark:max_verify_len=5`` or ``batch_table:sizes=8;32,ks=5;2``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "policies"
HELP = "list verification policies with their parameters, defaults and lossless flag"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe() -> list[dict[str, Any]]:
    """Every registered policy as a plain dict (what ``--json`` prints)."""
    from policies import available, parameters

    out = []
    for name, cls in available().items():
        params = [
            {"name": key, "type": _type_name(typ), "default": _plain(default)}
            for key, (typ, default) in parameters(cls).items()
        ]
        out.append(
            {
                "name": name,
                "lossless": cls.lossless,
                "reads": sorted(cls.reads),
                "summary": cls.summary,
                "parameters": params,
                "module": cls.__module__,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    rows = describe()
    if args.json:
        json.dump({"policies": rows}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    flag = {True: "lossless", False: "LOSSY", None: "n/a"}
    for r in rows:
        sys.stdout.write(f"{r['name']:<{width}}{flag[r['lossless']]:<10}{r['summary']}\n")
        params = ", ".join(
            f"{p['name']}: {p['type']} = {_show(p['default'])}" for p in r["parameters"]
        )
        sys.stdout.write(f"{'':<{width + 10}}{params or '(no parameters)'}\n")
    return 0


def _type_name(typ: Any) -> str:
    return typ.__name__ if isinstance(typ, type) else str(typ).replace("typing.", "")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _show(value: Any) -> str:
    return ";".join(map(str, value)) if isinstance(value, list) else str(value)
