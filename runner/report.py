"""What a tuning run found, typed: one :class:`PolicyResult` per ``--policies`` entry in a
:class:`TuneReport`, plus the Pareto frontiers and the ``best.yaml`` of the best lossless entry.

``TuneReport.to_dict()`` is ``summary.json``: per entry its best setting, throughput at the SLA
(simulated, and interpolated to the bound), the figures at that load, the per-load curve, the
best value of each SLA metric over every setting (why an entry is infeasible), the gain over
``fixed:k=1`` (MTP-1) and the share of the oracle (the best response) per load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BASELINE = "fixed:k=1"  # MTP-1, the production baseline gains are quoted against
KEY_METRICS = ("throughput_tok_s", "tps_per_user_p50", "ttft_p99_s", "tpot_p50_s",
               "mean_verify_len", "mean_accepted_len", "mean_batch_size")  # fmt: skip


@dataclass(frozen=True)
class PolicyResult:
    """The outcome of one ``--policies`` entry."""

    best: str  # spec of its best setting (best simulated throughput at the SLA)
    feasible: bool  # some simulated load of some setting meets the SLA
    throughput_at_sla: float  # best simulated throughput meeting the SLA (0 if infeasible)
    throughput_at_sla_interpolated: float  # ... interpolated to the binding bound
    load: float | None  # the load of that point (None if infeasible)
    metrics: dict[str, Any]  # KEY_METRICS at that load ({} if infeasible)
    settings_tried: int  # parameter settings simulated
    closest: dict[str, float | None]  # per SLA constraint, its metric's best value anywhere
    at_top_of_grid: bool  # the answer is the largest load of the grid (a larger one may win)
    lossless: bool | None  # the policy class's flag (None: a simulator-only reference)
    per_load: tuple[dict[str, Any], ...]  # the best setting at each load: KEY_METRICS, sla_met
    gain_vs_fixed_k1: float | None = None  # throughput_at_sla / fixed:k=1's - 1
    share_of_oracle: dict[str, float] = field(default_factory=dict)  # load -> throughput ratio

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best, "feasible": self.feasible,
            "throughput_at_sla": self.throughput_at_sla,
            "throughput_at_sla_interpolated": self.throughput_at_sla_interpolated,
            "load": self.load, **self.metrics, "settings_tried": self.settings_tried,
            "closest": self.closest, "at_top_of_grid": self.at_top_of_grid,
            "lossless": self.lossless, "per_load": [dict(p) for p in self.per_load],
            "gain_vs_fixed_k1": self.gain_vs_fixed_k1, "share_of_oracle": self.share_of_oracle,
        }  # fmt: skip


@dataclass(frozen=True)
class TuneReport:
    """A finished tuning run (``summary.json``; ``best.yaml`` when ``best`` is not None)."""

    sla: tuple[str, ...]  # the constraints, as written
    mode: str  # "concurrency" or "rate"
    loads: tuple[float, ...]  # the load grid
    baseline: str | None  # BASELINE when it was tuned and feasible
    oracle: str | None  # the oracle entry (the reference), if any
    best: str | None  # the best lossless feasible entry (what best.yaml holds)
    policies: dict[str, PolicyResult]  # per --policies entry, in the order given
    workload: str = ""  # labels of the workload, cost and acceptance models
    profile: str = ""
    acceptance: str = ""
    files: tuple[str, ...] = ()  # what the run wrote into its directory
    overload: dict[str, float] | None = None  # open loop: offered rate beyond the capacity
    run: dict[str, Any] = field(default_factory=dict)  # resolved config, seed, profile hash
    points: dict[str, int] = field(default_factory=dict)  # total, reused, simulated
    cost_warning: str | None = None  # an imported cost profile's missing terms, if any
    fronts: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    out: Path | None = None  # the run's directory

    def to_dict(self) -> dict[str, Any]:
        """``summary.json`` (the frontiers are in ``frontier.csv``)."""
        return {
            "sla": list(self.sla), "mode": self.mode, "loads": list(self.loads),
            "baseline": self.baseline, "oracle": self.oracle, "best": self.best,
            "policies": {e: r.to_dict() for e, r in self.policies.items()},
            "workload": self.workload, "profile": self.profile, "acceptance": self.acceptance,
            "files": list(self.files), "overload": self.overload, "run": self.run,
            "points": self.points,
            **({"cost_warning": self.cost_warning} if self.cost_warning else {}),
        }  # fmt: skip


def frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pareto points (higher tok/s/user p50 and higher throughput) of a set of points."""
    pts = [p for p in points if p.get("tps_per_user_p50") is not None]
    pts.sort(key=lambda p: (-p["tps_per_user_p50"], -p["throughput_tok_s"]))
    out, best = [], -1.0
    for p in pts:
        if p["throughput_tok_s"] > best:
            out.append(p)
            best = p["throughput_tok_s"]
    return out[::-1]  # increasing tok/s/user


