"""Baselines: plain decoding (``none``) and fixed-length verification (``fixed``; k=1 is MTP-1).

Neither needs γ drafts: ``none`` drafts nothing and pays no draft pass; ``fixed:k`` needs k, and
pays what a k-token draft costs where the drafter allows it (``CostModel.draft_scale``): a
parallel drafter (DSpark, DFlash: one backbone pass yields every position) pays its full pass
for any k >= 1; an autoregressive one (Eagle-style, a small AR head) k / γ of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import Policy, StepContext, drafts, searched, valid_lengths
from policies.registry import register
from profiles.errors import InputError


@register
@dataclass(frozen=True)
class NoSpeculation(Policy):
    """Verify no drafts: one token per request per step, as without speculative decoding."""

    name = "none"
    reads = frozenset()
    summary = "verify nothing: plain autoregressive decoding, 1 token per step"

    def draft_tokens(self, gamma: int) -> int:
        return 0

    def static_drafts(self, gamma: int) -> int:
        return 0

    def batch_table(self, cap: int, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (cap,), (0,)

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]]:
        return self.name, ()

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        return np.zeros(conf.shape[0], dtype=np.int64)


@register
@dataclass(frozen=True)
class Fixed(Policy):
    """Verify the first ``k`` drafts of every request (clamped to γ and to the valid drafts)."""

    k: int = searched(1, drafts)  # drafts verified per request per step; k=1 is MTP-1

    name = "fixed"
    reads = frozenset()
    summary = "verify k drafts of every request (k=1 is MTP-1)"

    def __post_init__(self) -> None:
        if self.k < 0:
            raise InputError(f"fixed: k must be >= 0, got {self.k}")

    def draft_tokens(self, gamma: int) -> int:
        return min(self.k, gamma)

    def verify_bounds(self, gamma: int) -> dict:
        k = min(int(self.k), gamma)
        return {"lag_steps": 0, "min_verify_len": k, "max_verify_len": k, "survival_eps": 0.0}

    def static_drafts(self, gamma: int) -> int:
        return min(int(self.k), gamma)

    def batch_table(self, cap: int, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (cap,), (min(int(self.k), gamma),)

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]]:
        return self.name, (self.k,)

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        k = min(self.k, gamma)
        if valid is None:
            return np.full(r, k, dtype=np.int64)
        return np.minimum(valid_lengths(valid, r, gamma), k)
