"""Where the compiled step path (``simulator/compiled.py``) applies: one rule, one reason.

The server asks :func:`declined` once, when it is built; None means the compiled path runs the
steps between events, any other answer is why the reference step runs instead (kept on the
server as ``Server.fast_declined``, so a test or a caller can say which path ran and why).
This module imports nothing compiled: a checkout without numba still asks it.
"""

from __future__ import annotations

from typing import Any

_DENSE = 1 << 16  # profiles.cost._DENSE_LIMIT: integer B / bs covered by the dense tables
_KERNELS = ("none", "fixed", "batch_table", "dspark", "global_sync", "dspark_lagged")
_TABLES = ("_verify_dense", "_alpha_dense", "_draft_dense", "_context_m", "_context_one_m")


def _owner(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name`` (None: found by ``__getattr__``)."""
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def dense(cost: Any) -> bool:
    """True when ``cost`` is a ``CostModel`` whose dense tables the compiled code reads. A
    wrapper that forwards attributes (``profiles.sglang.PlannedCost``: an engine's table for
    planning) is not one: the compiled planner would read the wrapped model's tables instead."""
    from profiles.cost import CostModel

    return isinstance(cost, CostModel) and all(hasattr(cost, n) for n in _TABLES)


def declined(policy: Any, backend: Any, cost: Any, config: Any) -> str | None:
    """Why the compiled path does not run this server's steps (None: it does)."""
    gamma = config.gamma
    spec = policy.kernel(gamma)
    if spec is None:
        return f"policy {policy.name!r} has no compiled decision (Policy.kernel is None)"
    if spec[0] not in _KERNELS:
        return f"policy {policy.name!r} names an unknown kernel {spec[0]!r}"
    if _owner(type(policy), "decide") is not _owner(type(policy), "kernel"):
        return f"{type(policy).__name__} defines decide, not the kernel it answers with"
    if not hasattr(backend, "prefetch"):
        return "the backend is not a profiled one (no drawn-ahead rows)"
    if not getattr(backend, "compilable", True):
        return "position-replay acceptance (records) is read step by step, not drawn ahead"
    if not dense(cost) or not dense(getattr(backend, "cost", None)):
        return "the planner's or the backend's cost is not a CostModel"
    fused = bool(getattr(cost, "prefill_fused", False) or backend.cost.prefill_fused)
    tokens = config.max_concurrency * (gamma + 1) + (config.max_prefill_tokens if fused else 0)
    if tokens >= _DENSE:
        return f"up to {tokens} verify tokens a step: beyond the dense tables ({_DENSE})"
    return None