def closest(points: list[dict[str, Any]], sla) -> dict[str, float | None]:
    """Per SLA constraint, the best value of its metric over ``points`` (the highest for
    ``>=``, the lowest for ``<=``; None if no point has it): why an entry is infeasible."""
    out: dict[str, float | None] = {}
    for c in sla:
        vals = [p[c.metric] for p in points if isinstance(p.get(c.metric), (int, float))]
        out[str(c)] = (max(vals) if c.op == ">=" else min(vals)) if vals else None
    return out


def result(cfg, search, store) -> PolicyResult:
    """The outcome of one entry's finished search over the points in ``store``."""
    from policies import policy_class
    from runner.point import point_key

    sc = search.score
    pts = [p for p in (store.get(point_key(search.best, cfg.mode, x)) for x in search.loads) if p]
    at = next((p for p in pts if p["load"] == sc.load), None)
    tried = [p for p in store.points.values() if p["policy"] in search.specs]
    return PolicyResult(
        best=search.best, feasible=sc.load is not None, throughput_at_sla=sc.measured,
        throughput_at_sla_interpolated=sc.value, load=sc.load,
        metrics={k: at.get(k) for k in KEY_METRICS} if at else {},
        settings_tried=len(search.specs), closest=closest(tried, cfg.sla),
        at_top_of_grid=sc.load is not None and sc.load >= max(cfg.loads),
        lossless=policy_class(search.name).lossless,
        per_load=tuple({"load": p["load"], **{k: p.get(k) for k in KEY_METRICS},
                        "sla_met": all(x.met(p) for x in cfg.sla)} for p in pts),
    )  # fmt: skip


def report(cfg, searches, store) -> TuneReport:
    """Every entry's result, their gains over MTP-1 and shares of the oracle (the best response)."""
    from policies import parse_spec

    pol = {s.entry: result(cfg, s, store) for s in searches}
    base = pol[BASELINE].throughput_at_sla if BASELINE in pol else None
    ref = next((e for e in pol if parse_spec(e)[0] == "oracle"), None)  # the best response
    bound = {p["load"]: p["throughput_tok_s"] for p in pol[ref].per_load} if ref else {}
    for e, r in pol.items():
        ratios = {str(p["load"]): p["throughput_tok_s"] / bound[p["load"]] for p in r.per_load
                  if bound.get(p["load"]) and p["load"] in cfg.loads}  # fmt: skip
        gain = r.throughput_at_sla / base - 1 if base else None
        pol[e] = replace(r, gain_vs_fixed_k1=gain, share_of_oracle=ratios)
    deployable = [e for e, r in pol.items() if r.lossless is True and r.feasible]
    best = max(deployable, key=lambda e: pol[e].throughput_at_sla) if deployable else None
    return TuneReport(sla=tuple(str(x) for x in cfg.sla), mode=cfg.mode, loads=tuple(cfg.loads),
                      baseline=BASELINE if base else None, oracle=ref, best=best,
                      policies=pol)  # fmt: skip


def best_scheduler(cfg, rep: TuneReport, cost, acceptance, workload_label: str):
    """The ``spectune.scheduler/v1`` document of the report's best entry (None if none)."""
    from policies import make_policy
    from profiles.store import acceptance_to_dict
    from runner import __version__
    from runner.scheduler import SchedulerConfig, content_hash, sts_of

    entry = rep.best
    if entry is None:
        return None
    d = rep.policies[entry]
    params = tuple(make_policy(d.best).__dict__.items())
    # the server's cap (--max-concurrency), kept apart from the tuned operating point
    # (tuned.load): a closed loop at N users needs a cap of at least N, never less than asked
    cap = cfg.server.max_concurrency
    if cfg.mode == "concurrency":
        cap = max(cap, int(d.load))
    tuned = {"entry": entry, "load_mode": cfg.mode, "load": d.load,
             **{k: d.metrics.get(k) for k in KEY_METRICS},
             "throughput_at_sla_interpolated": d.throughput_at_sla_interpolated,
             "gain_vs_fixed_k1": d.gain_vs_fixed_k1, "per_load": list(d.per_load)}  # fmt: skip
    baselines = {e: {"spec": o.best, "throughput_at_sla": o.throughput_at_sla, "load": o.load}
                 for e, o in rep.policies.items() if e != entry}  # fmt: skip
    prov = {
        "profile": {"spec": cfg.profile, "source": cost.source},
        "acceptance": {"spec": cfg.acceptance, "source": acceptance.source,
                       "sha256": content_hash(acceptance_to_dict(acceptance))},
        "workload": {"label": workload_label, "spec": cfg.describe()["workload"]},
        "tune": {"mode": cfg.mode, "loads": list(cfg.loads), "requests": cfg.requests,
                 "per_user": cfg.per_user},
        "seed": cfg.seed,
        "spectune_version": __version__,
    }  # fmt: skip
    return SchedulerConfig(
        policy_name=make_policy(d.best).name, params=params, gamma=cfg.server.gamma,
        cost=cost, sts=sts_of(acceptance, cfg.server.gamma), max_concurrency=cap,
        kv_capacity_tokens=cfg.server.kv_capacity_tokens,
        max_prefill_tokens=cfg.server.max_prefill_tokens, sla=cfg.sla, tuned=tuned,
        baselines=baselines, provenance=prov,
    )  # fmt: skip
