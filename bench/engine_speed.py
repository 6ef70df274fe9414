"""Engine speed: speculative vs plain autoregressive decoding of the same target, side by side.

    .venv/bin/python bench/engine_speed.py                 # all drafters, batch 1 and 8, code
    .venv/bin/python bench/engine_speed.py --drafters dspark --batches 1 --repeats 5

For each batch size, the same held-out ``code`` prompts decode ``--new-tokens`` tokens each at
temperature 1, plain (target only) and speculative (each drafter, fixed γ), interleaved run by run
so machine load hits both alike; medians over ``--repeats``. Reported per drafter:

- measured speedup = speculative tokens/s ÷ plain tokens/s (same prompts, same run);
- predicted speedup = τ · T_target(1) / (T_draft + T_target(1+γ)), from the measured τ, the mean
  plain step time (T_target(1), one verify call per step) and the mean draft and verify call
  times of the speculative steps; the gap between the two is time outside those calls
  (policy, the decoding loop's bookkeeping) — shown as ``other ms/step``.

Also prints the raw target forward times at 1 and 1+γ tokens and the drafter's propose time
(no sampling or bookkeeping), which is how the model sizes were chosen (model cards).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from engine import checkpoint
from engine.cache import Layout
from engine.data import Corpus
from engine.decode import generate
from engine.engine import Engine
from policies import make_policy


def forward_ms(target, tokens: int, context: int = 160, repeats: int = 200) -> float:
    """Median ms of one bare target forward of ``tokens`` tokens at a ``context``-long cache."""
    cache = target.new_cache(1, 512)
    target(torch.arange(context) % 200, Layout.build([0], [0], [context], "cpu"), cache)
    lay = Layout.build([0], [context], [tokens], "cpu")
    toks = torch.arange(tokens) % 200
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            target(toks, lay, cache)
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def run_pair(target, drafter, prompts, new_tokens, seed) -> tuple[dict, dict]:
    """One plain and one speculative run over ``prompts`` (fresh engines)."""
    out = []
    for d in (None, drafter):
        eng = Engine(target, d, slots=len(prompts), temperature=1.0)
        policy = None if d is None else make_policy(f"fixed:k={d.cfg.gamma}")
        tr = generate(eng, prompts, new_tokens, policy=policy, seed=seed)
        out.append(
            {
                "tps": tr.tokens_per_s,
                "tau": tr.mean_accepted_len,
                "steps": tr.steps,
                "step_ms": 1e3 * tr.decode_s / tr.steps,
                "draft_ms": 1e3 * tr.draft_s / tr.steps,
                "verify_ms": 1e3 * tr.verify_s / tr.steps,
                "policy_ms": 1e3 * tr.policy_s / tr.steps,
            }
        )
    return out[0], out[1]


def bench(args) -> dict:
    torch.set_num_threads(args.threads)
    target = checkpoint.load_target("target")
    corpus = Corpus.load(args.domain, "heldout")
    results = {"forward_ms": {}, "rows": []}
    for q in (1, 8):
        results["forward_ms"][q] = forward_ms(target, q)
    for name in args.drafters.split(","):
        drafter = checkpoint.load_drafter(name, target)
        for batch in map(int, args.batches.split(",")):
            prompts = [list(p) for p in corpus.prompts(batch, args.prompt_len, seed=args.seed)]
            plain, spec = [], []
            for rep in range(args.repeats):
                p, s = run_pair(target, drafter, prompts, args.new_tokens, args.seed + rep)
                plain.append(p)
                spec.append(s)
            med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
            tau = med(spec, "tau")
            t1 = med(plain, "verify_ms")
            td, tv = med(spec, "draft_ms"), med(spec, "verify_ms")
            row = {
                "drafter": name,
                "batch": batch,
                "gamma": drafter.cfg.gamma,
                "plain_tps": med(plain, "tps"),
                "spec_tps": med(spec, "tps"),
                "speedup": statistics.median(
                    s["tps"] / p["tps"] for p, s in zip(plain, spec, strict=True)
                ),
                "tau": tau,
                "t_target_1_ms": t1,
                "t_draft_ms": td,
                "t_verify_ms": tv,
                "predicted": tau * t1 / (td + tv),
                "plain_step_ms": med(plain, "step_ms"),
                "spec_step_ms": med(spec, "step_ms"),
                "spec_other_ms": med(spec, "step_ms") - td - tv,
                "plain_other_ms": med(plain, "step_ms") - t1,
            }
            results["rows"].append(row)
            if not args.json:
                print_row(row)
    return results


def print_row(r: dict) -> None:
    print(
        f"{r['drafter']:<7} batch {r['batch']}: plain {r['plain_tps']:.1f} tok/s, "
        f"speculative {r['spec_tps']:.1f} tok/s, speedup {r['speedup']:.2f}x "
        f"(predicted {r['predicted']:.2f}x); tau {r['tau']:.2f}; ms/step: target(1) "
        f"{r['t_target_1_ms']:.2f}, draft {r['t_draft_ms']:.2f}, verify {r['t_verify_ms']:.2f}, "
        f"other {r['spec_other_ms']:.2f} (plain other {r['plain_other_ms']:.2f})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drafters", default="dspark,dflash,ar,mtp1")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--domain", default="code")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = bench(args)
    fw = res["forward_ms"]
    if args.json:
        print(json.dumps(res))
    else:
        print(f"bare target forward: {fw[1]:.2f} ms (1 token), {fw[8]:.2f} ms (8 tokens)")
        print(f"[{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
