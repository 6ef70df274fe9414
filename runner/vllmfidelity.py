"""Fidelity against a live vLLM (``spectune fidelity --against vllm``): the profiled simulator's
prediction of a served engine, cell by cell.

Per configuration (a fixed K and a per-batch-size table; the first must be a fixed K) one
``vllm serve`` runs (:class:`engine.vllmbench.Session`): a closed-loop warm-up burst first (the
server's first requests are slow, and its scrape gives the provisional acceptance the loads are
sized with), then the same seeded workload at three open-loop loads (light, near the knee,
saturated: :data:`runner.fidelity.LOADS` × the profiled capacity), each scraped before and after.

The prediction of each cell is spectune's simulation of the same requests, priced by the vLLM
cost profile (``--profile``, e.g. ``spectune profile --engine vllm:... --served``), with the
acceptance imported from the live run's own ``/metrics`` (``import vllm-metrics``): the fixed-K
configuration's scrapes from the first load's start to the last load's end (vLLM's counters of a
per-batch-size K mix draft lengths and are refused for import, so the table's cells are
predicted with the fixed-K import of the same models and prompts). One acceptance for every
domain of the workload: the counters pool them. Steps are priced at the K vLLM drafted: a
``batch_table`` run drafts the K it verifies (:class:`DraftedBackend`).

Per cell: relative error of throughput, mean TPOT, p50 TTFT and mean accepted length (and the
verify length), as :func:`runner.fidelity._compare`. Nothing here parses arguments or prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from policies import make_policy
from runner.fidelity import FidelityConfig, FidelityReport, _compare, workload_at
from simulator.backend import ProfiledBackend
from simulator.capacity import saturated_rate
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


def predict(requests: list, policy, cost, acceptance, server: ServerConfig, seed: int) -> dict:
    """The simulator's summary of ``requests`` priced by ``cost`` (drafts as vLLM drafts)."""
    backend = DraftedBackend(cost, acceptance, server.max_concurrency, seed, server.gamma)
    return simulate(requests, policy, cost, acceptance, server, seed=seed, backend=backend,
                    compiled=False).summary  # fmt: skip


class VllmFidelityHarness:
    """Live vLLM against the profiled simulator (see module doc).

    ``session(policy_spec, out)`` returns an :class:`engine.vllmbench.Session`-like context
    manager (``run(requests, concurrency, out) -> summary``); ``import_acceptance(after,
    before)`` returns the acceptance model of two scrapes."""

    def __init__(self, cfg: VllmFidelityConfig, cost, gamma: int, session, import_acceptance,
                 labels: dict[str, str], on_cell=None) -> None:  # fmt: skip
        if not cfg.base.policies or make_policy(cfg.base.policies[0]).name != "fixed":
            raise ValueError("the first policy must be fixed:k=K (its scrape is imported)")
        self.cfg, self.cost, self.gamma = cfg, cost, gamma
        self.session, self.import_acceptance = session, import_acceptance
        self.labels, self.on_cell = labels, on_cell

    def run(self, out: Path) -> FidelityReport:
        base = self.cfg.base
        server = ServerConfig(max_concurrency=base.max_concurrency, gamma=self.gamma)
        every = list(workload_at(base, math.inf))
        domains = tuple(sorted({r.domain for r in every}))
        live: list[dict[str, Any]] = []
        capacity, scrapes = 0.0, None
        for spec in base.policies:
            tag = spec.replace(":", "-").replace(";", "_").replace(",", "_").replace("=", "")
            with self.session(spec, Path(out) / tag) as s:
                warm = s.run(every[: self.cfg.warmup_requests], base.max_concurrency,
                             Path(out) / tag / "warmup")  # fmt: skip
                if not capacity:
                    acc = acceptance_for(self.import_acceptance(*_scrapes(warm)), domains)
                    capacity = saturated_rate(workload_at(base, math.inf), self.cost, acc,
                                              server, base.seed, spec)  # fmt: skip
                for load, factor in base.loads:
                    requests = list(workload_at(base, capacity * factor))
                    summary = s.run(requests, 0, Path(out) / tag / load)
                    live.append({"load": load, "policy": spec, "rate_req_s": capacity * factor,
                                 "requests": requests, "live": summary})  # fmt: skip
            if scrapes is None:  # the fixed-K session: first load's start to last load's end
                mine = [c["live"] for c in live]
                scrapes = (_scrapes(mine[-1])[0], _scrapes(mine[0])[1])
        model = self.import_acceptance(*scrapes)
        acceptance = acceptance_for(model, domains)
        cells = []
        for c in live:
            prof = predict(c["requests"], make_policy(c["policy"]), self.cost, acceptance, server,
                           base.seed)  # fmt: skip
            cell = {"load": c["load"], "rate_req_s": c["rate_req_s"], "policy": c["policy"],
                    **_compare(prof, c["live"]), "live_wall_s": c["live"]["wall"]["wall_s"],
                    "speed_reference_s": None, "live_run": c["live"]["vllm"]["scrapes"][0],
                    "live_drafted_per_draft": c["live"]["mean_verify_len"],
                    "extrapolated_step_share": prof.get("extrapolated_step_share")}  # fmt: skip
            cells.append(cell)
            if self.on_cell:
                self.on_cell(cell)
        return FidelityReport(
            date=self.labels["date"], command=self.labels["command"], profile=self.cost.source,
            acceptance=acceptance.source, engine=self.labels["engine"],
            config={**_config(base), "warmup_requests": self.cfg.warmup_requests,
                    "temperature": self.cfg.temperature, "gamma": self.gamma},
            pricing="the vLLM cost profile as stored (no recalibration)",
            capacity_req_s=capacity, profile_speed_reference_s=None, cells=cells,
            other_pricings={},
        )  # fmt: skip


def _scrapes(summary: dict) -> tuple[str, str]:
    """(after, before) scrape paths of one live run."""
    before, after = summary["vllm"]["scrapes"]
    return after, before


def _config(base: FidelityConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(base)
