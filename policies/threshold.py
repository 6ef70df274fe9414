"""Static confidence thresholds (SpecDec++/SVIP-style, the paper's "prior methods").

``threshold`` verifies, per request, the longest prefix whose every score is at least ``t``: the
score is the per-position confidence ``c[r, j]`` (``on=conf``) or the prefix survival
``a[r, j]`` (``on=survival``). Whether draft j is verified depends only on scores up to j, and
the score of draft j depends on tokens before j only, so it is lossless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies import prefix
from policies.base import Policy, StepContext, searched
from policies.registry import register
from profiles.errors import InputError


@register
@dataclass(frozen=True)
class Threshold(Policy):
    """Verify the prefix up to the first position whose score is below ``t``."""

    t: float = searched(0.5, (0.2, 0.4, 0.6, 0.8), 0.0, 1.0)  # minimum score a verified draft needs
    on: str = searched("conf", ("conf", "survival"))  # score: "conf" (per position) or "survival"

    name = "threshold"
    reads = frozenset({"conf"})
    summary = "verify the prefix before the first confidence (or survival) below t"

    def __post_init__(self) -> None:
        if not 0.0 <= self.t <= 1.0:
            raise InputError(f"threshold: t must lie in [0, 1], got {self.t}")
        if self.on not in ("conf", "survival"):
            raise InputError(f"threshold: on must be 'conf' or 'survival', got {self.on!r}")

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        if gamma == 0:
            return np.zeros(r, dtype=np.int64)
        score = conf if self.on == "conf" else prefix.survival_t(conf).T
        bad = score < self.t
        if valid is not None:
            bad |= ~valid
        first = bad.argmax(axis=1)  # first failing position, 0 when none fails
        return np.where(bad[np.arange(r), first], first, gamma).astype(np.int64)
