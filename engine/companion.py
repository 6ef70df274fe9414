"""A cost profile measured alongside a live run, one profiler call between live steps (issue #6).

A shared machine's speed drifts: on the 2-core development VM the same verify call took 5 to 9 ms
within a minute, and a profile taken minutes before a live run was 12–35% off the machine's
speed during the run. Comparing such a profile with the live run measures the machine, not the
simulator. The companion applies the side-by-side rule of our benchmarks to fidelity: it runs
the profiler's own controlled calls (the quick grid of ``engine/profiler.py``: synthetic batches
at fixed (R, B) points, context lengths, drafter passes, prefills) on a second engine sharing the
live engine's weights, one call after each live step, so the profile and the live run sample the
same spells of the machine. It never sees the live steps' times: the cost model it yields is as
much a prediction as a stored profile's.

Rounds are shuffled like the profiler's; the first is warm-up. When the live run ends the
current round is completed (and at least two timed rounds are taken), so every point has the same
number of samples. Its own engine keeps the live engine's KV caches and pending drafter context
untouched.
"""

from __future__ import annotations

import time

import torch

from engine.costfit import cost_models
from engine.engine import Engine
from engine.profiler import Measurements, ProfileConfig, Profiler, jobs, measurements, summarise
from profiles.cost import CostModel

MIN_TIMED_ROUNDS = 2


class Companion:
    """One profiler call per :meth:`step`; :meth:`cost_model` fits what it measured."""

    def __init__(
        self,
        live: Engine,
        *,
        base_context: int = 128,
        seed: int = 0,
        max_context: int = 0,
        max_prefill: int = 0,
    ) -> None:
        """``max_context`` / ``max_prefill`` confine the context lengths and prefill sizes
        measured to the workload's range (0 = the engine's limits)."""
        slots = live.cache.slots
        engine = Engine(live.target, live.drafter, slots=slots, max_len=live.max_len,
                        temperature=live.temperature)  # fmt: skip
        cfg = ProfileConfig(quick=True, base_context=base_context, seed=seed)
        self.prof = Profiler(engine, cfg, lambda k: None)
        self.work = jobs(self.prof, quick=True, max_context=max_context, max_prefill=max_prefill)
        self.order: list[tuple[str, int]] = []
        self.rounds = 0  # rounds started (the first is warm-up)
        self.samples = {kind: [[] for _ in points] for kind, (points, _) in self.work.items()}
        self.wall_s = 0.0
        with torch.inference_mode():
            self.prof.open_pool(slots)

    def step(self) -> None:
        """One timed profiler call (the next of the current shuffled round)."""
        t0 = time.perf_counter()
        if not self.order:
            self.rounds += 1
            self.order = self.prof.round_order(self.work)
        kind, i = self.order.pop()
        with torch.inference_mode():
            t = self.prof.call(self.work, kind, i)
        if self.rounds > 1:
            self.samples[kind][i].append(t)
        self.wall_s += time.perf_counter() - t0

    def measurements(self) -> Measurements:
        """Complete the current round (and the minimum), then the measurements of every kind."""
        while self.order or self.rounds < 1 + MIN_TIMED_ROUNDS:
            self.step()
        with torch.inference_mode():
            self.prof.close_pool()
        m = {kind: summarise(points, self.samples[kind]) for kind, (points, _) in self.work.items()}
        return measurements(self.prof, m, self.wall_s)

    def cost_model(self, source: str) -> CostModel:
        """The additive cost model of what was measured (the default form of our profiles)."""
        _, additive, _ = cost_models(self.measurements(), source, quick=True)
        return additive

    @property
    def timed_rounds(self) -> int:
        return max(self.rounds - 1, 0)
