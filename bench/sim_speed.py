"""Simulator speed: the full Azure 2023 conversation trace replayed at a light and a saturated load.

Runs every (load, policy) on the reference step path and on the compiled one
(``simulator/compiled.py``) side by side in one run, checks the two give identical summaries
(apart from ``wall``), and reports wall time, simulated decode steps per wall-second and
request-steps (Σ batch size over steps) per wall-second, with the compiled/reference ratio
(``--repeats N``: N runs per path, interleaved, median wall; every run's summary compared).
``--startup`` also times whole short runs (a fresh process, imports included, 1,000 requests) on
both paths; ``--compile-cost`` times the first compiled run on a machine (empty numba cache).
Pinned to one core (``os.sched_setaffinity``) when possible; ``--profile`` prints a cProfile
breakdown. ``--vidur SRC`` also runs Vidur (github.com/microsoft/vidur, a source checkout at SRC)
on the same requests at each load, in its own environment (``--vidur-python``, default
``$VIDUR_PYTHON``), through ``bench/vidur_driver.py`` — its sarathi scheduler at the same batch
cap and chunk, its measured a100 MLP profile of Llama-3-8B and a *synthetic* attention profile
(the checkout lacks the measured one; see the driver) — and reports per-request wall time
against spectune's; without ``--vidur`` that comparison is skipped, with a note.

    .venv/bin/python bench/sim_speed.py --startup        # full trace, dspark
    .venv/bin/python bench/sim_speed.py --limit 3000 --profile --paths compiled
    .venv/bin/python bench/sim_speed.py --vidur ../vidur --vidur-python ../vidur-venv/bin/python
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
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
# one short replay in a fresh process (imports, numba's cache load, 1,000 requests)
SHORT = """
import sys, time
t0 = time.perf_counter()
from policies import make_policy
from profiles.builtin import load_acceptance, load_cost
from simulator.run import simulate
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec, open_workload
reqs = open_workload(WorkloadSpec(sys.argv[1], limit=1000))
simulate(reqs, make_policy(sys.argv[2]), load_cost(sys.argv[3]), load_acceptance(sys.argv[4]),
         ServerConfig(max_concurrency=256), compiled=sys.argv[5] == "compiled")
