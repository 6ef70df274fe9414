"""Tuned DSpark vs static baselines vs the best-response oracle, per concurrency (issue #13).

    nice -n 10 python bench/tuning.py --setting h100 --out runs/tuning-h100.json
    nice -n 10 python bench/tuning.py --setting cpu --out runs/tuning-cpu.json

Closed loop (``runner/point.py``: N users always busy, steady-window metrics), max(64, 8·N)
requests per point, seed 0 (``--seed``), every policy on the same requests and acceptance draws:

- ``h100``: ``builtin:h100-8b`` (analytic roofline, not measured) + ``paper:qwen3-8b-dspark``
  (read from the paper), ``builtin:azure-conv-like``;
- ``cpu``: the CPU default (``builtin:cpu-tiny-additive`` measured + ``builtin:cpu-tiny-dspark``
  records), ``builtin:azure-conv-like`` clamped to fit the engine's 1,024-token context
  (prompts <= 768, outputs <= 256).

``--prefill``: ``colocated`` (chunked, 2,048 tokens per step, in the decode server's steps: fused
into the verify forward on h100, a forward of its own on the CPU engine, as each runs it) or
``disaggregated`` (decode-only instances; each request arrives after its prefill time with its
KV ready).

"Tuned" is the best per N over a grid of each DSpark policy's parameters (min_verify_len 0-2 ×
max_verify_len {0 (= γ), 3, 5}; ``--small``: min_verify_len 0-2 only); "best fixed" the best
of fixed:k=1..γ per N. The oracle is the best response (policies/oracle.py). Prints a markdown
table and the best tuned DSpark's margin over the best fixed:k per N; ``--out`` writes every point
(``--extra`` policies, e.g. twins, too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.builtin import load_acceptance, load_cost  # noqa: E402
from runner.point import PointTask, run_point  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402
from simulator.workload import (
    WorkloadSpec,  # noqa: E402
    fit_default,  # noqa: E402
)

SETTINGS = {
    "h100": ("builtin:h100-8b", "paper:qwen3-8b-dspark"),
    "cpu": ("builtin:cpu-tiny-additive", "builtin:cpu-tiny-dspark"),
}
LOADS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GRID = [f"min_verify_len={a},max_verify_len={b}"
        for a, b in itertools.product((0, 1, 2), (0, 3, 5))]  # fmt: skip


def _models(setting: str):
    profile, acceptance = SETTINGS[setting]
    return load_cost(profile), load_acceptance(acceptance)


def _point(job):
    setting, policy, n, prefill, seed = job
    cost, acc = _models(setting)
    spec = fit_default(WorkloadSpec("builtin:azure-conv-like"), cost)
    server = ServerConfig(gamma=acc.gamma, prefill=prefill)
    task = PointTask(policy, "concurrency", n, spec, server, max(64, 8 * n), seed)
    r = run_point(task, (cost, acc))
    keep = ("throughput_tok_s", "mean_verify_len", "mean_accepted_len", "extrapolated_steps")
    return {"policy": policy, "N": n, **{k: r[k] for k in keep}}


def policies(setting: str, gamma: int, small: bool = False) -> list[str]:
    """Every policy spec of a run (``small``: min_verify_len 0-2 only, no cap)."""
    grid = GRID[::3] if small else GRID
    out = [f"fixed:k={k}" for k in range(1, gamma + 1)] + ["oracle"]
    family = ("dspark_lagged",) if setting == "h100" else ("dspark", "dspark_lagged")
    out += [f"{name}:{g}" for name in family for g in grid]
    out += [f"{name}:objective=verify,{g}" for name in family for g in grid[: 1 if small else 3]]
    return out


def table(points: list[dict], setting: str) -> str:
    by = {(p["policy"], p["N"]): p for p in points}
    names = sorted({p["policy"] for p in points})
    head = ["N", "fixed:k=1", "best fixed (k)", "tuned dspark_lagged (1+ℓ)", "vs k=1",
            "vs best fixed", "tuned, objective=verify", "oracle", "share of oracle"]  # fmt: skip
    if setting == "cpu":
        head.insert(6, "tuned dspark (1+ℓ)")
    rows = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for n in sorted({p["N"] for p in points}):
        rows.append("| " + " | ".join(_row({p: by[(p, n)] for p in names}, setting)) + " |")
    return "\n".join(rows)


def _row(at: dict[str, dict], setting: str) -> list[str]:
    """One N's cells; ``at`` maps each policy spec to its point at that N."""

    def tp(p: str) -> float:
        return at[p]["throughput_tok_s"]

    def best(prefix: str, verify: bool = False) -> str:
        pool = [p for p in at if p.startswith(prefix + ":") and ("objective=verify" in p) == verify]
        return max(pool, key=tp)

    def budget(p: str) -> str:
        return f"{tp(p):,.0f} ({1 + at[p]['mean_verify_len']:.2f})"

    fixed, lag, one = best("fixed"), best("dspark_lagged"), tp("fixed:k=1")
    cells = [str(at[lag]["N"]), f"{one:,.0f}", f"{tp(fixed):,.0f} ({fixed[8:]})", budget(lag),
             f"{tp(lag) / one - 1:+.1%}", f"{tp(lag) / tp(fixed) - 1:+.1%}"]  # fmt: skip
    top = tp(lag)
    if setting == "cpu":
        ds = best("dspark")
        cells.append(budget(ds))
        top = max(top, tp(ds))
    oracle = tp("oracle")
    return cells + [budget(best("dspark_lagged", True)), f"{oracle:,.0f}", f"{top / oracle:.1%}"]


def margins(points: list[dict]) -> str:
    """Per N: the best tuned DSpark-family point (step objective) vs the best ``fixed:k``."""
    cells = []
    for n in sorted({p["N"] for p in points}):
        at = [p for p in points if p["N"] == n]
        fixed = max(p["throughput_tok_s"] for p in at if p["policy"].startswith("fixed:"))
        family = [p for p in at if p["policy"].startswith("dspark")]
        tuned = max(p["throughput_tok_s"] for p in family if "objective=verify" not in p["policy"])
        cells.append(f"N={n} {tuned / fixed - 1:+.2%}")
    return "best tuned DSpark vs best fixed:k: " + ", ".join(cells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=SETTINGS, required=True)
    ap.add_argument("--loads", default=",".join(map(str, LOADS)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="min_verify_len 0-2 only (no cap grid)")
    ap.add_argument("--prefill", choices=("colocated", "disaggregated"), default="colocated")
    ap.add_argument(
        "--extra",
        default="",
        metavar="SPEC;SPEC",
        help="more policies for the JSON, e.g. 'twin:of=dspark;clairvoyant'",
    )
    ap.add_argument("--seed", type=int, default=0, help="requests and acceptance draws (default 0)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    gamma = _models(args.setting)[1].gamma
    loads = [int(x) for x in args.loads.split(",")]
    specs = policies(args.setting, gamma, args.small) + [x for x in args.extra.split(";") if x]
    jobs = [(args.setting, p, n, args.prefill, args.seed) for n in loads for p in specs]
    with Pool(args.workers) as pool:
        points = pool.map(_point, jobs, chunksize=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(points, indent=1))
    print(table(points, args.setting))
    print("\n" + margins(points))
    steps = sum(p["extrapolated_steps"] for p in points)
    print(f"\nsteps priced outside the profile's envelope, all points: {steps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
