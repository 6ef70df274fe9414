"""What a policy sees of earlier steps: one :class:`History` for the simulator and the engine.

Per batch slot, the confidences of the last ``lag`` decode steps (a ring indexed by step, each
row tagged with the step it is from, so a row of an earlier occupant of the slot or of a step
the request missed is *unknown*) and running totals of the drafts accepted and verified. It
hands a policy exactly the ``StepContext`` fields its ``reads`` declare: ``lagged`` /
``lagged_known`` (``[lag, R, γ]`` and ``[lag, R]``, index 0 = ``lag`` steps ago, index lag-1 =
one step ago) and ``accepted_total`` / ``verified_total`` (``[R]``). The simulator's server
(``simulator/server.py``) and the engine's decode loops (``engine/decode.py``,
``engine/record.py``) both keep one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAG = 2  # steps of history for a policy that reads lagged confidences and names no ``lag``
_NEVER = -(1 << 62)  # the step tag of an empty row (no step, even a negative one, matches it)


def lag_of(policy: Any) -> int:
    """Steps of confidence history ``policy`` reads (0 when it reads no lagged confidences)."""
    if "lagged" not in policy.reads:
        return 0
    return max(1, int(getattr(policy, "lag", LAG)))


class History:
    """Confidence ring and totals per batch slot (see the module docstring)."""

    def __init__(self, slots: int, gamma: int, lag: int) -> None:
        self.lag = lag
        self.conf = np.zeros((lag, slots, gamma))  # [lag, slot, γ], row step % lag
        self.step = np.full((lag, slots), _NEVER, dtype=np.int64)  # the step each row is from
        self.accepted = np.zeros(slots, dtype=np.int64)  # drafts accepted so far per slot
        self.verified = np.zeros(slots, dtype=np.int64)  # drafts verified so far per slot

    def lagged(self, slots: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Confidences of steps ``step - lag .. step - 1`` of the requests in ``slots``, oldest
        first: ``([lag, R, γ], known [lag, R])``."""
        past = np.arange(step - self.lag, step)
        ring = past % self.lag
        lagged = self.conf[ring[:, None], slots[None, :]]  # [lag, R, γ]
        return lagged, self.step[ring[:, None], slots[None, :]] == past[:, None]

    def record(self, slots: np.ndarray, step: int, conf: np.ndarray) -> None:
        """The confidences ``conf [R, γ]`` the requests in ``slots`` drafted at ``step``."""
        if self.lag:
            self.conf[step % self.lag, slots] = conf
            self.step[step % self.lag, slots] = step

    def count(self, slots: np.ndarray, accepted: np.ndarray, verified: np.ndarray) -> None:
        """Add one step's accepted and verified drafts ``[R]``."""
        self.accepted[slots] += accepted
        self.verified[slots] += verified

    def clear(self, slot: int) -> None:
        """A new request takes ``slot``: nothing of its predecessor is visible."""
        self.step[:, slot] = _NEVER
        self.accepted[slot] = self.verified[slot] = 0

    def inputs(self, policy: Any, slots: np.ndarray, step: int) -> dict[str, np.ndarray]:
        """The keyword inputs of ``policy(conf, ...)`` it reads from here, for ``step``."""
        kw: dict[str, np.ndarray] = {}
        if "lagged" in policy.reads and self.lag:
            kw["lagged"], kw["lagged_known"] = self.lagged(slots, step)
        if "history" in policy.reads:
            kw["accepted_total"] = self.accepted[slots]
            kw["verified_total"] = self.verified[slots]
        return kw
