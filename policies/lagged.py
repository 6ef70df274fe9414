"""DSpark's production scheduler (paper §5.2): capacity from stale confidences, top-K allocation.

Production engines cannot wait for the current step's confidences to size the next batch
(zero-overhead scheduling and CUDA-graph replay need the token count early), so the decision is
split in two, as SGLang (``HostConfidenceBudgetPlanner`` + ``compute_verify_token_budget`` +
``schedule_verify_lens_topk``) and vLLM (``AdaptiveVerificationManager``) run it:

1. **Capacity K** (how many drafts the whole batch verifies) from each current request's
   confidences of exactly ``lag`` steps ago: survival ``h[r, j] = Π_{i≤j} c_lag[r, i]``;
   a request that was not in the batch ``lag`` steps ago (new, or its row unknown) counts as
   survival 1 at every position. Along ``h`` sorted descending, ``Θ(n) = (τ0 + Σ_{i<n} h_i) ·
   SPS(B0 + n)`` and K is the **global argmax** over n (no early stop: the stale path may jump
   over jagged cost cliffs).
2. **Allocation**: the K best current candidates ``(r, j)`` by current survival, ties by position
   then request (top-K). Ranking respects prefixes, and whether ``(r, j)`` makes the top K
   depends only on candidates ranked before it, so with K fixed before the current tokens exist
   the rule is non-anticipating: lossless.

``min_verify_len`` drafts per request are verified unconditionally (added to both B0 and τ0 of
the capacity path and admitted before the top-K); ``max_verify_len`` caps per-request drafts
(0 = γ); ``survival_eps`` drops candidates with survival ``≤ eps`` in both passes.

Simulator contract (what ``StepContext`` must hold for this policy, which reads "lagged"):
``ctx.lagged`` is ``[L, R, γ]`` with ``L ≥ lag``, row ``ctx.lagged[L - i]`` holding each current
request's confidences from ``i`` steps ago (index 0 = oldest, index L-1 = one step ago), and
``ctx.lagged_known[L - i, r]`` False where request r drafted nothing ``i`` steps ago. Only the
row ``lag`` steps ago is read: ``ctx.lagged[-lag]``. With ``ctx.lagged`` None (or shorter than
``lag``) every request is stale. The valid mask must be known before the step (it bounds the
allocated draft slots, like vLLM's scheduled draft counts) — it must not depend on the current
step's sampled drafts.

``objective`` is DSpark's (policies/dspark.py): ``step`` (default) sizes K on the whole decode
step at the step's KV size (``ctx.kv_tokens``), and with a co-batched prefill chunk by the
long-run marginal rule; ``verify`` on the verify forward alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies import padded, prefix
from policies.base import Policy, StepContext, gamma_bound, searched, verify_cap
from policies.registry import register
from profiles.errors import InputError

_NONE = np.zeros(0, dtype=np.int64)


@register
@dataclass(frozen=True)
class DSparkLagged(Policy):
    """Production DSpark: capacity by global argmax over stale confidences, top-K by current."""

    lag: int = 2  # steps between the confidences that size the batch and the current step
    min_verify_len: int = searched(0, (0, 1, 2), 0, gamma_bound)  # drafts every request verifies
    max_verify_len: int = verify_cap()  # cap on drafts verified per request (0 = γ)
    survival_eps: float = searched(0.0, (0.0, 0.05, 0.15, 0.3), 0.0, 0.9)  # survival > eps
    objective: str = "step"  # SPS(B) of the whole decode step ("step") or the verify forward

    prefix_scheduler = True
    name = "dspark_lagged"
    reads = frozenset({"conf", "lagged", "cost"})
    summary = "production DSpark (§5.2): capacity from lag-step-old confidences, top-K by current"

    def __post_init__(self) -> None:
        if self.lag not in (1, 2):
            raise InputError(f"{self.name}: lag must be 1 or 2, got {self.lag}")
        prefix.check_bounds(self.name, self.min_verify_len, self.max_verify_len, self.survival_eps)
        prefix.check_objective(self.name, self.objective)

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]]:
        step = float(self.objective == "step")  # the server keeps ``lag`` steps of history
        return self.name, (self.min_verify_len, self.max_verify_len, self.survival_eps, step)

    def capacity(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> int:
        """K: drafts the batch verifies beyond ``min_verify_len``, from stale confidences only."""
        return self._capacity(conf, valid, ctx)[0]

    def _capacity(
        self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext
    ) -> tuple[int, int]:
        """K and the most drafts one request may verify (0: no cap beyond the window). On an
        engine that charges the longest request (policies/padded.py) the cap is the longest
        request of the stale path at K, so the current allocation runs the step it priced."""
        r, gamma = conf.shape
        h_t = self._stale_survival(r, gamma, ctx)
        lo, hi = prefix.window(r, gamma, valid, self.min_verify_len, self.max_verify_len)
        plan, lam = prefix.planner(ctx, self.objective), prefix.marginal(ctx, self.objective)
        if isinstance(plan, prefix.Plan) and padded.prices_longest(plan.cost):
            return padded.capped_count(plan, r, h_t, lo, hi, self.survival_eps, lam)
        _, b0, tau0 = prefix.forced(h_t, lo, r)
        _, vals = prefix.pool(h_t, lo, hi, self.survival_eps)
        if not vals.size:
            return 0, 0
        if lam:
            return prefix.marginal_count(plan, r, b0, vals, lam, early_stop=False)[0], 0
        return prefix.best_count(plan, r, b0, tau0, vals)[0], 0

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        if r == 0:
            return np.zeros(0, dtype=np.int64)
        k, cap = self._capacity(conf, valid, ctx)
        a_t = prefix.survival_t(conf)
        top = min(c for c in (cap, self.max_verify_len) if c) if cap or self.max_verify_len else 0
        lo, hi = prefix.window(r, gamma, valid, self.min_verify_len, top)
        base, _, _ = prefix.forced(a_t, lo, r)
        flat, vals = prefix.pool(a_t, lo, hi, self.survival_eps)
        if k == 0 or vals.size == 0:
            return prefix.lengths(base, _NONE, r)
        if k >= vals.size:  # every current candidate fits: no ranking needed
            return prefix.lengths(base, (np.arange(vals.size) if flat is None else flat) % r, r)
        head = prefix.descending(vals)[:k]
        return prefix.lengths(base, (head if flat is None else flat[head]) % r, r)

    def _stale_survival(self, r: int, gamma: int, ctx: StepContext) -> np.ndarray:
        """``[γ, R]`` survival of the confidences ``lag`` steps ago; 1 for stale requests (on an
        engine that pads to the longest request, the known rows' mean: ``padded.fill_unknown``)."""
        lagged = ctx.lagged
        if lagged is None or lagged.shape[0] < self.lag:
            return np.ones((gamma, r))
        h_t = prefix.survival_t(lagged[-self.lag])
        if ctx.lagged_known is not None:
            known = np.asarray(ctx.lagged_known[-self.lag], dtype=bool)
            if self.objective == "step" and padded.prices_longest(ctx.cost):
                return padded.fill_unknown(h_t, known)
            h_t[:, ~known] = 1.0
        return h_t
