"""Cost profiler: an engine's step costs measured for a ``spectune.cost/v1`` profile (DESIGN §2).

Every number comes from real engine calls timed by the engine itself (:attr:`Engine.last`):

- verify: one target forward over ``B = Σ_r q[r]`` tokens from R requests, at points (R, B) — the
  1D SPS table takes, per B, ``R = min(slots, ceil(B / 4))`` requests (about half of γ verified
  per request); the additive fit ``T(bs, M) = bias + α(bs) + θ(M)`` uses those points plus each
  ``bs`` probe over its B range. Every call splits B at random (``q[r]`` in ``1..γ+1``) over R
  requests in randomly chosen slots, so a point's cost is that of a typical batch, not of
  one lucky layout (the engine has fast paths for uniform ``q`` and contiguous slots); each
  split's padding ``R · max q − B`` is kept, so the fit can price padding separately. B runs
  densely at small B, sparser above, up to ``slots · (γ + 1)``.
- context: verifies of R requests at several cache lengths L each, for R = 1, 4, 16, 64, ... up to
  the slots (``ProfileConfig.context_requests``), at lengths from the base to the engine's
  context plus a short one (base / 8), so the points span the KV range a workload reaches, from
  one short request to every slot at the longest; the extra seconds over R requests at the base
  length, indexed by the KV tokens attention reads, ``R · L`` (``engine/costfit.py`` chains the
  request counts into one curve). The engine pads each
  request's keys to the longest context in the batch (``Layout.kmax`` in ``engine/cache.py``),
  so a batch of mixed lengths costs what R requests at the longest one cost: the profile's
  context basis is ``padded`` (the simulator counts ``R · max L``). Attention is padded to the
  longest request's query tokens too, so the lengths are measured twice: every request with
  ``γ + 1`` tokens and with one;
- draft: one drafter pass for R = 1..32 requests (every R), then the ``bs`` probes up to the
  slots, right after a verify of those requests (so it
  includes writing that verify's drafter context, as in a decode loop);
- prefill: one prefill forward over n prompt tokens (several prompts once n exceeds the context),
  up to the simulator's default prefill chunk (2,048 tokens) where the slots allow.

Measuring does not advance the requests: after each timed call the slot lengths are set back
(rolling back is setting a length, see ``engine/cache.py``). Positions past the prefilled prompt
hold whatever earlier calls wrote; attention cost does not depend on the values. Repeats run
round-robin over the points in a seeded shuffled order, so a slow spell of a shared machine
spreads over all points instead of bending one region of the curve; each point keeps its mean,
median and inter-quartile range, and the cost models use the mean (see :class:`Measured`).
Nothing is smoothed: the jags are the measurement. ``engine/costfit.py`` turns the
measurements into the two cost-model forms and the YAML document.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine.drafter import Draft
from engine.engine import Engine

Q_TYPICAL = 4  # verify tokens per request assumed by the 1D table's batch composition


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure and how often."""

    quick: bool = False  # fewer points and repeats (about a minute on a 2-core CPU)
    repeats: int = 0  # timed repeats per point (0 = 9, quick 5)
    warmup: int = -1  # untimed rounds before the timed ones (-1 = 2, quick 1)
    base_context: int = 128  # cache length of the verify/draft points (at most half the context)
    seed: int = 0  # prompt bytes, per-request splits and the round-robin order
    context_requests: int = 0  # most requests in a context point's batch (0 = the slots)

    def __post_init__(self) -> None:
        object.__setattr__(self, "repeats", self.repeats or (5 if self.quick else 9))
        warmup = self.warmup if self.warmup >= 0 else (1 if self.quick else 2)
        object.__setattr__(self, "warmup", warmup)
        if self.repeats < 1 or self.base_context < 1 or self.context_requests < 0:
            raise ValueError("repeats and base_context must be positive, context_requests >= 0")


@dataclass
class Measured:
    """Means, medians and inter-quartile ranges (seconds) of the timed repeats of some points.

    Cost models use the mean: a simulated run's duration is a sum of step times, whose
    expectation is the sum of the means; the median would drop the slow tail (a shared machine's
    slow spells, allocator stalls) that the live engine pays on every run."""

    points: list[tuple]  # one key per point
    mean: list[float]
    median: list[float]
    iqr: list[float]
    pad: list[float] | None = None  # verify points: mean padding R · max q − B of their splits
    ragged: list[float] | None = None  # verify points: share of their splits that are ragged


def summarise(points: list, samples: list[list[float]]) -> Measured:
    """Mean, median and IQR of each point's timed samples (``samples[i]`` for ``points[i]``)."""
    x = np.asarray(samples)  # [points, repeats]
    q1, med, q3 = np.percentile(x, [25, 50, 75], axis=1)
    return Measured(list(points), x.mean(axis=1).tolist(), med.tolist(), (q3 - q1).tolist())


