"""The clairvoyant oracle: the no-wasted-verification reference of the simulator, never a real
policy.

It knows A[r], how many of request r's drafts the target would accept if all were verified, and
verifies exactly those: no rejected draft is ever verified, and every step ends with a bonus
token. It bounds accepted tokens per verified token, not throughput: it verifies every accepted
draft even where a long verify costs more than it gains (steep cost curves, engines that pad
attention to the batch's longest request), so tuned policies can beat it there. Real engines
cannot know A before verifying, so the live engine refuses it; its output distribution is not
even defined the same way (``lossless`` is None, "n/a").

Simulator contract (reads "realized"): ``ctx.accepted[r]`` is A[r] in 0..γ for the current step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import Policy, StepContext, valid_lengths
from policies.registry import register


@register
@dataclass(frozen=True)
class Clairvoyant(Policy):
    """Verify exactly the drafts that will be accepted (knows the realized outcome)."""

    name = "clairvoyant"
    lossless = None
    reads = frozenset({"realized"})
    summary = "oracle: verifies exactly the drafts that will be accepted (simulator only)"

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        accepted = np.clip(np.asarray(ctx.accepted, dtype=np.int64), 0, gamma)
        return np.minimum(accepted, valid_lengths(valid, r, gamma))
