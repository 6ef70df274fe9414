"""Reading and writing profiles as YAML (bounded safe_load, profiles.documents; safe_dump).

Cost profile (``schema: spectune.cost/v1``)::

    source: "measured: ..."          # provenance, shown in every output
    form: sps | additive
    sps: {sample_batch_tokens: [...], sample_steps_per_sec: [...], max_batch_tokens: N}
    additive: {bias_seconds: s, bs_probes: [...], alpha_seconds: [...],
               m_probes: [...], theta_seconds: [...],
               padding_seconds_per_token: s,     # optional: per padded verify token
               ragged_seconds: s}                # optional: per ragged batch
    # a file may hold both blocks (``spectune profile`` writes both): ``form`` picks the one
    # loaded by default, ``read_cost(path, form=...)`` or ``FILE.yaml?form=additive`` the other
    draft: {requests: [...], seconds: [...],          # optional
            drafter: parallel | autoregressive,     #   how a shorter draft scales (default
            positions: n}                           #   parallel), drafts timed per request
    prefill: {tokens: [...], seconds: [...],          # optional
              fused: false}                         #   chunk + verify tokens as one forward
    context: {kv_tokens: [...], seconds: [...],       # optional; extra seconds over the KV
              basis: total | padded,                #   tokens attention reads (default total)
              base_tokens_per_request: n,           #   verify terms' context (default 0)
              queries_per_request: q,               #   optional: seconds measured at q
              seconds_one_query: [...]}             #   and at 1 query token per request
    metadata: {...}                                   # free-form (device, date, commit, ...)

Acceptance profile (``schema: spectune.acceptance/v1``, ``kind: parametric``): ``rates`` (domain →
per-position conditional acceptance), ``request_sigma``, ``token_sigma``, ``conf_sigma``,
``source``. Every problem is reported as one line naming the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from profiles.acceptance import ParametricAcceptance
from profiles.cost import CONTEXT_BASES, DRAFTERS, CostModel
from profiles.curve import Curve
from profiles.documents import parse_yaml
from profiles.errors import InputError

COST_SCHEMA = "spectune.cost/v1"
ACCEPTANCE_SCHEMA = "spectune.acceptance/v1"
_CURVES = {"draft": "requests", "prefill": "tokens", "context": "kv_tokens"}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, or an InputError naming the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file" if not p.exists() else "not a file", where=str(p))
    try:
        data = parse_yaml(p.read_text(encoding="utf-8"), str(p))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", where=str(p)) from None
    if not isinstance(data, dict):
        raise InputError("expected a YAML mapping at the top level", where=str(p))
    return data


def _field(data: dict, key: str, where: str, kind: type | tuple = (list, tuple)) -> Any:
    if key not in data:
        raise InputError(f"missing field {key!r}", where=where)
    value = data[key]
    if not isinstance(value, kind):
        raise InputError(f"field {key!r} has the wrong type ({type(value).__name__})", where=where)
    return value


ABSURD = 1e9  # no count, rate or duration in a profile comes near this: such a value is corrupt
_POSITIVE = (
    "sample_batch_tokens",
    "sample_steps_per_sec",
    "requests",
    "tokens",
    "bs_probes",
    "m_probes",
)  # fields that must be > 0 (the rest may be 0)
_SIGNED = ("seconds", "seconds_one_query")  # fitted curves may dip below 0 at small sizes


def _numbers(data: dict, key: str, where: str) -> list[float]:
    """A list field of finite numbers in [0, ABSURD] (> 0 for axes and speeds)."""
    values = _field(data, key, where)
    if len(values) > 100_000:
        raise InputError(f"field {key!r} has {len(values):,} entries (at most 100,000)",
                         where=where)  # fmt: skip
    low = "> 0" if key in _POSITIVE else f">= {-ABSURD:g}" if key in _SIGNED else ">= 0"
    floor = -ABSURD if key in _SIGNED else 0.0
    for i, v in enumerate(values):
        ok = type(v) in (int, float) and math.isfinite(v) and floor <= v <= ABSURD
        if not ok or (key in _POSITIVE and v == 0):
            raise InputError(f"field {key!r} must hold numbers {low} and <= {ABSURD:g}; [{i}] is "
                             f"{v!r}", where=where)  # fmt: skip
    return [float(v) for v in values]


def _scalar(data: dict, key: str, where: str, low: float = 0.0, high: float = ABSURD) -> float:
    if key not in data:
        raise InputError(f"missing field {key!r}", where=where)
    value = data[key]
    if type(value) not in (int, float) or not (math.isfinite(value) and low <= value <= high):
        raise InputError(f"field {key!r} must be a number in [{low:g}, {high:g}], not {value!r}",
                         where=where)  # fmt: skip
    return float(value)


def cost_from_dict(
    data: dict[str, Any], where: str = "cost profile", form: str | None = None
) -> CostModel:
    """The cost model of a profile document; ``form`` overrides the document's ``form``."""
    form = form or data.get("form", "sps")
    extra = {}
    for name, axis in _CURVES.items():
        if name in data:
            sub = _field(data, name, where, dict)
            extra[name] = Curve(tuple(_numbers(sub, axis, f"{where}: {name}")),
                                tuple(_numbers(sub, "seconds", f"{where}: {name}")))  # fmt: skip
    if "context" in data:
        extra.update(_context_options(data["context"], f"{where}: context"))
    if "draft" in data:
        extra.update(_drafter(data["draft"], f"{where}: draft"))
    if "prefill" in data and "fused" in data["prefill"]:
        fused = data["prefill"]["fused"]
        if not isinstance(fused, bool):
            raise InputError(f"field 'fused' must be true or false, not {fused!r}",
                             where=f"{where}: prefill")  # fmt: skip
        extra["prefill_fused"] = fused
    if data.get("max_context") is not None:  # the engine's longest sequence per request
        extra["max_context"] = _field(data, "max_context", where, int)
    source = str(data.get("source", "unlabelled"))
    try:
        if form == "sps":
            t = _field(data, "sps", where, dict)
            return CostModel.from_sps_table(
                _numbers(t, "sample_batch_tokens", f"{where}: sps"),
                _numbers(t, "sample_steps_per_sec", f"{where}: sps"),
                max_batch_tokens=_count(t, "max_batch_tokens", f"{where}: {form}"),
                source=source,
                **extra,
            )
        if form == "additive":
            t = _field(data, "additive", where, dict)
            w = f"{where}: additive"
            source = str(t.get("source", source))  # a block's own label, when it has one
            return CostModel.additive(
                _scalar(t, "bias_seconds", w),
                _numbers(t, "bs_probes", w),
                _numbers(t, "alpha_seconds", w),
                _numbers(t, "m_probes", w),
                _numbers(t, "theta_seconds", w),
                max_batch_tokens=_count(t, "max_batch_tokens", f"{where}: {form}"),
                source=source,
                padding_s=_padding(t, "padding_seconds_per_token", w),
                ragged_s=_padding(t, "ragged_seconds", w),
                **extra,
            )
    except InputError as exc:
        if exc.where:
            raise
        raise InputError(str(exc), where=where) from None
    raise InputError(f"unknown cost form {form!r} (expected sps or additive)", where=where)


