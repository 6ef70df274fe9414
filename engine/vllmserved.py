"""A spectune cost profile of the *served* vLLM engine, from its own per-step log.

``spectune profile --engine vllm:TARGET,draft=DIR --served`` starts one ``vllm serve`` per
speculative K (vLLM fixes K per instance, :mod:`engine.serve`), all at once, warms each up, and
in each of ``repeats`` rounds visits every (K, R) in a shuffled order, streaming a closed-loop
burst at concurrency R through the HTTP API as a replay does (:mod:`engine.bench`). vLLM
logs every engine step it runs (``--enable-logging-iteration-details``: context and
generation requests and tokens, and the step's elapsed time around the model executor's future,
i.e. target forward, rejection sampling and the draft model's K proposals);
:func:`engine.vllmbench.steps` reads those lines back. The
profile is therefore priced by the engine the user serves, in the process layout it serves in
(API server, engine core, worker), rather than by an in-process ``LLMEngine`` (engine/vllmcost.py).

The fit (relative least squares, on the per-(K, R, M) medians of the steps that carry decode
requests; α, θ and d are non-decreasing, fitted as non-negative increments, :func:`rising`)::

    T = bias + α(R) + θ(M) + (K / K_max) · d(R)

with R the decode requests, M the tokens of the step's one fused forward (decode tokens plus any
prefill chunk: vLLM V1 runs them together, ``prefill_fused``), and d(R) the draft model's K_max
sequential passes (``drafter: autoregressive``: a step drafting K pays K / K_max of it). Steps
with no decode request give the prefill curve over chunk tokens (median per token bin). The time
between steps that the log does not cover (scheduling, output processing) is measured per burst
as (burst wall time − Σ logged ms) / steps and its median is added to the bias (kept apart in the
metadata). Nothing here parses arguments or prints.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine import bench, serve, vllmbench
from profiles.cost import CostModel, Curve


@dataclass(frozen=True)
class ServedProfileConfig:
    """What the served-engine profiler measures."""

    requests: tuple[int, ...] = (1, 2, 4, 8, 16)  # closed-loop concurrencies R
    ks: tuple[int, ...] = (1, 2, 4)  # speculative tokens K, one server each
    per_slot: int = 3  # requests per in-flight slot in one burst (R · per_slot requests)
    repeats: int = 2  # rounds over the R values per server
    prompt_tokens: tuple[int, ...] = (32, 64, 128)  # prompt lengths, cycled over requests
    output_tokens: int = 48
    max_num_batched_tokens: int = 2048
    max_model_len: int = 1024
    startup_timeout_s: float = 600.0
    burst_timeout_s: float = 300.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.requests, default=0) < 1 or min(self.ks, default=0) < 1:
            raise ValueError("requests and ks must be >= 1 (the served profile needs a draft)")
        if len(set(self.ks)) < 2:
            raise ValueError("the served profile needs two K values or more (the draft term)")
        if min(self.per_slot, self.repeats, self.output_tokens, *self.prompt_tokens) < 1:
            raise ValueError("per_slot, repeats, output_tokens and prompt_tokens must be >= 1")


def _jobs(cfg: ServedProfileConfig, count: int, first_id: int) -> list[bench.Job]:
    from engine.data import load_all
    from simulator.request import Request

    reqs = [Request(first_id + i, 0.0, cfg.prompt_tokens[i % len(cfg.prompt_tokens)],
                    cfg.output_tokens, "code") for i in range(count)]  # fmt: skip
    return bench.jobs(reqs, cfg.seed, load_all("heldout", ("code",)))


def measure(target: str, draft: str, cfg: ServedProfileConfig, workdir: Path, tick=None) -> dict:
    """Every logged step and burst (see module doc); server logs go to ``workdir``.

    Every K's server runs at once (an idle one took 1.8% of a core, measured 2026-12-03; vLLM
    binds each one's worker to the same core, and one burst runs at a time) and each round
    visits every (K, R) in a shuffled order: the draft term is the difference between K's, and
    a shared machine's speed moves by tens of percent within minutes, so K's measured one
    server after another would differ by the machine as much as by K (measured: the 2026-12-02
    profile, servers in turn, logged R = 1 at K = 2 slower than at K = 4)."""
    from contextlib import ExitStack

    rng = np.random.default_rng(cfg.seed)
    samples: dict = {"steps": [], "bursts": [], "servers": []}
    t0 = time.perf_counter()
    next_id = 0
    with ExitStack() as stack:
        servers = {}
        for k in cfg.ks:
            spec = {"method": "draft_model", "model": draft, "num_speculative_tokens": int(k),
                    "draft_sample_method": "probabilistic"}  # fmt: skip
            scfg = serve.ServeConfig(target, spec, max_num_seqs=max(cfg.requests),
                                     max_model_len=cfg.max_model_len,
                                     max_num_batched_tokens=cfg.max_num_batched_tokens,
                                     seed=cfg.seed)  # fmt: skip
            log = Path(workdir) / f"server-k{k}.log"
            srv = stack.enter_context(serve.Served(scfg, log, cfg.startup_timeout_s))
            samples["servers"].append({"k": k, "startup_s": round(srv.startup_s, 2)})
            servers[k] = (srv, scfg, log)
            warm = _jobs(cfg, max(cfg.requests), 10_000_000 + 1_000 * k)  # not sampled
            bench.run(srv.url, scfg.served_name, warm, _load(max(cfg.requests)))
        for rnd in range(cfg.repeats):
            visits = [(k, r) for k in cfg.ks for r in cfg.requests]
            for i in rng.permutation(len(visits)).tolist():
                k, r = visits[i]
                todo = _jobs(cfg, r * cfg.per_slot, next_id)
                next_id += len(todo)
                samples["bursts"].append(_burst(*servers[k], todo, k, r, rnd, samples))
                if tick is not None:
                    tick(1)
    samples["wall_s"] = time.perf_counter() - t0
    return samples


def _burst(srv, scfg, log: Path, todo, k: int, r: int, rnd: int, samples: dict) -> dict:
    """One closed-loop burst at concurrency ``r``; its logged steps are appended to samples."""
    before = len(vllmbench.steps(log))
    outs = bench.run(srv.url, scfg.served_name, todo, _load(r))
    ok = [o for o in outs if o.ok]
    time.sleep(0.3)  # the stat logger's last lines
    rows = vllmbench.steps(log)[before:]
    burst = len(samples["bursts"])
    samples["steps"] += [{**row, "k": k, "burst": burst} for row in rows]
    wall = max(o.finish for o in ok) - min(o.sent for o in ok) if ok else 0.0
    logged = sum(row["elapsed_ms"] for row in rows) / 1e3
    return {"k": k, "concurrency": r, "round": rnd, "requests": len(todo), "completed": len(ok),
            "steps": len(rows), "wall_s": wall, "logged_s": logged,
            "gap_ms": 1e3 * (wall - logged) / len(rows) if rows else None}  # fmt: skip


def _load(r: int) -> bench.Load:
    return bench.Load(concurrency=r, time_limit_s=300.0, request_timeout_s=300.0, temperature=0.0)


def total_calls(cfg: ServedProfileConfig) -> int:
    return len(cfg.ks) * cfg.repeats * len(cfg.requests)


def _probes(values: np.ndarray) -> list[float]:
    """1, 2, 4, ... up to the largest value (which closes the grid)."""
    hi = float(values.max())
    grid = [1.0]
    while grid[-1] * 2 < hi:
        grid.append(grid[-1] * 2)
    return grid + [hi] if hi > grid[-1] else grid + [grid[-1] + 1]


def fit(samples: dict, source: str = "unlabelled") -> tuple[CostModel, dict]:
    """The served cost model (see module doc) and the fit's errors and terms."""
    from scipy.optimize import lsq_linear

    from engine.costfit import hat

    rows = [s for s in samples["steps"] if s["gen_requests"] > 0]
    if not rows:
        raise ValueError("no decode steps were logged (is --enable-logging-iteration-details on?)")
    groups: dict[tuple[int, int, int], list[float]] = {}
    for s in rows:
        key = (int(s["k"]), int(s["gen_requests"]), int(s["gen_tokens"] + s["ctx_tokens"]))
        groups.setdefault(key, []).append(1e-3 * s["elapsed_ms"])
    keys = sorted(groups)
    k = np.array([g[0] for g in keys], float)
    r = np.array([g[1] for g in keys], float)
    m = np.array([g[2] for g in keys], float)
    t = np.array([np.median(groups[g]) for g in keys])
    w = np.sqrt([len(groups[g]) for g in keys])
    kmax = float(max(s["k"] for s in rows))
    bs_p, m_p = np.array(_probes(r)), np.array(_probes(m))
    cols = [np.ones((t.size, 1)), rising(hat(r, bs_p)[:, 1:]), rising(hat(m, m_p)[:, 1:]),
            rising((k / kmax)[:, None] * hat(r, bs_p))]  # fmt: skip
    a = np.hstack(cols) / t[:, None] * w[:, None]
    inc = np.clip(lsq_linear(a, w, bounds=(0.0, np.inf), method="bvls").x, 0.0, None)
    rel = (a @ inc) / w - 1.0
    na, nm = bs_p.size - 1, m_p.size - 1
    spans = ((1, 1 + na), (1 + na, 1 + na + nm), (1 + na + nm, inc.size))  # α, θ, d
    sol = np.concatenate([inc[:1], *(np.cumsum(inc[i:j]) for i, j in spans)])
    gaps = [b["gap_ms"] for b in samples["bursts"] if b["gap_ms"] is not None]
    gap_s = max(float(np.median(gaps)), 0.0) / 1e3 if gaps else 0.0
    draft = Curve(tuple(bs_p.tolist()), tuple(sol[1 + na + nm :].tolist()))
    cost = CostModel.additive(
        float(sol[0]) + gap_s, bs_p.tolist(), [0.0, *sol[1 : 1 + na].tolist()], m_p.tolist(),
        [0.0, *sol[1 + na : 1 + na + nm].tolist()], draft=draft, drafter="autoregressive",
        draft_positions=int(kmax), prefill=_prefill(samples), prefill_fused=True,
        max_batch_tokens=int(samples.get("max_num_batched_tokens", 0)), source=source,
    )  # fmt: skip
    errors = {"rms_rel_error": float(np.sqrt(np.average(rel**2, weights=w**2))),
              "max_rel_error": float(np.abs(rel).max()), "points": int(t.size),
              "steps": len(rows), "bias_logged_s": float(sol[0]), "step_gap_s": gap_s}  # fmt: skip
    return cost, errors


