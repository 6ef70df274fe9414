"""Cost profiler: an engine's step costs measured for a ``spectune.cost/v1`` profile (DESIGN §2).

Every number comes from real engine calls timed by the engine itself (:attr:`Engine.last`):

- verify: one target forward over ``B = Σ_r q[r]`` tokens from R requests, at points (R, B) — the
  1D SPS table takes, per B, ``R = min(slots, ceil(B / 4))`` requests (about half of γ verified
  per request); the additive fit ``T(bs, M) = bias + α(bs) + θ(M)`` uses those points plus each
  ``bs`` probe over its B range. Every call splits B at random (``q[r]`` in ``1..γ+1``) over R
  requests in randomly chosen slots, so a point's median is the cost of a typical batch, not of
  one lucky layout (the engine has fast paths for uniform ``q`` and contiguous slots). B runs
  densely at small B, sparser above, up to ``slots · (γ + 1)``.
- context: the same R, B at several cache lengths; the extra seconds over the base length,
  indexed by total KV tokens ``R · L`` (the simulator's ``kv_tokens``);
- draft: one drafter pass for R = 1..slots requests, right after a verify of those requests (so it
  includes writing that verify's drafter context, as in a decode loop);
- prefill: one prefill forward over n prompt tokens (several prompts once n exceeds the context).

Measuring does not advance the requests: after each timed call the slot lengths are set back
(rolling back is setting a length, see ``engine/cache.py``). Positions past the prefilled prompt
hold whatever earlier calls wrote; attention cost does not depend on the values. Repeats run
round-robin over the points in a seeded shuffled order, so a slow spell of a shared machine
spreads over all points instead of bending one region of the curve; each point keeps its median
and inter-quartile range. Nothing is smoothed: the jags are the measurement. ``engine/costfit.py``
turns the measurements into the two cost-model forms and the YAML document.
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "repeats", self.repeats or (5 if self.quick else 9))
        warmup = self.warmup if self.warmup >= 0 else (1 if self.quick else 2)
        object.__setattr__(self, "warmup", warmup)
        if self.repeats < 1 or self.base_context < 1:
            raise ValueError("repeats and base_context must be positive")


@dataclass
class Measured:
    """Medians and inter-quartile ranges (seconds) of the timed repeats of some points."""

    points: list[tuple]  # one key per point
    median: list[float]
    iqr: list[float]


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
    base = (1, 2, 4, 8, 16, 32, 64) if quick else (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    return sorted({r for r in base if r <= slots} | {slots})


def split(b: int, r: int, cap: int, rng: np.random.Generator) -> list[int]:
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
    n = 4 if quick else 9
    return sorted({int(x) for x in np.linspace(base, limit, n).round()})


def prefill_grid(limit: int, quick: bool) -> list[int]:
    """Prompt tokens per prefill: up to two prompts of the longest length."""
    grid = {16, 64, 256} if quick else {8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1536}
    return sorted({n for n in grid if n < 2 * limit} | {limit, 2 * limit})


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
        self.draft: Draft | None = None

    def prompt(self, n: int) -> list[int]:
        return self.rng.integers(0, self.engine.target.cfg.vocab, n).tolist()

    def _rounds(self, points: list, timed: Callable[[tuple], float]) -> Measured:
        """Warm-up, then round-robin timed repeats in a shuffled order per round."""
        cfg, samples = self.cfg, [[] for _ in points]
        for rep in range(cfg.warmup + cfg.repeats):
            for i in self.rng.permutation(len(points)).tolist():
                t = timed(points[i])
                if rep >= cfg.warmup:
                    samples[i].append(t)
                self.tick(1)
        q1, med, q3 = np.percentile(np.asarray(samples), [25, 50, 75], axis=1)
        return Measured(list(points), med.tolist(), (q3 - q1).tolist())

    def prefill(self, tokens: list[int]) -> Measured:
        e = self.engine

        def timed(n: int) -> float:
            k = math.ceil(n / self.limit)
            sizes = [n // k + (i < n % k) for i in range(k)]
            slots = e.add_many([self.prompt(s) for s in sizes], self.gen)
            t = e.last["prefill"]
            for s in slots:
                e.remove(s)
            return t

        return self._rounds(tokens, timed)

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

    def _verify(self, r: int, b: int, length: int) -> float:
        """One verify of B tokens from R requests, split at random (1..γ+1 tokens each)."""
        e = self.engine
        q = split(b, r, e.gamma + 1, self.rng)
        slots = self._batch(r)
        self._set_length(slots, length)
        v = e.verify(slots, self._sub_draft(r), [x - 1 for x in q], self.gen)
        assert v.verify_tokens == sum(q)
        self._set_length(slots, length)
        return e.last["verify"]

    def verify(self, points: list[tuple[int, int]]) -> Measured:
        return self._rounds(points, lambda p: self._verify(p[0], p[1], self.base))

    def context(self, r: int, b: int, lengths: list[int]) -> Measured:
        return self._rounds(lengths, lambda length: self._verify(r, b, length))

    def drafting(self, requests: list[int]) -> Measured:
        e, base = self.engine, self.base

        def timed(r: int) -> float:
            slots = self._batch(r)
            e.verify(slots, self._sub_draft(r), [Q_TYPICAL - 1] * r, self.gen)
            self._set_length(slots, base)
            e.draft(slots, self.gen)
            return e.last["draft"]

        return self._rounds(requests, timed)

    def close_pool(self) -> None:
        for s in self.slots:
            self.engine.remove(s)
        self.slots, self.draft = [], None


@dataclass
class Measurements:
    verify: Measured  # points (R, B)
    draft: Measured  # points R
    prefill: Measured  # points n tokens
    context: Measured  # points L (cache length per request)
    context_rb: tuple[int, int]  # requests and batch tokens of the context points
    slots: int
    gamma: int
    base_context: int
    wall_s: float


def measure(engine: Engine, cfg: ProfileConfig, *, on_total=None, tick=None) -> Measurements:
    """All four measurements; ``on_total(n)`` is told the number of timed calls, ``tick(k)``
    is called as they complete (a progress bar)."""
    t0 = time.perf_counter()
    slots, gamma = engine.cache.slots, engine.gamma
    points = verify_points(slots, gamma, cfg.quick)
    requests = request_probes(slots, cfg.quick) if cfg.quick else list(range(1, slots + 1))
    prof = Profiler(engine, cfg, tick or (lambda k: None))
    tokens = prefill_grid(prof.limit, cfg.quick)
    lengths = context_grid(prof.base, prof.limit, cfg.quick)
    r_ctx = min(slots, 8)
    if on_total:
        rounds = cfg.warmup + cfg.repeats
        on_total(rounds * (len(points) + len(requests) + len(tokens) + len(lengths)))
    if max(math.ceil(n / prof.limit) for n in tokens) > slots:
        raise ValueError("the engine needs more slots to measure the largest prefill")
    with torch.inference_mode():
        pre = prof.prefill(tokens)
        prof.open_pool(slots)
        ver = prof.verify(points)
        ctx = prof.context(r_ctx, r_ctx * Q_TYPICAL, lengths)
        dra = prof.drafting(requests)
        prof.close_pool()
    return Measurements(ver, dra, pre, ctx, (r_ctx, r_ctx * Q_TYPICAL), slots, gamma, prof.base,
                        time.perf_counter() - t0)  # fmt: skip


def environment(device: torch.device) -> dict:
    """Where and when: device, threads, versions, CPU, load average, date, project commit."""
    import datetime
    import os
    import platform

    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu(),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_count": os.cpu_count(),
    }
    return env


def load_average() -> list[float]:
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str:
    """The project's HEAD commit (``+dirty`` when tracked files differ), or ``unknown``."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty.strip() else "")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def checkpoint_digest(name: str) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint file: which weights were measured."""
    import hashlib

    from engine.checkpoint import path_of

    return hashlib.sha256(path_of(name).read_bytes()).hexdigest()[:16]
