"""Tuning under an SLA: search every policy's parameters and the load, keep the best that meets it.

**Objective.** For a parameter setting, evaluate it at every load of the grid (concurrency caps N
in closed loop — the paper's Figures 7–8 — or request rates in open loop, see
``runner/point.py``). Its score is the *throughput at the SLA*: the highest throughput among the
loads whose metrics meet every SLA constraint, or, where the next load up violates it, the
throughput interpolated linearly to the load at which the binding constraint crosses its bound.

**Search: an adaptive grid, not scipy.optimize.** The objective is piecewise constant in integer
parameters (``k``, ``min_verify_len``, ``max_verify_len``), categorical in others, and is observed
through a feasibility step (the SLA over a discrete load grid); gradient methods see zero
gradients and Nelder–Mead stalls on the plateaus. Simulations are deterministic (common random
numbers), so a grid loses nothing to noise, and grid points run in parallel batches and resume by
key. The search is coordinate-wise: round 0 varies one parameter at a time over its coarse grid
around the defaults; each later round moves the incumbent to the best setting seen (combining the
best value of each coordinate) and tries its neighbours at half the previous step (integers ±1,
floats and log-scaled integers at halved spacing). Then the load is searched, branch and bound:
each of ``bisect`` rounds halves, per policy, one load bracket [last feasible, first
infeasible]: the best simulated setting's while open (throughput need not be monotone in the
load), else that of the setting whose interpolated score could still beat it.
The reported best is the setting with the best *simulated* throughput at the SLA, so every
figure is a simulated point, not an interpolation. Points already in the store
(``--resume``) are never simulated again; since every decision is a deterministic function of the
stored results, a resumed run takes exactly the path an uninterrupted one would.

What is searched is the policy's own knowledge: each hyperparameter declared with
``policies.base.searched`` (its coarse grid and refinement bounds, as functions of γ where they
depend on it) is searched, builtin or third-party alike; the others keep their defaults, e.g.
``dspark_lagged.lag`` (the engine's pipeline depth fixes it; pin it with ``dspark_lagged:lag=1``).
A parameter pinned in a spec is not searched (``fixed:k=1`` is not searched at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policies import make_policy, parse_spec, policy_class
from profiles.errors import InputError
from runner.point import PointTask, point_key
from runner.scheduler import SLA

if TYPE_CHECKING:
    from runner.tune import TuneConfig


# -- search spaces -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dim:
    """One searched parameter: a coarse grid, refined between ``lo`` and ``hi``."""

    name: str
    grid: tuple  # coarse values, increasing (or categories)
    lo: float | None = None  # refinement bounds; None = categorical, grid only
    hi: float | None = None
    log: bool = False  # refine in log space (capacities)

    def neighbours(self, value: Any, level: int) -> list[Any]:
        if self.lo is None or isinstance(value, str):
            return []
        g = [float(x) for x in self.grid]
        is_int = all(isinstance(x, int) for x in self.grid)
        if self.log:
            step = (math.log(g[-1]) - math.log(g[0])) / max(len(g) - 1, 1) / 2**level
            raw = [value * math.exp(-step), value * math.exp(step)]
        else:
            step = (g[-1] - g[0]) / max(len(g) - 1, 1) / 2**level
            raw = [value - step, value + step]
        out = []
        for v in raw:
            v = min(max(v, self.lo), self.hi)
            v = int(round(v)) if is_int else round(v, 6)
            if v != value and v not in out:
                out.append(v)
        return out


def space(cls, gamma: int) -> list[Dim]:
    """The searched parameters of a policy class (its fields' ``searched`` metadata) at γ."""
    dims = []
    for name, search in cls.search_space().items():
        grid, lo, hi = search.at(gamma)
        dims.append(Dim(name, grid, lo, hi, search.log))
    return dims


def _normal(cls, params: dict[str, Any], gamma: int) -> dict[str, Any]:
    """One spelling per behaviour: a cap of γ or more is written 0 (= γ)."""
    for name, search in cls.search_space().items():
        if search.zero_is_gamma and params.get(name, 0) >= gamma:
            params = {**params, name: 0}
    return params


# -- scoring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """A setting's throughput at the SLA, from its points sorted by load."""

    value: float  # ranking value: interpolated throughput at the SLA (0 when never feasible)
    measured: float  # best throughput among feasible simulated points (0 if none)
    load: float | None  # load of that point
    bracket: tuple[float, float] | None  # (last feasible, first infeasible) load, for bisection
    slack: float  # best normalised SLA slack over loads (ranks never-feasible settings)


def at_sla(points: Sequence[dict[str, Any]], sla: Sequence[SLA]) -> Score:
    pts = sorted(points, key=lambda p: p["load"])
    if not pts:
        return Score(0.0, 0.0, None, None, -math.inf)
    slacks = [[s.slack(p) / max(abs(s.value), 1e-9) for s in sla] for p in pts]
    ok = [all(x >= 0 for x in row) for row in slacks]
    best_slack = max(min(row, default=0.0) for row in slacks)
    feasible = [p for p, f in zip(pts, ok, strict=True) if f]
    if not feasible:
        return Score(0.0, 0.0, None, None, best_slack)
    top = max(feasible, key=lambda p: (p["throughput_tok_s"], -p["load"]))
    value, bracket = top["throughput_tok_s"], None
    i = max(j for j, f in enumerate(ok) if f)
    if i + 1 < len(pts):
        bracket = (pts[i]["load"], pts[i + 1]["load"])
        lo, hi = slacks[i], slacks[i + 1]
        frac = min((a / (a - b) for a, b in zip(lo, hi, strict=True) if b < 0 <= a), default=0.0)
        t0, t1 = pts[i]["throughput_tok_s"], pts[i + 1]["throughput_tok_s"]
        value = max(value, t0 + frac * (t1 - t0))
    return Score(value, top["throughput_tok_s"], top["load"], bracket, best_slack)


# -- the search --------------------------------------------------------------------------------
@dataclass
class PolicySearch:
    """The adaptive grid of one ``--policies`` entry."""

    entry: str  # as given: "dspark_lagged", "fixed:k=1", ...
    gamma: int
    name: str = ""
    cls: Any = None  # the policy class (its fields' metadata is the search space)
    pinned: dict[str, Any] = field(default_factory=dict)
    dims: list[Dim] = field(default_factory=list)
    incumbent: dict[str, Any] = field(default_factory=dict)
    specs: list[str] = field(default_factory=list)  # every setting tried, in order tried
    best: str = ""  # after the search: the best setting's spec
    score: Score | None = None  # its score
    loads: list[float] = field(default_factory=list)  # the loads it was simulated at

    def __post_init__(self) -> None:
        self.name, raw = parse_spec(self.entry)
        self.cls = policy_class(self.name)  # unknown policy → InputError
        self.pinned = make_policy(self.entry).__dict__ if raw else {}
        self.pinned = {k: v for k, v in self.pinned.items() if k in raw}
        dims = space(self.cls, self.gamma)
        self.dims = [d for d in dims if d.name not in self.pinned and len(d.grid) > 0]

    def spec(self, params: dict[str, Any]) -> str | None:
        try:
            policy = make_policy(self.name, **_normal(self.cls, {**params, **self.pinned},
                                                      self.gamma))  # fmt: skip
        except InputError:
            return None  # e.g. min_verify_len > max_verify_len
        return policy.spec

    def _add(self, candidates: list[dict[str, Any]]) -> list[str]:
        new = []
        for params in candidates:
            s = self.spec(params)
            if s is not None and s not in self.specs:
                self.specs.append(s)
                new.append(s)
        return new

    def coarse(self) -> list[str]:
        cands = [{}] + [{d.name: v} for d in self.dims for v in d.grid]
        return self._add(cands)

    def refine(self, level: int, score: Callable[[str], Score]) -> list[str]:
        """Move to the best setting seen (plus per-coordinate best combination); neighbours."""
        best = max(self.specs, key=lambda s: (score(s).value, score(s).slack))
        self.incumbent = {k: v for k, v in make_policy(best).__dict__.items()
                          if k not in self.pinned}  # fmt: skip
        combo = dict(self.incumbent)
        for d in self.dims:  # best value of each coordinate when varied alone
            alone = [(score(s).value, v) for v in d.grid
                     if (s := self.spec({**self.incumbent, d.name: v})) in self.specs]  # fmt: skip
            if alone:
                combo[d.name] = max(alone, key=lambda t: t[0])[1]
        cands = [combo]
        zero_is_gamma = {n for n, x in self.cls.search_space().items() if x.zero_is_gamma}
        for d in self.dims:
            value = self.incumbent[d.name]
            if d.name in zero_is_gamma and value == 0:
                value = self.gamma  # 0 means γ
            cands += [{**self.incumbent, d.name: v} for v in d.neighbours(value, level)]
        return self._add(cands)


def search(
    cfg: TuneConfig,
    run_stage: Callable[[list[PointTask]], None],
    lookup: Callable[[str], dict[str, Any] | None],
) -> list[PolicySearch]:
    """Run the search; ``run_stage`` simulates a batch of tasks into the store ``lookup`` reads.

    Returns each entry's search (its ``specs``; the best is ``best_spec``)."""
    gamma = cfg.server.gamma
    searches = [PolicySearch(e, gamma) for e in cfg.policies]
    cache: dict[str, Score] = {}

    def score(spec: str) -> Score:
        if spec not in cache:
            pts = [p for p in (lookup(point_key(spec, cfg.mode, x)) for x in loads_of(spec)) if p]
            cache[spec] = at_sla(pts, cfg.sla)
        return cache[spec]

    extra: dict[str, list[float]] = {}  # bisection loads per spec

    def loads_of(spec: str) -> list[float]:
        return sorted(set(cfg.loads) | set(extra.get(spec, ())))

    def stage(specs: list[str]) -> None:
        tasks = {t.key: t for s in specs for t in (cfg.task(s, x) for x in loads_of(s))}
        run_stage(list(tasks.values()))
        cache.clear()

    stage([s for search in searches for s in search.coarse()])
    for level in range(1, cfg.rounds + 1):
        new = [s for search in searches for s in search.refine(level, score)]
        if not new:
            break
        stage(new)
    for _ in range(cfg.bisect):  # branch and bound on the load brackets
        todo = [s for x in searches if (s := _to_bisect(x, score, loads_of, cfg.mode))]
        if not todo:
            break
        for spec in todo:
            extra.setdefault(spec, []).append(_midpoint(score(spec).bracket, cfg.mode))
        stage(todo)
    for search in searches:
        search.best = best_spec(search, score)
        search.score = score(search.best)
        search.loads = loads_of(search.best)
    return searches


def best_spec(search: PolicySearch, score: Callable[[str], Score]) -> str:
    """The setting with the best *simulated* throughput at the SLA (ties: interpolated)."""
    return max(search.specs, key=lambda s: (score(s).measured, score(s).value, score(s).slack))


def _to_bisect(search: PolicySearch, score, loads_of, mode: str) -> str | None:
    """Which setting's load bracket to halve next: the best simulated setting's while it is
    open (throughput need not be monotone in the load, so its bracket is always worth closing),
    else the setting with the best interpolated score that could still beat it."""
    best = best_spec(search, score)
    floor = score(best).measured
    others = sorted((s for s in search.specs if s != best), key=lambda s: -score(s).value)
    for spec in [best, *others]:
        sc = score(spec)
        if spec != best and sc.value <= floor:
            return None
        mid = _midpoint(sc.bracket, mode)
        if mid is not None and mid not in loads_of(spec):
            return spec
    return None


def _midpoint(bracket: tuple[float, float] | None, mode: str) -> float | None:
    if bracket is None:
        return None
    lo, hi = bracket
    if mode == "concurrency":
        return float((int(lo) + int(hi)) // 2) if hi - lo > 1 else None
    return round(math.sqrt(lo * hi), 6) if hi / lo > 1.05 else None
