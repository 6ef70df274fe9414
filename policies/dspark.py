"""DSpark's hardware-aware prefix scheduler (paper §3.2.2, Algorithm 1) and its negative control.

``dspark`` ranks every candidate ``(r, j)`` of the batch by prefix survival ``a[r, j]``
(ties by position, then request), starts from ``B = R`` tokens and ``τ = R`` expected accepts,
and admits candidates in rank order while the expected throughput ``Θ = τ · SPS(B)`` strictly
rises; it stops at the first non-increase. The early stop is what makes it lossless: whether
``(r, j)`` is admitted depends only on candidates ranked before it, none of which is a later
draft of ``r``, so the admission of draft ``j`` never sees ``c[r, j+1]`` — which depends on the
sampled token ``x[r, j]`` (the Markov confidence head). Extensions, as in SGLang's
``DSparkScheduleConfig``, expressed in drafts (our ℓ excludes the anchor token):

- ``min_verify_len``: drafts of every request verified unconditionally before the greedy path
  starts (they depend on nothing realized, so losslessness is kept);
- ``max_verify_len``: no request verifies more than this many drafts (0 = γ);
- ``survival_eps``: candidates need ``a > survival_eps`` (0 reproduces the paper's
  ``E = {(r, j) | a > 0}``);
- ``objective``: what ``SPS(B)`` is. ``step`` (default): whole decode steps per second at the
  step's KV size, draft + verify + context + fixed overhead (``CostModel.plan_sps``; the
  paper's Eq. 1 divides by T_draft + T_verify); a step that co-batches prefill uses the
  long-run marginal rule instead of its own ratio (``prefix.marginal``). ``verify``: the
  verify forward alone (``CostModel.sps``), as SGLang plans with a verify-only SPS table —
  it leaves the draft and context out, raising the admission bar by (D + C + V)/V, so it
  under-verifies at high load. On an engine that pads to the longest request (its profile has a
  padding, ragged or query-dependent context term) the step objective prices the true step and
  admits level by level (``padded.level_lengths``; lossless, see there).

``global_sync`` is the same path without the early stop: it returns the global argmax of Θ over
the whole path. On a jagged cost curve this looks past a drop, so the admission of draft ``j``
depends on ``c[r, j+1]`` and hence on ``x[r, j]``: it is *not* lossless (paper Appendix A; the
auditor's ``paper-appendix-a`` scenario reproduces the (0.85, 0.15) output). It exists as the
negative control of ``spectune audit``; the production variant that may use a global argmax is
``dspark_lagged`` (policies/lagged.py), whose capacity sees only stale confidences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from policies import padded, prefix
from policies.base import Policy, StepContext, gamma_bound, searched, verify_cap
from policies.registry import register

_NONE = np.zeros(0, dtype=np.int64)


@register
@dataclass(frozen=True)
class DSpark(Policy):
    """Algorithm 1: greedy admission by survival, stop at the first non-increase of Θ."""

    min_verify_len: int = searched(0, (0, 1, 2), 0, gamma_bound)  # drafts every request verifies
    max_verify_len: int = verify_cap()  # cap on drafts verified per request (0 = γ)
    survival_eps: float = searched(0.0, (0.0, 0.05, 0.15, 0.3), 0.0, 0.9)  # survival > eps
    objective: str = "step"  # SPS(B) of the whole decode step ("step") or the verify forward

    early_stop: ClassVar[bool] = True  # Algorithm 1's first non-increase (False: argmax)

    name = "dspark"
    reads = frozenset({"conf", "cost"})
    prefix_scheduler = True
    summary = "Algorithm 1: admit drafts by survival while τ·SPS(B) rises, stop at first drop"

    def __post_init__(self) -> None:
        prefix.check_bounds(self.name, self.min_verify_len, self.max_verify_len, self.survival_eps)
        prefix.check_objective(self.name, self.objective)

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]]:
        step = float(self.objective == "step")
        return self.name, (self.min_verify_len, self.max_verify_len, self.survival_eps, step)

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        if r == 0:
            return _NONE
        a_t = prefix.survival_t(conf)  # [γ, R]
        lo, hi = prefix.window(r, gamma, valid, self.min_verify_len, self.max_verify_len)
        base, b0, tau0 = prefix.forced(a_t, lo, r)
        flat, vals = prefix.pool(a_t, lo, hi, self.survival_eps)
        if vals.size == 0:
            return prefix.lengths(base, _NONE, r)
        plan, lam = prefix.planner(ctx, self.objective), prefix.marginal(ctx, self.objective)
        if isinstance(plan, prefix.Plan) and padded.prices_longest(plan.cost):
            if self.early_stop:  # Algorithm 1 level by level on the true step cost
                return padded.level_lengths(plan, r, a_t, lo, hi, self.survival_eps, lam)
            top = lo if isinstance(lo, int) else int(lo.max())  # the true cost along the path
            n, order, _, _ = padded.ranked_count(
                plan, r, b0, tau0, vals, flat, top, early_stop=False, lam=lam
            )
        elif lam:
            n, order = self._marginal(plan, r, b0, vals, lam)
        elif flat is None:  # whole window: survival is largest in the first row, least in the last
            n, order = self._stop(plan, r, b0, tau0, vals, a_t[0].max(), a_t[-1].min())
        else:
            n, order = self._stop(plan, r, b0, tau0, vals)
        if n == vals.size:  # every candidate admitted: the order does not matter
            if flat is None:
                return np.full(r, gamma, dtype=np.int64)
            return prefix.lengths(base, flat % r, r)
        if n == 0:
            return prefix.lengths(base, _NONE, r)
        head = order[:n]
        return prefix.lengths(base, (head if flat is None else flat[head]) % r, r)

    @staticmethod
    def _stop(
        cost: Any,
        r: int,
        b0: int,
        tau0: float,
        vals: np.ndarray,
        top: Any = None,
        bottom: Any = None,
    ) -> tuple[int, np.ndarray | None]:
        return prefix.greedy_stop(cost, r, b0, tau0, vals, top, bottom)

    @staticmethod
    def _marginal(plan: Any, r: int, b0: int, vals: np.ndarray, lam: float):
        return prefix.marginal_count(plan, r, b0, vals, lam, early_stop=True)


@register
@dataclass(frozen=True)
class GlobalSync(DSpark):
    """Algorithm 1 without the early stop: the global argmax of Θ (NOT lossless)."""

    name = "global_sync"
    early_stop = False
    lossless = False
    summary = "negative control: Algorithm 1 without the early stop (global argmax); lossy"

    @staticmethod
    def _stop(
        cost: Any,
        r: int,
        b0: int,
        tau0: float,
        vals: np.ndarray,
        top: Any = None,
        bottom: Any = None,
    ) -> tuple[int, np.ndarray | None]:
        return prefix.best_count(cost, r, b0, tau0, vals)

    @staticmethod
    def _marginal(plan: Any, r: int, b0: int, vals: np.ndarray, lam: float):
        return prefix.marginal_count(plan, r, b0, vals, lam, early_stop=False)
