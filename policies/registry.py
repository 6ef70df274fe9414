"""One registry of policies: ``@register`` a class, ``make_policy(name, **params)`` builds one.

Registering a name twice raises. Third-party packages add policies through the
``spectune.policies`` entry-point group (``name = "package.module:PolicyClass"``); they are loaded
the first time the registry is read. CLI specs are ``name`` or ``name:key=value,key=value``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from importlib.metadata import entry_points
from typing import Any

from policies.base import READS, Policy
from profiles.errors import InputError

_REGISTRY: dict[str, type[Policy]] = {}
_PLUGINS_LOADED = False
ENTRY_POINT_GROUP = "spectune.policies"


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: add a policy under ``cls.name``. Duplicate names raise ValueError."""
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise TypeError(f"{cls!r} is not a Policy subclass")
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"policy {cls.__name__} must be a frozen dataclass")
    if not cls.name or not cls.name.isidentifier():
        raise ValueError(f"policy {cls.__name__} needs a name that is an identifier")
    if not cls.reads <= READS:
        raise ValueError(f"policy {cls.name!r} reads unknown inputs {set(cls.reads - READS)}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"policy {cls.name!r} is already registered by {_REGISTRY[cls.name]!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if _REGISTRY.get(cls.name) is not cls:
            register(cls)


def available() -> dict[str, type[Policy]]:
    """Every registered policy class by name (builtins and plugins), sorted by name."""
    import policies.library  # noqa: F401  (registers the builtins)

    _load_plugins()
    return dict(sorted(_REGISTRY.items()))


def policy_class(name: str) -> type[Policy]:
    classes = available()
    if name not in classes:
        known = ", ".join(classes)
        raise InputError(f"unknown policy {name!r} (known: {known})")
    return classes[name]


def parameters(cls: type[Policy]) -> dict[str, tuple[Any, Any]]:
    """Hyperparameters of a policy class: ``{field: (type, default)}``."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls) if f.init}


def make_policy(name: str, **params: Any) -> Policy:
    """Build a registered policy. ``name`` may also be a full spec ``name:key=value,...``."""
    if ":" in name:
        spec_name, spec_params = parse_spec(name)
        return make_policy(spec_name, **{**spec_params, **params})
    cls = policy_class(name)
    fields = parameters(cls)
    for key, value in params.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise InputError(f"policy {name!r} has no parameter {key!r} (parameters: {known})")
        if isinstance(value, str):
            params[key] = _convert(name, key, value, fields[key][0])
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"policy {name!r}: {exc}") from None


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and raw string parameters."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"policy spec {spec!r}: expected key=value, got {item!r}")
        if key.strip() in params:
            raise InputError(f"policy spec {spec!r}: parameter {key.strip()!r} given twice")
        params[key.strip()] = value.strip()
    if not name:
        raise InputError(f"policy spec {spec!r} has no policy name")
    return name, params


def check_gamma(policy: Policy, gamma: int, option: str = "policy") -> None:
    """Refuse a draft-length parameter beyond ``gamma`` (never a silent clamp)."""
    for key in type(policy).draft_lengths:
        value = getattr(policy, key, None)
        for v in value if isinstance(value, tuple) else (value,):  # a table's ks too
            if isinstance(v, int) and not isinstance(v, bool) and v > gamma:
                shown = ";".join(map(str, value)) if isinstance(value, tuple) else value
                raise InputError(f"{option} {policy.spec}: {key}={shown} exceeds gamma {gamma} "
                                 "(drafts proposed per step)")  # fmt: skip


def _convert(policy: str, key: str, raw: str, typ: Any) -> Any:
    """Turn a CLI string into the field's type (int, float, bool, str, tuple of numbers)."""
    try:
        if typ is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if typ in (int, float, str):
            value = typ(raw)
            if typ is float and not math.isfinite(value):
                raise ValueError
            return value
        if typing.get_origin(typ) is tuple:
            inner = typing.get_args(typ)[0]
            return tuple(inner(v) for v in raw.split(";") if v)
        if typing.get_origin(typ) is typing.Union or type(typ).__name__ == "UnionType":
            for option in typing.get_args(typ):
                if option is type(None):
                    if raw.lower() == "none":
                        return None
                    continue
                try:
                    return _convert(policy, key, raw, option)
                except InputError:
                    continue
    except ValueError:
        pass
    tname = getattr(typ, "__name__", str(typ))
    raise InputError(f"policy {policy!r}: parameter {key}={raw!r} is not a valid {tname}")


def spec_of(policy: Policy) -> str:
    """The CLI spec that rebuilds ``policy`` (every parameter spelled out)."""
    parts = []
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if isinstance(value, tuple):
            value = ";".join(str(v) for v in value)
        parts.append(f"{f.name}={value}")
    return policy.name + (":" + ",".join(parts) if parts else "")
