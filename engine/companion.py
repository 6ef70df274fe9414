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

A prediction priced by the companion's own fit would test a quick grid's shape, noisy at a few
per cent per run; near the knee a 1% error in step time moves mean TPOT by about 5%. So the
harness prices its prediction with the *stored* profile (the one users tune with) recalibrated
to the machine of the run: per call kind (target forward, drafter pass, prefill) the affine map
``t -> offset + scale · t`` from the stored profile's price of each companion point to its
measured mean (``engine/costfit.py``, ``recalibration``), fitted over a few hundred points'
means. The prediction then tests the stored profile's shape, with the machine's speed measured.

Rounds are shuffled like the profiler's; the first is warm-up. When the live run ends the
current round is completed (and at least two timed rounds are taken), so every point has the same
number of samples. Its own engine keeps the live engine's KV caches and pending drafter context
untouched.
"""

from __future__ import annotations

import time

import torch

from engine.costfit import cost_models, recalibration
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
        self._ms: Measurements | None = None
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
        """Complete the current round (and the minimum), then the measurements of every kind
        (the companion is done after the first call)."""
        if self._ms is None:
            while self.order or self.rounds < 1 + MIN_TIMED_ROUNDS:
                self.step()
            with torch.inference_mode():
                self.prof.close_pool()
            m = {kind: summarise(points, self.samples[kind])
                 for kind, (points, _) in self.work.items()}  # fmt: skip
            self._ms = measurements(self.prof, m, self.wall_s)
        return self._ms

    def cost_model(self, source: str) -> CostModel:
        """The additive cost model of what was measured (the default form of our profiles)."""
        _, additive, _ = cost_models(self.measurements(), source, quick=True)
        return additive

    def recalibrated(self, stored: CostModel, source: str) -> tuple[CostModel, dict]:
        """``stored`` recalibrated to the machine as measured, and the fit per call kind:
        ``{kind: {"offset_s", "scale", "rms_rel_error"}}``."""
        fit = recalibration(self.measurements(), stored)
        model = stored.recalibrated(fit["verify"][:2], fit["draft"][:2], fit["prefill"][:2],
                                    source=source)  # fmt: skip
        names = ("offset_s", "scale", "rms_rel_error")
        return model, {kind: dict(zip(names, v, strict=True)) for kind, v in fit.items()}

    @property
    def timed_rounds(self) -> int:
        return max(self.rounds - 1, 0)
