"""Simulator speed: the full Azure 2023 conversation trace replayed at a light and a saturated load.

Reports wall time, simulated decode steps per wall-second and request-steps (Σ batch size over
steps) per wall-second, for each policy, side by side in one run, plus a cProfile breakdown of
where the time goes (``--profile``). Pinned to one core (``os.sched_setaffinity``) when possible.

    .venv/bin/python bench/sim_speed.py                  # full trace, dspark and fixed:k=1
    .venv/bin/python bench/sim_speed.py --limit 3000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies import make_policy  # noqa: E402
from profiles.builtin import load_acceptance, load_cost  # noqa: E402
from simulator.run import simulate  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402
from simulator.workload import WorkloadSpec, open_workload  # noqa: E402

TRACE = ROOT.parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
# light: the trace as recorded; saturated: 16x compressed with the batch capped at 256
LOADS = {"light": (1.0, 256), "saturated": (16.0, 256)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--policies", default="dspark,fixed:k=1")
    ap.add_argument("--cost", default="builtin:h100-8b")
    ap.add_argument("--acceptance", default="paper:qwen3-8b-dspark")
    ap.add_argument("--profile", action="store_true", help="print a cProfile breakdown")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cost, acceptance = load_cost(args.cost), load_acceptance(args.acceptance)
    print(f"trace {args.trace} (limit {args.limit}); profile {args.cost}; "
          f"acceptance {args.acceptance}; one core")  # fmt: skip
    print("| load | policy | requests | decode steps | mean batch | wall s | steps/s | "
          "request-steps/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for load, (scale, cap) in LOADS.items():
        requests = list(open_workload(WorkloadSpec(args.trace, rate_scale=scale, limit=args.limit)))
        for spec in args.policies.split(","):
            config = ServerConfig(max_concurrency=cap)
            prof = cProfile.Profile() if args.profile else None
            if prof:
                prof.enable()
            s = simulate(requests, make_policy(spec), cost, acceptance, config).summary
            if prof:
                prof.disable()
            req_steps = s["mean_batch_size"] * s["decode_steps"]
            wall = s["wall"]["wall_s"]
            rate, req_rate = s["decode_steps"] / wall, req_steps / wall
            print(f"| {load} (x{scale:g}, cap {cap}) | {spec} | {s['requests_completed']} | "
                  f"{s['decode_steps']} | {s['mean_batch_size']:.1f} | {wall:.2f} | "
                  f"{rate:,.0f} | {req_rate:,.0f} |")  # fmt: skip
            if prof:
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
                print("\n".join(out.getvalue().splitlines()[:30]))


if __name__ == "__main__":
    main()