def _count(block: dict, key: str, where: str) -> int:
    value = block.get(key, 0) or 0
    if type(value) not in (int, float) or not (0 <= value <= ABSURD) or value != int(value):
        raise InputError(f"field {key!r} must be a whole number >= 0, not {value!r}", where=where)
    return int(value)


def _padding(block: dict, key: str, where: str) -> float:
    value = block.get(key, 0.0)
    if type(value) not in (int, float) or not 0 <= value <= ABSURD:
        raise InputError(f"field {key!r} must be a number >= 0, not {value!r}", where=where)
    return float(value)


def _drafter(sub: dict, where: str) -> dict[str, Any]:
    """How the draft term scales with the drafts a policy needs (``CostModel.draft_scale``)."""
    kind, n = sub.get("drafter", "parallel"), sub.get("positions", 7)
    if kind not in DRAFTERS:
        raise InputError(f"field 'drafter' must be one of {', '.join(DRAFTERS)}, not {kind!r}",
                         where=where)  # fmt: skip
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise InputError(f"field 'positions' must be a whole number in 1..64, not {n!r}",
                         where=where)  # fmt: skip
    return {"drafter": kind, "draft_positions": n}


def _context_options(sub: dict, where: str) -> dict[str, Any]:
    basis = sub.get("basis", "total")
    if basis not in CONTEXT_BASES:
        raise InputError(f"field 'basis' must be one of {', '.join(CONTEXT_BASES)}, not {basis!r}",
                         where=where)  # fmt: skip
    base = sub.get("base_tokens_per_request", 0)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base >= 0:
        raise InputError(f"field 'base_tokens_per_request' must be a number >= 0, not {base!r}",
                         where=where)  # fmt: skip
    out = {"context_basis": basis, "context_base": float(base)}
    if "seconds_one_query" in sub:
        q = sub.get("queries_per_request")
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not q > 1:
            raise InputError(f"field 'queries_per_request' must be a number > 1, not {q!r}",
                             where=where)  # fmt: skip
        x = _numbers(sub, "kv_tokens", where)
        try:
            out["context_one"] = Curve(tuple(x), tuple(_numbers(sub, "seconds_one_query", where)))
        except InputError as exc:
            raise InputError(str(exc), where=where) from None
        out["context_queries"] = float(q)
    return out


