"""Fixed-budget allocations across the batch: ``tetris`` and ``dcut``.

Both rank the batch's candidates ``(r, j)`` by prefix survival (ties by position, then request,
so prefixes are respected) and admit a number of them fixed before the drafts exist; whether a
draft makes the cut depends only on candidates ranked before it. Lossless.

- ``tetris`` (Wu et al., 2025): a per-step verify capacity of ``capacity`` drafts for the whole
  batch, filled greedily by survival.
- ``dcut``: every request verifies its first draft; of the remaining ``R·(γ-1)`` draft slots the
  best ``⌊fraction · R·(γ-1)⌋`` by survival are verified. The count uses R and γ only (not the
  valid mask), so it cannot depend on anything sampled.
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
class Tetris(Policy):
    """Verify the ``capacity`` highest-survival drafts of the batch."""

    capacity: int = searched(64, (16, 64, 256, 1024), 1, 65536, log=True)  # drafts per step
    max_verify_len: int = verify_cap()  # cap on drafts verified per request (0 = γ)

    name = "tetris"
    reads = frozenset({"conf"})
    summary = "fixed per-step verify capacity C, filled greedily by survival across the batch"

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.max_verify_len < 0:
            raise InputError("tetris: capacity and max_verify_len must be >= 0")

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        lo, hi = prefix.window(r, gamma, valid, 0, self.max_verify_len)
        ranked = prefix.rank(prefix.survival_t(conf), lo, hi)
        return prefix.lengths(0, ranked.rows(self.capacity), r)


@register
@dataclass(frozen=True)
class DCut(Policy):
    """First draft always; then the top ``fraction`` of the batch's remaining drafts by survival."""

    fraction: float = searched(0.5, (0.0, 0.25, 0.5, 0.75, 1.0), 0.0, 1.0)  # of R·(γ-1) slots

    name = "dcut"
    reads = frozenset({"conf"})
    summary = "first draft always, then the top fraction of survival scores across the batch"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise InputError(f"dcut: fraction must lie in [0, 1], got {self.fraction}")

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        if r == 0 or gamma == 0:
            return np.zeros(r, dtype=np.int64)
        a_t = prefix.survival_t(conf)
        lo, hi = prefix.window(r, gamma, valid, 1)
        keep = int(np.floor(self.fraction * r * (gamma - 1) + 1e-9))
        return prefix.lengths(lo, prefix.rank(a_t, lo, hi).rows(keep), r)
