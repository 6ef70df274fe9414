"""Which steps of the demo's step 1 a cost profile prices outside what it measured (issue #13).

    nice -n 19 python bench/envelope_audit.py [--profile SPEC] [--num-requests N] [--json]

Runs the demo's step 1 (``runner/compare.py``: the capacity run, then every default policy at
loads 0.5 and 0.9 of capacity on ``builtin:azure-conv-like`` fitted to the engine, the demo's
default server, seed 0) on the reference step path, and counts every priced step by the terms
it reads beyond the profile's probes (``CostModel.outside_terms``): ``kv_low`` / ``kv_high``
(attended KV below / above the context curve), ``kv_base`` (the measured base ``R × context_base``
beyond it), ``requests`` (more requests than the draft/alpha probes), ``batch_tokens``,
``prefill``. Prints the totals, the share of steps outside, each run's
``extrapolated_step_share`` and the requests and KV tokens of the steps outside.
Deterministic (no timing): it only reads the profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.builtin import DEFAULT_ACCEPTANCE, load_acceptance, load_cost  # noqa: E402
from profiles.cost import CostModel  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402

# The demo's default policies (runner/cli/commands/demo.py POLICIES; its CLI is not imported here)
POLICIES = ("none", "fixed:k=1", "fixed:k=5", "dspark", "dspark_lagged")


@contextlib.contextmanager
def counting(tally: Counter, shapes: list):
    """Count each priced step by the terms it reads outside (patches ``CostModel.outside``,
    which the reference step path calls once per priced step)."""
    plain = CostModel.outside

    def outside(self, requests, tokens, kv_tokens=0, prefill_tokens=0):
        terms = self.outside_terms(requests, tokens, kv_tokens, prefill_tokens)
        tally["steps"] += 1
        for t in terms:
            tally[t] += 1
        if terms:
            tally["outside"] += 1
            shapes.append((requests, kv_tokens))
        hit = plain(self, requests, tokens, kv_tokens, prefill_tokens)
        assert hit == bool(terms), (requests, tokens, kv_tokens, prefill_tokens)
        return hit

    CostModel.outside = outside
    try:
        yield
    finally:
        CostModel.outside = plain


def audit(args: argparse.Namespace) -> dict:
    from policies import make_policy
    from simulator.capacity import saturated_rate
    from simulator.run import simulate
    from simulator.workload import DEFAULT_WORKLOAD, WorkloadSpec, fit_default, open_workload

    cost, acceptance = load_cost(args.profile), load_acceptance(DEFAULT_ACCEPTANCE)
    server = ServerConfig(gamma=acceptance.gamma)  # the demo's defaults (the CLI's are the same)

    def spec(rate: float) -> WorkloadSpec:
        return fit_default(WorkloadSpec(DEFAULT_WORKLOAD, request_rate=rate, seed=0,
                                        num_requests=args.num_requests), cost)  # fmt: skip

    tally: Counter = Counter()
    shapes: list[tuple[int, int]] = []
    runs = []
    with counting(tally, shapes):
        capacity = saturated_rate(open_workload(spec(float("inf"))), cost, acceptance, server, 0)
        for load in (0.5, 0.9):
            workload = open_workload(spec(load * capacity))
            for name in POLICIES:
                s = simulate(workload, make_policy(name), cost, acceptance, server, seed=0,
                             compiled=False).summary  # fmt: skip
                runs.append({"load": load, "policy": name,
                             "extrapolated_step_share": round(s["extrapolated_step_share"], 4),
                             "throughput_tok_s": round(s["throughput_tok_s"], 1)})  # fmt: skip
    r = np.array([x[0] for x in shapes]) if shapes else np.zeros(0)
    kv = np.array([x[1] for x in shapes]) if shapes else np.zeros(0)
    env = cost.envelope()
    return {
        "profile": args.profile,
        "source": cost.source,
        "envelope": env,
        "workload": workload.label,
        "steps": tally["steps"],
        "outside": tally["outside"],
        "outside_share": round(tally["outside"] / max(tally["steps"], 1), 4),
        "by_term": {
            k: tally[k]
            for k in ("kv_low", "kv_high", "kv_base", "requests", "batch_tokens", "prefill")
        },  # fmt: skip
        "outside_requests_p50_max": [int(np.median(r)), int(r.max())] if r.size else None,
        "outside_kv_min_max": [int(kv.min()), int(kv.max())] if kv.size else None,
        "runs": runs,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="builtin:cpu-tiny-additive")
    p.add_argument("--num-requests", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = audit(args)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"profile   {out['profile']}: {out['source']}")
    print(f"envelope  {out['envelope']}")
    print(f"workload  {out['workload']}")
    print(f"steps outside the envelope: {out['outside']:,} of {out['steps']:,} "
          f"({out['outside_share']:.1%}); by term (a step may count for several):")  # fmt: skip
    for k, v in out["by_term"].items():
        print(f"  {k:<13}{v:>10,}")
    print(f"requests of the steps outside (median, max): {out['outside_requests_p50_max']}; "
          f"their KV tokens (min, max): {out['outside_kv_min_max']}")  # fmt: skip
    for r in out["runs"]:
        print(
            f"  load {r['load']:g} {r['policy']:<14} extrapolated_step_share "
            f"{r['extrapolated_step_share']:.2f}  ({r['throughput_tok_s']:.0f} tok/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