def cost_to_dict(cost: CostModel, metadata: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": COST_SCHEMA, "source": cost.source, "form": cost.kind}
    if cost.kind == "sps":
        out["sps"] = {
            "sample_batch_tokens": list(cost.verify.x),
            "sample_steps_per_sec": [1.0 / t for t in cost.verify.y],
            "max_batch_tokens": cost.max_batch_tokens,
        }
    else:
        out["additive"] = {
            "bias_seconds": cost.bias_s,
            "bs_probes": list(cost.alpha.x),
            "alpha_seconds": list(cost.alpha.y),
            "m_probes": list(cost.verify.x),
            "theta_seconds": list(cost.verify.y),
            "max_batch_tokens": cost.max_batch_tokens,
        }
        if cost.padding_s or cost.ragged_s:
            out["additive"]["padding_seconds_per_token"] = cost.padding_s
            out["additive"]["ragged_seconds"] = cost.ragged_s
    for name, axis in _CURVES.items():
        curve = getattr(cost, name)
        if curve.y != (0.0,):
            out[name] = {axis: list(curve.x), "seconds": list(curve.y)}
    if cost.max_context:
        out["max_context"] = cost.max_context
    if "draft" in out:
        out["draft"].update(drafter=cost.drafter, positions=cost.draft_positions)
    if "prefill" in out and cost.prefill_fused:
        out["prefill"]["fused"] = True
    if "context" in out:
        out["context"]["basis"] = cost.context_basis
        out["context"]["base_tokens_per_request"] = cost.context_base
        if cost.context_queries:
            out["context"]["queries_per_request"] = cost.context_queries
            out["context"]["seconds_one_query"] = list(cost.context_one.y)
    if metadata:
        out["metadata"] = metadata
    return out


def read_cost(path: str | Path, form: str | None = None) -> CostModel:
    """A cost profile; ``form`` ("sps" or "additive") picks a block other than the default."""
    data = load_yaml(path)
    _check_schema(data, COST_SCHEMA, str(path))
    return cost_from_dict(data, where=str(path), form=form)


def write_yaml(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def read_acceptance(path: str | Path) -> ParametricAcceptance:
    data = load_yaml(path)
    where = str(path)
    _check_schema(data, ACCEPTANCE_SCHEMA, where)
    kind = data.get("kind", "parametric")
    if kind != "parametric":
        raise InputError(f"unsupported acceptance kind {kind!r}", where=where)
    rates = _field(data, "rates", where, dict)
    parsed = {str(d): _numbers(rates, d, f"{where}: rates") for d in rates}
    kwargs = {}
    for key in ("request_sigma", "token_sigma", "conf_sigma"):
        if key in data:
            kwargs[key] = _scalar(data, key, where, 0.0, 10.0)
    try:
        return ParametricAcceptance(parsed, source=str(data.get("source", where)), **kwargs)
    except InputError as exc:
        raise InputError(str(exc), where=where) from None


def acceptance_to_dict(model: ParametricAcceptance) -> dict[str, Any]:
    d = model.describe()
    return {"schema": ACCEPTANCE_SCHEMA, **d}


def _check_schema(data: dict, schema: str, where: str) -> None:
    found = data.get("schema", schema)
    if found != schema:
        raise InputError(f"schema is {found!r}, expected {schema!r}", where=where)