print(time.perf_counter() - t0)
"""


def _short(args, spec: str, path: str, env: dict | None = None) -> float:
    """Seconds of one short replay in a fresh process (interpreter start excluded)."""
    cmd = [sys.executable, "-c", SHORT, args.trace, spec, args.cost, args.acceptance, path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--policies", default="dspark")
    ap.add_argument("--paths", default="reference,compiled")
    ap.add_argument("--cost", default="builtin:h100-8b")
    ap.add_argument("--acceptance", default="paper:qwen3-8b-dspark")
    ap.add_argument("--repeats", type=int, default=1, help="runs per path (interleaved; median)")
    ap.add_argument("--startup", action="store_true", help="time short runs in fresh processes")
    ap.add_argument("--compile-cost", action="store_true", help="time a run with no numba cache")
    ap.add_argument("--profile", action="store_true", help="print a cProfile breakdown")
    ap.add_argument("--vidur", default=None, help="a Vidur source checkout: run it side by side")
    ap.add_argument("--vidur-python", default=os.environ.get("VIDUR_PYTHON", sys.executable),
                    help="the Python of Vidur's environment (default $VIDUR_PYTHON)")  # fmt: skip
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cost, acceptance = load_cost(args.cost), load_acceptance(args.acceptance)
    paths = args.paths.split(",")
    print(f"trace {args.trace} (limit {args.limit}); profile {args.cost}; "
          f"acceptance {args.acceptance}; one core; load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    if "compiled" in paths:  # numba's on-disk cache is warm before anything is timed
        warm = list(open_workload(WorkloadSpec(args.trace, limit=50)))
        for spec in args.policies.split(","):
            simulate(warm, make_policy(spec), cost, acceptance, ServerConfig(max_concurrency=8))
    print("| load | policy | path | decode steps | mean batch | wall s | steps/s | "
          "request-steps/s | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    last, vidur = {}, {}
    for load, (scale, cap) in LOADS.items():
        requests = list(open_workload(WorkloadSpec(args.trace, rate_scale=scale, limit=args.limit)))
        for spec in args.policies.split(","):
            seen, walls, base = {}, {p: [] for p in paths}, None
            for _ in range(args.repeats):  # interleaved, so drifting load hits both paths alike
                for path in paths:
                    prof = cProfile.Profile() if args.profile else None
                    if prof:
                        prof.enable()
                    s = simulate(requests, make_policy(spec), cost, acceptance,
                                 ServerConfig(max_concurrency=cap),
                                 compiled=path == "compiled").summary  # fmt: skip
                    if prof:
                        prof.disable()
                        out = io.StringIO()
                        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
                        print("\n".join(out.getvalue().splitlines()[:30]))
                    walls[path].append(s.pop("wall")["wall_s"])
                    seen.setdefault(path, set()).add(json.dumps(s, sort_keys=True))
            for path in paths:
                wall = statistics.median(walls[path])
                base = base or wall
                req_steps = s["mean_batch_size"] * s["decode_steps"]
                steps = s["decode_steps"]
                print(f"| {load} (x{scale:g}, cap {cap}) | {spec} | {path} | {steps} | "
                      f"{s['mean_batch_size']:.1f} | {wall:.2f} | {steps / wall:,.0f} | "
                      f"{req_steps / wall:,.0f} | {base / wall:.2f}x |")  # fmt: skip
            same = len(set().union(*seen.values())) == 1
            print(f"|  |  | identical summaries (apart from wall): {'yes' if same else 'NO'} |")
            last[(load, spec)] = wall / len(requests)  # the last path's seconds per request
        vidur[load] = _vidur(args, requests, cap) if args.vidur else None
    _versus_vidur(args, last, vidur)
    if args.startup:
        _startup(args, paths)
    if args.compile_cost:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "NUMBA_CACHE_DIR": tmp}
            t0 = time.perf_counter()
            first = _short(args, args.policies.split(",")[0], "compiled", env)
            total = time.perf_counter() - t0
            print(f"first compiled short run with an empty numba cache: {first:.1f} s "
                  f"(process {total:.1f} s); later runs load the cache")  # fmt: skip


def _vidur(args, requests: list, cap: int) -> dict:
    """Vidur's wall time on ``requests`` (``bench/vidur_driver.py`` in its environment)."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("arrived_at,num_prefill_tokens,num_decode_tokens\n")
        for r in requests:
            f.write(f"{r.arrival_s},{r.prompt_tokens},{r.output_tokens}\n")
    driver = str(ROOT / "bench" / "vidur_driver.py")
    chunk = str(ServerConfig().max_prefill_tokens)
    cmd = [args.vidur_python, driver, str(Path(args.vidur).resolve()), f.name, str(cap), chunk]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _versus_vidur(args, last: dict, vidur: dict) -> None:
    if not args.vidur:
        print("\nVidur: skipped (pass --vidur SRC and --vidur-python PY to run it on the same "
              "requests in this run)")  # fmt: skip
        return
    print("\n| load | Vidur (sarathi; a100 MLP measured, attention synthetic) s | per request "
          "ms | spectune policy | per request ms | spectune faster per request |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for (load, spec), mine in last.items():
        v = vidur[load]
        theirs = v["wall_s"] / v["requests"]
        print(f"| {load} | {v['wall_s']:.2f} | {theirs * 1e3:.3f} | {spec} | {mine * 1e3:.3f} | "
              f"{theirs / mine:.1f}x |")  # fmt: skip


def _startup(args, paths: list[str]) -> None:
    spec = args.policies.split(",")[0]
    times = {p: [] for p in paths}
    for _ in range(3):  # interleaved, so drifting machine load hits both paths alike
        for path in paths:
            times[path].append(_short(args, spec, path))
    print(f"\nshort run (1,000 requests, light, {spec}, fresh process, imports included; "
          "3 repeats interleaved):")  # fmt: skip
    for path, ts in times.items():
        each = ", ".join(f"{t:.2f}" for t in ts)
        print(f"- {path}: median {statistics.median(ts):.2f} s ({each})")


if __name__ == "__main__":
    main()