# -- grids -----------------------------------------------------------------------------------------
def batch_grid(max_b: int, quick: bool) -> list[int]:
    """Verify batch tokens: dense at small B, sparser above, ending at ``max_b``."""
    if quick:
        grid = [b for k in range(12) for b in (2**k, 3 * 2**k // 2)]
    else:  # 1..16 every token, then 18..32 every 2, 36..64 every 4, ...
        grid, step, lo = list(range(1, 17)), 2, 16
        while lo < max_b:
            grid += range(lo + step, 2 * lo + 1, step)
            lo, step = 2 * lo, 2 * step
    return sorted({b for b in grid if b <= max_b} | {max_b})


def request_probes(slots: int, quick: bool) -> list[int]:
    """Requests-per-batch probes (the additive form's ``bs``, the draft curve's R)."""
    base = (1, 2, 4, 8, 16, 32, 64, 128) if quick else (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64,
                                                         96, 128, 192)  # fmt: skip
    return sorted({r for r in base if r <= slots} | {slots})


DENSE_DRAFT = 32  # the draft curve is measured at every R up to this, then at the bs probes


def draft_requests(slots: int, quick: bool) -> list[int]:
    """Requests of the draft points: every R up to :data:`DENSE_DRAFT`, the probes above."""
    probes = request_probes(slots, quick)
    if quick:
        return probes
    return sorted(set(range(1, min(slots, DENSE_DRAFT) + 1)) | set(probes))


def context_requests(slots: int, most: int = 0) -> list[int]:
    """Requests of the context points: 1, 4, 16, 64, ... below ``most`` (0 = the slots, at most
    the slots), and ``most`` itself: each count's lengths reach 4 times the previous one's KV
    tokens at the base length, so :func:`engine.costfit.context_curve` can chain them."""
    top = min(slots, most or slots)
    out, r = [], 1
    while r < top:
        out.append(r)
        r *= 4
    return [*out, top]


def split_tokens(b: int, r: int, cap: int, rng: np.random.Generator) -> list[int]:
    """``r`` per-request token counts in ``1..cap`` summing to ``b`` (random, seeded)."""
    q = np.ones(r, dtype=np.int64)
    for _ in range(b - r):
        open_ = np.flatnonzero(q < cap)
        q[open_[rng.integers(open_.size)]] += 1
    return q.tolist()


def sps_requests(b: int, slots: int) -> int:
    """Requests in the 1D table's batch of ``b`` tokens."""
    return min(slots, max(1, math.ceil(b / Q_TYPICAL)))


def verify_points(slots: int, gamma: int, quick: bool) -> list[tuple[int, int]]:
    """(R, B) points: the 1D table's composition for each B, then each bs probe over B."""
    cap = gamma + 1
    grid = batch_grid(slots * cap, quick)
    points = {(sps_requests(b, slots), b) for b in grid}
    points |= {(r, b) for r in request_probes(slots, quick) for b in grid if r <= b <= r * cap}
    return sorted(points, key=lambda p: (p[1], p[0]))


def context_grid(base: int, limit: int, quick: bool) -> list[int]:
    """Cache lengths of the context points: a short one (base / 8), then the base to ``limit``."""
    n = 4 if quick else 9
    return sorted({max(1, base // 8)} | {int(x) for x in np.linspace(base, limit, n).round()})


def context_points(slots: int, base: int, limit: int, quick: bool, most: int = 0):
    """(R, L) points of the context measurements: every length at every request count."""
    lengths = context_grid(base, limit, quick)
    return [(r, n) for r in context_requests(slots, most) for n in lengths]


PREFILL_CHUNK = 2048  # the simulator's default prefill tokens per step (ServerConfig)


def prefill_grid(limit: int, quick: bool, slots: int = 2) -> list[int]:
    """Prompt tokens per prefill: up to two prompts of the longest length, and the default
    prefill chunk (several prompts) where ``slots`` can hold them."""
    grid = {16, 64, 256} if quick else {8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1536}
    sizes = {n for n in grid if n < 2 * limit} | {limit, 2 * limit}
    if not quick and math.ceil(PREFILL_CHUNK / limit) <= slots:
        sizes.add(PREFILL_CHUNK)
    return sorted(sizes)


# -- measuring -------------------------------------------------------------------------------------
class Profiler:
    """Times one engine's prefill, draft and verify calls (see the module docstring)."""

    def __init__(self, engine: Engine, cfg: ProfileConfig, tick: Callable[[int], None]) -> None:
        if engine.drafter is None:
            raise ValueError("the profiler needs an engine with a drafter")
        self.engine, self.cfg, self.tick = engine, cfg, tick
        self.gen = torch.Generator(device=engine.device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.limit = engine.max_len - engine.gamma - 2  # longest prompt / context measured
        self.base = min(cfg.base_context, self.limit // 2)  # cache length of verify/draft points
        self.slots: list[int] = []
        self.pads: dict[tuple[int, int], list[int]] = {}  # (R, B) -> padding of each split
        self.draft: Draft | None = None

    def prompt(self, n: int) -> list[int]:
        return self.rng.integers(0, self.engine.target.cfg.vocab, n).tolist()

    def rounds(self, jobs: dict[str, tuple[list, Callable[[object], float]]]) -> dict:
        """Warm-up, then timed rounds over every point of every kind in one shuffled order per
        round, so a slow spell of a shared machine spreads over all kinds and points instead of
        bending one curve (a drift between measuring verify and context would read as a
        context cost). ``jobs`` maps a kind to (points, timed call); returns kind -> Measured."""
        cfg = self.cfg
        samples = {kind: [[] for _ in points] for kind, (points, _) in jobs.items()}
        for rep in range(cfg.warmup + cfg.repeats):
            for kind, i in self.round_order(jobs):
                t = self.call(jobs, kind, i)
                if rep >= cfg.warmup:
                    samples[kind][i].append(t)
                self.tick(1)
        return {kind: summarise(points, samples[kind]) for kind, (points, _) in jobs.items()}

    def round_order(self, jobs: dict[str, tuple[list, Callable]]) -> list[tuple[str, int]]:
        """One round: (kind, point index) for every point of every kind, freshly shuffled."""
        flat = [(kind, i) for kind, (points, _) in jobs.items() for i in range(len(points))]
        return [flat[j] for j in self.rng.permutation(len(flat)).tolist()]

    def call(self, jobs: dict[str, tuple[list, Callable]], kind: str, i: int) -> float:
        """One timed call of point ``i`` of ``kind``, the previous call's drafter context
        written first (untimed), so no call pays for another's pending work."""
        points, timed = jobs[kind]
        self.engine.flush()
        return timed(points[i])

    def prefill(self, n: int) -> float:
        """One prefill of n prompt tokens (split over prompts of at most the context) into pool
        slots freed for it; the slots go back to the pool at the base context afterwards."""
        e = self.engine
        k = math.ceil(n / self.limit)
        sizes = [n // k + (i < n % k) for i in range(k)]
        freed = self.slots[:k]
        for s in freed:
            e.remove(s)
        slots = e.add_many([self.prompt(size) for size in sizes], self.gen)
        assert sorted(slots) == sorted(freed)
        self._set_length(slots, self.base)
        return e.last["prefill"]

    def open_pool(self, requests: int) -> None:
        """Prefill ``requests`` prompts of the base context and draft once for all of them."""
        e = self.engine
        self.slots = e.add_many([self.prompt(self.base)] * requests, self.gen)
        self.draft = e.draft(self.slots, self.gen)

    def _batch(self, r: int) -> list[int]:
        """R requests in R scattered slots (a fresh random subset in random order per call), as
        continuous batching leaves them; a contiguous run of slots is the engine's cheap case."""
        return [self.slots[i] for i in self.rng.permutation(len(self.slots))[:r]]

    def _set_length(self, slots: list[int], length: int) -> None:
        for s in slots:
            self.engine.slots[s].length = self.engine.cache.lengths[s] = length

    def _sub_draft(self, r: int) -> Draft:
        d = self.draft
        return Draft(d.tokens[:r], d.probs[:r], d.conf_logits[:r])

    def verify(self, r: int, b: int, length: int, record: bool = False) -> float:
        """One verify of B tokens from R requests, split at random (1..γ+1 tokens each);
        ``record`` keeps the split's padding ``R · max q − B`` under (R, B) in :attr:`pads`."""
        e = self.engine
        q = split_tokens(b, r, e.gamma + 1, self.rng)
        if record:
            self.pads.setdefault((r, b), []).append(r * max(q) - b)
        slots = self._batch(r)
        self._set_length(slots, length)
        v = e.verify(slots, self._sub_draft(r), [x - 1 for x in q], self.gen)
        assert v.verify_tokens == sum(q)
        self._set_length(slots, length)
        return e.last["verify"]

    def drafting(self, r: int) -> float:
        """One drafter pass for R requests right after a verify of theirs (as in a decode loop;
        the verify's B = 4R tokens split at random, so the drafter ingests a ragged batch)."""
        e = self.engine
        slots = self._batch(r)
        q = split_tokens(Q_TYPICAL * r, r, e.gamma + 1, self.rng)
        e.verify(slots, self._sub_draft(r), [x - 1 for x in q], self.gen)
        self._set_length(slots, self.base)
        e.draft(slots, self.gen)
        return e.last["draft"]

    def reference(self, calls: int) -> float:
        """Mean seconds of a fixed verify call (R = 1, B = Q_TYPICAL, base context): the machine
        speed at this moment, for comparing measurements taken at different times."""
        return float(np.mean([self.verify(1, Q_TYPICAL, self.base) for _ in range(calls)]))

    def close_pool(self) -> None:
        for s in self.slots:
            self.engine.remove(s)
        self.slots, self.draft = [], None


@dataclass
class Measurements:
    verify: Measured  # points (R, B)
    draft: Measured  # points R
    prefill: Measured  # points n tokens
    context: Measured  # points (R, L): requests, cache length per request (γ + 1 tokens each)
    slots: int
    gamma: int
    base_context: int
    wall_s: float
    reference_s: tuple[float, float] = (0.0, 0.0)  # the speed reference before and after
    context_one: Measured | None = None  # the context points at one query token per request
    max_context: int = 0  # the engine's longest sequence per request (prompt + output; 0 = unknown)


REFERENCE_CALLS = 40  # timed calls of the speed reference before and after the rounds


def jobs(
    prof: Profiler, quick: bool, max_context: int = 0, max_prefill: int = 0
) -> dict[str, tuple[list, Callable]]:
    """Every measurement kind: its points and its timed call (see the module docstring).
    ``max_context`` / ``max_prefill`` (0 = the engine's limits) confine the context lengths and
    prefill sizes to a workload's range (the curves extend linearly beyond their last point)."""
    slots, gamma = prof.engine.cache.slots, prof.engine.gamma
    top = min(prof.limit, max_context) if max_context > prof.base else prof.limit
    ctx = context_points(slots, prof.base, top, quick, prof.cfg.context_requests)
    sizes = prefill_grid(prof.limit, quick, slots)
    if max_prefill:
        sizes = sorted({n for n in sizes if n < max_prefill} | {min(max_prefill, 2 * prof.limit)})
    out = {
        "verify": (verify_points(slots, gamma, quick),
                   lambda p: prof.verify(*p, prof.base, record=True)),
        "context": (ctx, lambda p: prof.verify(p[0], p[0] * (gamma + 1), p[1])),
        "context_one": (ctx, lambda p: prof.verify(p[0], p[0], p[1])),
        "draft": (draft_requests(slots, quick), prof.drafting),
        "prefill": (sizes, prof.prefill),
    }  # fmt: skip
    if max(math.ceil(n / prof.limit) for n in out["prefill"][0]) > slots:
        raise ValueError("the engine needs more slots to measure the largest prefill")
    return out


def measurements(prof: Profiler, m: dict[str, Measured], wall_s: float, reference_s=(0.0, 0.0)):
    """The :class:`Measurements` of ``m`` (kind -> Measured) taken by ``prof``."""
    slots = prof.engine.cache.slots
    pads = [np.asarray(prof.pads[tuple(p)]) for p in m["verify"].points]
    m["verify"].pad = [float(x.mean()) for x in pads]
    m["verify"].ragged = [float((x > 0).mean()) for x in pads]
    return Measurements(m["verify"], m["draft"], m["prefill"], m["context"], slots,
                        prof.engine.gamma, prof.base, wall_s,
                        tuple(reference_s), m["context_one"], prof.engine.max_len)  # fmt: skip


def measure(engine: Engine, cfg: ProfileConfig, *, on_total=None, tick=None) -> Measurements:
    """All four measurements in one interleaved round-robin; ``on_total(n)`` is told the number
    of timed calls, ``tick(k)`` is called as they complete (a progress bar)."""
    t0 = time.perf_counter()
    prof = Profiler(engine, cfg, tick or (lambda k: None))
    work = jobs(prof, cfg.quick)
    if on_total:
        on_total((cfg.warmup + cfg.repeats) * sum(len(points) for points, _ in work.values()))
    with torch.inference_mode():
        prof.open_pool(engine.cache.slots)
        before = prof.reference(REFERENCE_CALLS)
        m = prof.rounds(work)
        after = prof.reference(REFERENCE_CALLS)
        prof.close_pool()
    return measurements(prof, m, time.perf_counter() - t0, (before, after))


def speed_reference(engine: Engine, base_context: int = 128, calls: int = REFERENCE_CALLS) -> float:
    """The speed reference of :meth:`Profiler.reference` on an idle engine (its slots free):
    comparing it with a profile's shows whether the machine runs at the speed it was profiled
    at (a shared machine's speed drifts)."""
    prof = Profiler(engine, ProfileConfig(base_context=base_context), lambda k: None)
    with torch.inference_mode():
        prof.open_pool(len(engine.free_slots()))
        try:
            return prof.reference(calls)
        finally:
            prof.close_pool()
