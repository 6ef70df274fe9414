"""Batch-size tables: the draft length as a function of the number of running requests.

This is what production engines ship without a confidence head: vLLM's
``num_speculative_tokens_per_batch_size`` (rows ``[lo, hi, K]``) and TensorRT-LLM's
``draft_len_schedule`` (batch size → draft length). Here the table is two tuples: request r
verifies ``ks[i]`` drafts where ``sizes[i]`` is the first bound ``≥ R``; beyond the last bound
it verifies ``default``. It reads nothing realized: lossless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import Policy, StepContext, valid_lengths
from policies.registry import register
from profiles.errors import InputError


@register
@dataclass(frozen=True)
class BatchTable(Policy):
    """Verify ``ks[i]`` drafts when the batch has at most ``sizes[i]`` requests."""

    sizes: tuple[int, ...] = (8, 32, 128)  # upper bounds on batch size (requests), increasing
    ks: tuple[int, ...] = (5, 3, 1)  # drafts verified per request for each bound
    default: int = 0  # drafts verified when the batch is larger than the last bound

    name = "batch_table"
    draft_lengths = ("ks", "default")  # checked against gamma: never a silent clamp
    reads = frozenset()
    summary = "batch-size -> k table (vLLM per-batch-size draft length, TRT-LLM schedule)"

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.ks):
            raise InputError(
                f"batch_table: sizes and ks differ in length ({len(self.sizes)} vs {len(self.ks)})"
            )
        bounds = np.asarray(self.sizes)
        if np.any(np.diff(bounds) <= 0) or np.any(bounds < 0):
            raise InputError("batch_table: sizes must be non-negative and strictly increasing")
        if any(k < 0 for k in self.ks) or self.default < 0:
            raise InputError("batch_table: ks and default must be >= 0")

    def batch_table(self, cap: int, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        sizes, ks = list(self.sizes), [min(int(k), gamma) for k in self.ks]
        if not sizes or sizes[-1] < cap:
            sizes.append(cap)
            ks.append(min(int(self.default), gamma))
        return tuple(int(s) for s in sizes), tuple(ks)

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]]:
        return self.name, (*self.sizes, *self.ks, self.default)

    def k_for(self, requests: int) -> int:
        """Drafts per request for a batch of ``requests`` requests."""
        i = int(np.searchsorted(self.sizes, requests, side="left"))
        return self.ks[i] if i < len(self.ks) else self.default

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        return np.minimum(valid_lengths(valid, r, gamma), self.k_for(r))