def rising(h: np.ndarray) -> np.ndarray:
    """Columns for a curve through hat weights ``h`` ``[points, probes]`` written as its
    non-negative increments (probe value j = Σ_{i ≤ j} increment i): a fit with non-negative
    unknowns is then non-decreasing. Noisy medians (a 2-core machine) otherwise give a zig-zag
    curve, which the cost model's monotone repair lifts to its peaks and so prices every step at
    the noise's highest point (measured: 2.0× the live TPOT at light load)."""
    return np.cumsum(h[:, ::-1], axis=1)[:, ::-1]


def _prefill(samples: dict) -> Curve:
    """Median seconds of the steps that only prefill, by chunk tokens (bins of powers of 2)."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for s in samples["steps"]:
        if s["gen_requests"] == 0 and s["ctx_tokens"] > 0:
            b = int(2 ** round(np.log2(s["ctx_tokens"])))
            bins.setdefault(b, []).append((float(s["ctx_tokens"]), 1e-3 * s["elapsed_ms"]))
    if not bins:
        return Curve((0.0,), (0.0,))
    xs = [float(np.median([x for x, _ in bins[b]])) for b in sorted(bins)]
    ys = [float(np.median([y for _, y in bins[b]])) for b in sorted(bins)]
    return Curve(tuple(xs), tuple(ys))


def document(samples: dict, cost: CostModel, errors: dict, meta: dict,
             cfg: ServedProfileConfig) -> dict:  # fmt: skip
    """The profile YAML: the served fit, its errors, provenance, envelope and every sample."""
    from profiles.store import cost_to_dict

    doc = cost_to_dict(cost)
    dec = [s for s in samples["steps"] if s["gen_requests"] > 0]
    pre = [s["ctx_tokens"] for s in samples["steps"] if s["ctx_tokens"] > 0]
    ctx = [min(cfg.prompt_tokens), max(cfg.prompt_tokens) + cfg.output_tokens]
    doc["metadata"] = {
        **meta,
        "config": asdict(cfg),
        "measured": "the served engine's own per-step log (vllm serve "
        "--enable-logging-iteration-details, closed-loop bursts over HTTP); fit T = bias + "
        "α(R) + θ(M) + (K/K_max)·d(R) on per-(K, R, M) medians, plus the measured gap between "
        "logged steps",
        "fit": {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in errors.items()},
        "envelope": {
            "requests": [min(s["gen_requests"] for s in dec), max(s["gen_requests"] for s in dec)],
            "batch_tokens": [
                min(s["gen_tokens"] + s["ctx_tokens"] for s in dec),
                max(s["gen_tokens"] + s["ctx_tokens"] for s in dec),
            ],
            "speculative_tokens": [min(cfg.ks), max(cfg.ks)],
            "context_tokens": ctx,
            "prefill_tokens": [min(pre), max(pre)] if pre else None,
            "engine_max_context": cfg.max_model_len,
        },  # fmt: skip
        "wall_s": round(samples["wall_s"], 1),
        "servers": samples["servers"],
        "bursts": samples["bursts"],
        "steps": [
            {k: s[k] for k in ("k", "burst", *vllmbench.STEP_FIELDS[1:])} for s in samples["steps"]
        ],  # fmt: skip
    }
    return doc


def profile(engine_spec: str, cfg: ServedProfileConfig, meta: dict, workdir: Path, tick=None):
    """Measure the served vLLM for ``engine_spec``; returns the profile document."""
    import datetime
    import tempfile

    from engine import provenance, vllm, vllmcost

    target, draft = vllmcost.parse_engine(engine_spec)
    if not draft:
        raise ValueError("the served profile measures speculation: vllm:TARGET,draft=DIR")
    with tempfile.TemporaryDirectory(prefix="spectune-hf-") as scratch:
        tdir = vllmcost.resolve_model(target, scratch)
        ddir = vllmcost.resolve_model(draft, scratch)
        load_before = provenance.load_average()
        samples = measure(tdir, ddir, cfg, workdir, tick)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    source = (f"measured: vLLM {vllm.version()} served ({engine_spec.removeprefix('vllm:')}) on "
              f"cpu, {date[:10]}, commit {provenance.git_commit()[:12]}; step-log fit")  # fmt: skip
    samples["max_num_batched_tokens"] = cfg.max_num_batched_tokens
    cost, errors = fit(samples, source)
    meta = {**meta, "vllm": vllm.version(), "date": date, "commit": provenance.git_commit(),
            "target": target, "draft": draft, "engine": engine_spec, "served": True,
            "load_average": {"before": load_before, "after": provenance.load_average()},
            "cpu": provenance._cpu()}  # fmt: skip
    return document(samples, cost, errors, meta, cfg)
