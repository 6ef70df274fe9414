"""SmartSpec-style goodput maximisation from a running acceptance estimate (Liu et al., 2024).

SmartSpec picks proposal lengths that maximise *goodput* — expected generated tokens per second
of the batch — using each request's moving-average token acceptance rate instead of per-token
confidences. Here the estimate of request r is a smoothed running mean

    α[r] = (accepted_total[r] + w·α0) / (verified_total[r] + w)

(``w = prior_weight`` pseudo-drafts at ``α0 = prior_rate``; with no history every request gets
α0), drafts j = 1..γ are expected to survive with ``α[r]^j``, and the lengths are the point of
Algorithm 1's admission path (ranked by ``α^j``, ties by position then request) with the highest
``Θ = τ · SPS(B)``: a global argmax, which is safe because nothing it reads comes from the
current step's drafts. Lossless.

Simulator contract (reads "history"): ``ctx.accepted_total[r]`` and ``ctx.verified_total[r]``
are request r's drafts accepted and drafts verified over all its earlier steps (0 for a new
request); None means no history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies import prefix
from policies.base import Policy, StepContext, searched, verify_cap
from policies.registry import register
from profiles.errors import InputError


@register
@dataclass(frozen=True)
class Goodput(Policy):
    """Per-request lengths maximising expected goodput from running acceptance rates."""

    prior_rate: float = searched(0.7, (0.5, 0.7, 0.9), 0.05, 0.99)  # acceptance before history
    prior_weight: float = 4.0  # weight of the prior, in pseudo-verified drafts
    max_verify_len: int = verify_cap()  # cap on drafts verified per request (0 = γ)

    name = "goodput"
    reads = frozenset({"history", "cost"})
    summary = "SmartSpec-style: lengths maximising expected goodput from running acceptance"

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior_rate <= 1.0:
            raise InputError(f"goodput: prior_rate must lie in [0, 1], got {self.prior_rate}")
        if self.prior_weight <= 0:
            raise InputError(f"goodput: prior_weight must be > 0, got {self.prior_weight}")
        if self.max_verify_len < 0:
            raise InputError("goodput: max_verify_len must be >= 0")

    def rates(self, r: int, ctx: StepContext) -> np.ndarray:
        """Estimated per-draft acceptance rate ``α [R]``."""
        w, prior = self.prior_weight, self.prior_rate
        if ctx.accepted_total is None or ctx.verified_total is None:
            return np.full(r, prior)
        acc = np.asarray(ctx.accepted_total, dtype=np.float64)
        ver = np.asarray(ctx.verified_total, dtype=np.float64)
        return np.clip((acc + w * prior) / (ver + w), 0.0, 1.0)

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        if r == 0:
            return np.zeros(0, dtype=np.int64)
        alpha = self.rates(r, ctx)
        h_t = alpha[None, :] ** np.arange(1, gamma + 1)[:, None]  # [γ, R], α^j
        lo, hi = prefix.window(r, gamma, valid, 0, self.max_verify_len)
        flat, vals = prefix.pool(h_t, lo, hi)
        if vals.size == 0:
            return np.zeros(r, dtype=np.int64)
        n, order = prefix.best_count(ctx.cost, r, r, float(r), vals)
        pos = np.arange(vals.size) if order is None else order[:n]
        return prefix.lengths(0, (pos if flat is None else flat[pos]) % r, r)
