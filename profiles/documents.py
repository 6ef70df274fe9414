"""The one way user-supplied YAML and JSON text becomes Python data (bounded, one-line errors).

``parse_yaml`` is ``yaml.safe_load`` with limits: a SafeLoader subclass measures the document
*as expanded* (every alias counted at the size of what it points to) before constructing it, so
a 437-byte "billion laughs" file is refused instead of hanging whoever walks the result; a
recursive alias and nesting deeper than :data:`MAX_DEPTH` are refused too. ``parse_json``
refuses ``NaN``/``Infinity``, numbers of more than :data:`MAX_DIGITS` digits or beyond float
range, and nesting deeper than :data:`MAX_DEPTH`. Both raise ``InputError`` naming ``where``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from profiles.errors import InputError

MAX_NODES = 1_000_000  # expanded scalars + collections; real profiles hold a few thousand
MAX_DEPTH = 100  # nesting levels; our documents use fewer than 10
MAX_DIGITS = 400  # digits in one JSON number (float range ends near 1e308)


class _Expanded(Exception):
    pass


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded (memoised, so the check itself is cheap)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if depth > MAX_DEPTH:
            raise _Expanded(f"nesting deeper than {MAX_DEPTH} levels")
        if key in open_:
            raise _Expanded("a recursive alias (the document contains itself)")
        open_.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(c, depth + 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        open_.discard(key)
        if total > MAX_NODES:
            raise _Expanded(f"more than {MAX_NODES:,} nodes once aliases are expanded")
        sizes[key] = total
        return total

    return size(root, 0)


class BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses documents too big or too deep once aliases are expanded."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` with the limits above; InputError naming ``where`` (and line)."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _Expanded as exc:
        raise InputError(f"YAML refused: {exc}", where=where) from None
    except RecursionError:
        raise InputError(
            f"YAML refused: nesting deeper than {MAX_DEPTH} levels", where=where
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or exc
        raise InputError(f"invalid YAML ({problem})", where=at) from None


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise ValueError(f"number with {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise ValueError(f"number with {len(text)} digits")
    return int(text)


def parse_json(text: str, where: str) -> Any:
    """``json.loads(text)`` refusing NaN/Infinity, huge numbers and deep nesting."""
    depth = max(text.count("[", 0, 100_000), text.count("{", 0, 100_000))
    if depth > MAX_DEPTH and _too_deep(text):
        raise InputError(f"JSON refused: nesting deeper than {MAX_DEPTH} levels", where=where)
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})",
                         where=where) from None  # fmt: skip
    except (ValueError, RecursionError) as exc:
        raise InputError(f"invalid JSON ({exc})", where=where) from None


def _too_deep(text: str) -> bool:
    """True if brackets (outside strings) nest deeper than MAX_DEPTH."""
    level, in_str, escape = 0, False, False
    for ch in text:
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            level += 1
            if level > MAX_DEPTH:
                return True
        elif ch in "]}":
            level -= 1
    return False


def json_line(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of what a command prints or writes: non-finite floats become None
    (undefined metrics), and ``allow_nan=False`` guarantees no NaN/Infinity reaches the text."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def finite(obj: Any) -> Any:
    """``obj`` with every NaN/±inf float replaced by None (dicts, lists, tuples walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):  # a numpy scalar
        return finite(obj.item())
    return obj
