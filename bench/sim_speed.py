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

``--baseline DIR`` also runs an older spectune checkout (e.g. a worktree of the commit issue #17
was filed at, 788fcf6) on the same trace and loads, through its own ``simulate`` API, in a
subprocess with ``PYTHONPATH=DIR`` (the same interpreter, so the same numpy and SimPy), one run
per repeat interleaved with this checkout's paths; rows then also give each path's speed over
the baseline's (decode steps/s and request-steps/s; the two differ when the baseline's planner
ran a different number of steps), and ``--startup`` times the baseline's short run too.

    .venv/bin/python bench/sim_speed.py --startup        # full trace, dspark
    .venv/bin/python bench/sim_speed.py --limit 3000 --profile --paths compiled
    .venv/bin/python bench/sim_speed.py --vidur ../vidur --vidur-python ../vidur-venv/bin/python
    .venv/bin/python bench/sim_speed.py --baseline ../base17 --repeats 3 --startup
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
path = {} if sys.argv[5] == "baseline" else {"compiled": sys.argv[5] == "compiled"}
simulate(reqs, make_policy(sys.argv[2]), load_cost(sys.argv[3]), load_acceptance(sys.argv[4]),
         ServerConfig(max_concurrency=256), **path)
print(time.perf_counter() - t0)
"""
# one full replay by an older checkout (--baseline), through the API it had then
BASELINE = """
import json, sys
import simulator
from policies import make_policy
from profiles.builtin import load_acceptance, load_cost
from simulator.run import simulate
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec, open_workload
trace, scale, limit, cap, spec, cost, acc = sys.argv[1:8]
limit = int(limit) if limit != "None" else None
reqs = list(open_workload(WorkloadSpec(trace, rate_scale=float(scale), limit=limit)))
s = simulate(reqs, make_policy(spec), load_cost(cost), load_acceptance(acc),
             ServerConfig(max_concurrency=int(cap))).summary
