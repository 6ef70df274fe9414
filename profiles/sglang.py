"""SGLang's DSpark cost tables as SGLang itself reads them (sglang 0.5.23).

SGLang's verify-budget planner (``dspark_planner.compute_verify_token_budget``) reads the
``--speculative-dspark-sps-table-path`` JSON in one of two forms, told apart by the
``bias_seconds`` key (``dspark_sps.load_sps_table_from_path``):

- ``SpsCostTable`` (1D): steps per second of a *whole decode step* at B verify batch tokens,
  looked up at the **floor probe** (``bisect_right − 1``, clamped to the first and last probe:
  ``dspark_sps.floor_probe_index``); SGLang's profiler measures it at full verify, B = R·(γ+1)
  (``benchmark/dspark_sps_profiler.py``);
- ``SpsAdditiveCostTable``: ``bias + alpha(R) + theta(B)``, each curve linear between probes and
  **clamped** beyond its ends (``_interp_clamped``).

:class:`Table` reproduces those lookups (numpy, no SGLang import), and :class:`PlannedCost`
wraps a spectune cost model so a policy *plans* with the table the way SGLang will while the
simulator still *prices* steps with the full cost model: that is how spectune simulates an
export as SGLang runs it. The equivalence with SGLang's own code is tested in
``tests/engines/test_sglang.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Table:
    """One SGLang SPS table (either form) with SGLang's lookup semantics."""

    doc: dict  # the JSON object, SGLang field names

    @property
    def additive(self) -> bool:
        return "bias_seconds" in self.doc

    def step_seconds(self, requests: int, tokens: np.ndarray) -> np.ndarray:
        """Seconds SGLang predicts for a decode step of ``requests`` requests at each verify batch
        size in ``tokens`` (float array, same shape)."""
        if self.additive:
            return self._additive(requests, np.asarray(tokens, dtype=float))
        return 1.0 / self.sps(requests, tokens)

    def sps(self, requests: int, tokens: np.ndarray) -> np.ndarray:
        """Steps per second SGLang plans with: the floor probe's value (1D), or ``1 / step``."""
        b = np.asarray(tokens, dtype=np.int64)
        if self.additive:
            return 1.0 / self._additive(requests, b.astype(float))
        xs = np.asarray(self.doc["sample_batch_tokens"], dtype=np.int64)
        sps = np.asarray(self.doc["sample_steps_per_sec"], dtype=float)
        return sps[np.clip(np.searchsorted(xs, b, side="right") - 1, 0, xs.size - 1)]

    def _additive(self, requests: int, m: np.ndarray) -> np.ndarray:
        """``_additive_step_time_tensor``'s arithmetic, operation for operation."""
        d = self.doc
        floor = d["bias_seconds"] + _interp_clamped(d["bs_probes"], d["alpha_seconds"], requests)
        xs, ys = np.asarray(d["m_probes"], float), np.asarray(d["theta_seconds"], float)
        m = np.clip(m, xs[0], xs[-1])
        if xs.size == 1:
            return floor + np.full(m.shape, ys[0])
        hi = np.clip(np.searchsorted(xs, m, side="right"), 1, xs.size - 1)
        lo = hi - 1
        frac = (m - xs[lo]) / np.maximum(xs[hi] - xs[lo], 1e-9)
        return floor + (ys[lo] + frac * (ys[hi] - ys[lo]))


def _interp_clamped(xs: list, ys: list, x: float) -> float:
    """SGLang's scalar ``_interp_clamped``: linear between probes, flat beyond both ends."""
    x = float(x)
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    hi = int(np.searchsorted(xs, x, side="right"))
    lo = hi - 1
    frac = (x - xs[lo]) / (xs[hi] - xs[lo])
    return float(ys[lo] + frac * (ys[hi] - ys[lo]))


class PlannedCost:
    """A cost model whose *planning* lookups (``sps``, ``sps_range``, ``plan_sps``) are an
    engine's table while every pricing lookup is the wrapped model's."""

    def __init__(self, cost: Any, table: Table) -> None:
        self._cost, self._table = cost, table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cost, name)

    def sps(self, requests: int, tokens: np.ndarray) -> np.ndarray:
        return self._table.sps(requests, tokens)

    def sps_range(self, requests: int, start: int, stop: int) -> np.ndarray:
        return self._table.sps(requests, np.arange(start, stop))

    def plan_sps(self, requests: int, start: int, stop: int, kv_tokens: int = 0) -> np.ndarray:
        return self._table.sps(requests, np.arange(start, stop))

    def decode_seconds(self, requests: int, start: int, stop: int, kv_tokens: int = 0):
        return self._table.step_seconds(requests, np.arange(start, stop))

    def describe(self) -> str:
        return f"{self._cost.describe()}, planning with an SGLang table"


def whole_step(cost: Any, requests: int, tokens: np.ndarray) -> np.ndarray:
    """Seconds of a whole decode step (draft + verify, no prefill, context at the measured
    base) of ``requests`` requests at each verify batch size in ``tokens``.

    ``CostModel.decode_seconds`` prices context at a given KV size; SGLang's table has no
    context axis, so this is the sum at the measured base (the monotone lookups)."""
    b = np.asarray(tokens, dtype=np.int64)
    verify = np.array([cost.verify_time(requests, int(x)) for x in b.reshape(-1)])
    return verify.reshape(b.shape) + cost.draft_time(requests)
