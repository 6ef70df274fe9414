"""Engine speed: speculative vs plain autoregressive decoding of the same target, side by side.

    .venv/bin/python bench/engine_speed.py                 # all drafters, batch 1 and 8, code
    .venv/bin/python bench/engine_speed.py --drafters dspark --batches 1 --repeats 5
    .venv/bin/python bench/engine_speed.py --drafters dspark --policy dspark   # Algorithm 1

The same ``--prompts`` held-out prompts of ``--domain`` decode ``--new-tokens`` tokens each at
temperature 1, plain (target only) and speculative (each drafter; fixed γ unless ``--policy``),
in groups of the batch size, interleaved run by run so machine load hits both alike; medians over
``--repeats``. Per drafter and batch size:

- measured speedup = speculative tokens/s ÷ plain tokens/s (end to end, same prompts, same rep);
- predicted speedup = τ · T_target(1) / (T_draft + T_target(1+γ)) from the measured τ (tokens per
  request-step, bonus included), the mean plain verify call per step (T_target(1)) and the mean
  draft and verify calls per speculative step;
- the gap, factored: ``trunc`` (tokens kept per step ÷ τ·requests: the last step of a request
  overshoots ``--new-tokens``), ``occupancy`` (mean requests per speculative step ÷ per plain step:
  with a static batch, requests finish at different steps and the tail runs part-empty), ``loop``
  (draft+verify ÷ whole step: policy and bookkeeping) and ``plain loop`` (the same for plain).
  Their product times the prediction is the measured speedup, exactly;
- steady-state speedup: tokens/s over the steps where the batch was full, both modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from engine import checkpoint
from engine.cache import Layout
from engine.data import Corpus
from engine.decode import generate, measure_cost
from engine.engine import Engine
from policies import make_policy


def forward_ms(target, tokens: int, context: int = 160, repeats: int = 200) -> float:
    """Median ms of one bare target forward of ``tokens`` tokens at a ``context``-long cache."""
    cache = target.new_cache(1, 512)
    with torch.inference_mode():
        target(torch.arange(context) % 200, Layout.build([0], [0], [context], "cpu"), cache)
        lay = Layout.build([0], [context], [tokens], "cpu")
        toks = torch.arange(tokens) % 200
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            target(toks, lay, cache)
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def run(target, drafter, groups, batch, new_tokens, seed, policy, cost) -> dict:
    """Decode every group of prompts with fresh engines; aggregate the traces."""
    agg = {k: 0.0 for k in ("tokens", "time", "steps", "draft", "verify", "req_steps", "acc")}
    agg.update(full_tokens=0.0, full_time=0.0)
    for group in groups:
        eng = Engine(target, drafter, slots=batch, temperature=1.0)
        tr = generate(eng, group, new_tokens, policy=policy, cost=cost, seed=seed)
        agg["tokens"] += tr.new_tokens
        agg["time"] += tr.decode_s
        agg["steps"] += tr.steps
        agg["draft"] += tr.draft_s
        agg["verify"] += tr.verify_s
        agg["req_steps"] += sum(tr.step_requests)
        agg["acc"] += sum(tr.accepted) + len(tr.accepted)
        full = np.array(tr.step_requests) == len(group)
        agg["full_tokens"] += float(np.array(tr.step_tokens)[full].sum())
        agg["full_time"] += float(np.array(tr.step_s)[full].sum())
    return agg


def bench_one(target, drafter, prompts, batch, args) -> dict:
    groups = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    policy, cost = make_policy(f"fixed:k={drafter.cfg.gamma}"), None
    if args.policy != "fixed":
        policy = make_policy(args.policy)
        if "cost" in policy.reads:
            cost = measure_cost(Engine(target, drafter, slots=batch), requests=batch)
    reps = []
    for rep in range(args.repeats):
        p = run(target, None, groups, batch, args.new_tokens, args.seed + rep, None, None)
        s = run(target, drafter, groups, batch, args.new_tokens, args.seed + rep, policy, cost)
        reps.append((p, s))
    return summarize(reps, drafter, batch, policy)


def summarize(reps, drafter, batch, policy) -> dict:
    rows = []
    for p, s in reps:
        tau = s["acc"] / s["req_steps"]
        t1 = p["verify"] / p["steps"]
        td, tv = s["draft"] / s["steps"], s["verify"] / s["steps"]
        rows.append(
            {
                "plain_tps": p["tokens"] / p["time"],
                "spec_tps": s["tokens"] / s["time"],
                "speedup": (s["tokens"] / s["time"]) / (p["tokens"] / p["time"]),
                "steady_speedup": (s["full_tokens"] / s["full_time"])
                / (p["full_tokens"] / p["full_time"]),
                "tau": tau,
                "t_target_1_ms": 1e3 * t1,
                "t_draft_ms": 1e3 * td,
                "t_verify_ms": 1e3 * tv,
                "predicted": tau * t1 / (td + tv),
                "trunc": (s["tokens"] / s["steps"]) / (tau * s["req_steps"] / s["steps"]),
                "occupancy": (s["req_steps"] / s["steps"]) / (p["req_steps"] / p["steps"]),
                "loop": (s["draft"] + s["verify"]) / s["time"],
                "plain_loop": p["verify"] / p["time"],
                "spec_other_ms": 1e3 * (s["time"] - s["draft"] - s["verify"]) / s["steps"],
            }
        )
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out.update(drafter=drafter.cfg.kind, batch=batch, gamma=drafter.cfg.gamma, policy=policy.spec)
    return out


def print_row(r: dict) -> None:
    print(
        f"{r['drafter']:<7} batch {r['batch']} {r['policy']}: plain {r['plain_tps']:.1f} tok/s, "
        f"speculative {r['spec_tps']:.1f} tok/s, speedup {r['speedup']:.2f}x "
        f"(predicted {r['predicted']:.2f}x; steady state {r['steady_speedup']:.2f}x); "
        f"tau {r['tau']:.2f}; ms/step: target(1) {r['t_target_1_ms']:.2f}, draft "
        f"{r['t_draft_ms']:.2f}, verify {r['t_verify_ms']:.2f}, other {r['spec_other_ms']:.2f}; "
        f"gap factors: trunc {r['trunc']:.3f}, occupancy {r['occupancy']:.3f}, "
        f"loop {r['loop']:.3f}, plain loop {r['plain_loop']:.3f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drafters", default="dspark,dflash,ar,mtp1")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--policy", default="fixed", help="fixed (k=γ) or a policy spec")
    ap.add_argument("--domain", default="code")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    target = checkpoint.load_target("target")
    corpus = Corpus.load(args.domain, "heldout")
    prompts = [list(p) for p in corpus.prompts(args.prompts, args.prompt_len, seed=args.seed)]
    res = {"forward_ms": {q: forward_ms(target, q) for q in (1, 8)}, "rows": []}
    for name in args.drafters.split(","):
        drafter = checkpoint.load_drafter(name, target)
        for batch in map(int, args.batches.split(",")):
            row = bench_one(target, drafter, prompts, batch, args)
            res["rows"].append(row)
            if not args.json:
                print_row(row)
    fw = res["forward_ms"]
    if args.json:
        print(json.dumps(res))
    else:
        print(f"bare target forward: {fw[1]:.2f} ms (1 token), {fw[8]:.2f} ms (8 tokens)")
        print(f"[{time.perf_counter() - t0:.0f} s, {args.threads} thread(s)]")


if __name__ == "__main__":
    main()