s["requests"], s["code"] = len(reqs), simulator.__file__
print(json.dumps(s))
"""


def _short(args, spec: str, path: str, env: dict | None = None) -> float:
    """Seconds of one short replay in a fresh process (interpreter start excluded)."""
    cmd = [sys.executable, "-c", SHORT, args.trace, spec, args.cost, args.acceptance, path]
    cwd = ROOT
    if path == "baseline":
        env, cwd = _baseline_env(args), args.baseline
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=cwd)
    return float(out.stdout.split()[-1])


def _baseline_env(args) -> dict:
    """The environment of a baseline subprocess: its checkout first on the path, only it."""
    return {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}


def _baseline(args, scale: float, cap: int, spec: str) -> dict:
    """One full replay by the ``--baseline`` checkout: its summary (``wall`` included)."""
    cmd = [sys.executable, "-c", BASELINE, args.trace, str(scale), str(args.limit), str(cap),
           spec, args.cost, args.acceptance]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=_baseline_env(args),
                         cwd=args.baseline)  # fmt: skip
    if out.returncode:
        sys.exit(f"baseline {args.baseline} failed: {out.stderr.strip().splitlines()[-1]}")
    s = json.loads(out.stdout.strip().splitlines()[-1])
    if not s.pop("code").startswith(str(Path(args.baseline).resolve())):
        sys.exit(f"baseline run did not import {args.baseline}'s code")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--policies", default="dspark")
    ap.add_argument("--paths", default="reference,compiled")
    ap.add_argument("--loads", default=",".join(LOADS), help="of: " + ", ".join(LOADS))
    ap.add_argument("--cost", default="builtin:h100-8b")
    ap.add_argument("--acceptance", default="paper:qwen3-8b-dspark")
    ap.add_argument("--repeats", type=int, default=1, help="runs per path (interleaved; median)")
    ap.add_argument("--startup", action="store_true", help="time short runs in fresh processes")
    ap.add_argument("--compile-cost", action="store_true", help="time a run with no numba cache")
    ap.add_argument("--profile", action="store_true", help="print a cProfile breakdown")
    ap.add_argument("--vidur", default=None, help="a Vidur source checkout: run it side by side")
    ap.add_argument("--vidur-python", default=os.environ.get("VIDUR_PYTHON", sys.executable),
                    help="the Python of Vidur's environment (default $VIDUR_PYTHON)")  # fmt: skip
    ap.add_argument("--baseline", default=None,
                    help="an older spectune checkout, run side by side")  # fmt: skip
    args = ap.parse_args()
    if args.baseline and not (Path(args.baseline) / "simulator" / "run.py").is_file():
        print(f"--baseline {args.baseline}: not a spectune checkout (no simulator/run.py)",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    args.trace = str(Path(args.trace).resolve())
    if not set(args.loads.split(",")) <= set(LOADS):
        print(f"--loads {args.loads}: each must be one of {', '.join(LOADS)}", file=sys.stderr)
        sys.exit(2)
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
    if args.baseline:
        paths = ["baseline", *paths]
    print("| load | policy | path | decode steps | mean batch | wall s | steps/s | "
          "request-steps/s | ms per request | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    last, vidur = {}, {}
    for load in args.loads.split(","):
        scale, cap = LOADS[load]
        requests = list(open_workload(WorkloadSpec(args.trace, rate_scale=scale, limit=args.limit)))
        for spec in args.policies.split(","):
            seen, walls, summary = {}, {p: [] for p in paths}, {}
            for _ in range(args.repeats):  # interleaved, so drifting load hits every path alike
                for path in paths:
                    if path == "baseline":
                        s = _baseline(args, scale, cap, spec)
                        if s.pop("requests") != len(requests):
                            sys.exit("the baseline read a different number of requests")
                    else:
                        s = _run(args, requests, spec, cost, acceptance, cap, path)
                    walls[path].append(s.pop("wall")["wall_s"])
                    seen.setdefault(path, set()).add(json.dumps(s, sort_keys=True))
                    summary[path] = s
            _rows(f"{load} (x{scale:g}, cap {cap})", spec, paths, walls, summary, len(requests))
            ours = [p for p in paths if p != "baseline"]
            same = len(set().union(*(seen[p] for p in ours))) == 1
            print(f"|  |  | identical summaries (apart from wall), {' and '.join(ours)}: "
                  f"{'yes' if same else 'NO'} |")  # fmt: skip
            if "baseline" in paths:
                b, o = summary["baseline"], summary[ours[-1]]
                print(f"|  |  | baseline's runs identical to each other: "
                      f"{'yes' if len(seen['baseline']) == 1 else 'NO'}; same decode steps as "
                      f"this checkout: {'yes' if b['decode_steps'] == o['decode_steps'] else 'no'}"
                      f"; same requests and output tokens: "
                      f"{'yes' if _work(b) == _work(o) else 'no'}"
                      " |")  # fmt: skip
            last[(load, spec)] = statistics.median(walls[ours[-1]]) / len(requests)
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


def _run(args, requests: list, spec: str, cost, acceptance, cap: int, path: str) -> dict:
    """One replay on this checkout's ``path`` (reference or compiled): its summary."""
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    s = simulate(requests, make_policy(spec), cost, acceptance, ServerConfig(max_concurrency=cap),
                 compiled=path == "compiled").summary  # fmt: skip
    if prof:
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(14)
        print("\n".join(out.getvalue().splitlines()[:34]))
    return s


def _work(s: dict) -> tuple:
    return s["requests_completed"], s["output_tokens"]


def _rows(load: str, spec: str, paths: list, walls: dict, summary: dict, n: int) -> None:
    """One table row per path: medians, and speed-ups over the first path (the baseline's when
    there is one: decode steps/s and request-steps/s, which differ if its steps did)."""
    first = None
    for path in paths:
        s, wall = summary[path], statistics.median(walls[path])
        steps = s["decode_steps"]
        rates = (steps / wall, s["mean_batch_size"] * steps / wall)
        first = first or rates
        ups = " / ".join(f"{r / f:.2f}x" for r, f in zip(rates, first, strict=True))
        print(f"| {load} | {spec} | {path} | {steps} | {s['mean_batch_size']:.1f} | {wall:.2f} | "
              f"{rates[0]:,.0f} | {rates[1]:,.0f} | {wall / n * 1e3:.3f} | {ups} |")  # fmt: skip


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
