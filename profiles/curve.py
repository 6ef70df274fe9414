"""A cost term's measured probes: piecewise linear between them, linear beyond both ends.

Between probes a curve is piecewise linear, so measured jags (padding buckets, CUDA-graph
sizes) stay as measured; beyond the last probe it extrapolates along the last segment (the cost
model counts such lookups, ``profiles.envelope``). :meth:`Curve.monotone` is the running-maximum
repair every planning and pricing lookup reads (``profiles/cost.py``); :meth:`Curve.dips`
counts what it lifts.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from profiles.errors import InputError


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear curve through measured probes, linear beyond both ends."""

    x: tuple[float, ...]  # probe positions, strictly increasing
    y: tuple[float, ...]  # value at each probe (seconds)

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, float), np.asarray(self.y, float)
        if x.ndim != 1 or x.size == 0 or x.size != y.size:
            raise InputError(
                f"curve needs equal-length non-empty probes, got {x.size} and {y.size}"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InputError("curve probes must be finite numbers")
        if x.size > 1 and np.any(np.diff(x) <= 0):
            raise InputError("curve probe positions must be strictly increasing")
        object.__setattr__(self, "x", tuple(x.tolist()))  # plain floats (YAML-safe, hashable)
        object.__setattr__(self, "y", tuple(y.tolist()))

    def __call__(self, q: np.ndarray | float) -> np.ndarray:
        x, y = np.asarray(self.x, float), np.asarray(self.y, float)
        out = np.interp(q, x, y)
        if x.size > 1:
            lo_slope = (y[1] - y[0]) / (x[1] - x[0])
            hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
            out = np.where(q < x[0], y[0] + (q - x[0]) * lo_slope, out)
            out = np.where(q > x[-1], y[-1] + (q - x[-1]) * hi_slope, out)
        return out

    def at(self, q: float) -> float:
        """The curve at one point (scalar fast path of ``__call__``)."""
        x, y = self.x, self.y
        n = len(x)
        if n == 1:
            return y[0]
        i = min(max(bisect_right(x, q), 1), n - 1)  # segment [x[i-1], x[i]], extended at ends
        x0, x1, y0 = x[i - 1], x[i], y[i - 1]
        return y0 + (q - x0) * (y[i] - y0) / (x1 - x0)

    @property
    def hi(self) -> float:
        return self.x[-1]

    @property
    def lo(self) -> float:
        return self.x[0]

    def monotone(self) -> Curve:
        """This curve with each probe raised to the running maximum of the probes before it."""
        return Curve(self.x, tuple(np.maximum.accumulate(np.asarray(self.y, float)).tolist()))

    def dips(self) -> int:
        """Probes below an earlier probe (what :meth:`monotone` lifts)."""
        y = np.asarray(self.y, float)
        return int((y < np.maximum.accumulate(y)).sum())


def zero() -> Curve:
    """The curve of a term that is not modelled (0 s everywhere)."""
    return Curve((0.0,), (0.0,))
