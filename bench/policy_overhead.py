"""Decision time of every registered policy: R ∈ {1, 16, 64, 256, 1024} × γ ∈ {5, 7, 15}.

Method. What is timed is ``policy.decide(conf, None, ctx)`` — exactly what the simulator calls
on its hot path (validated inputs, a reused ``StepContext`` holding the cost model, two steps of
lagged confidences, per-request history and realized A). Inputs come from one fixed seed:
per-request first-position confidence ~ Beta(8, 2), decaying 3% per position, plus N(0, 0.05)
noise, clipped to [0.01, 0.999]. Each case is run ``number`` times per repeat so that a repeat
takes about ``--repeat-ms`` milliseconds of CPU, ``--repeats`` repeats; we report the minimum per
call (the least-disturbed run, as ``timeit`` recommends) and the median. Time is the thread's
CPU time (``time.thread_time``), not wall time: the machine is shared, and CPU time does not
count the intervals when another process holds the core (caches and clock still suffer under
load, so numbers taken on a busy machine are upper bounds). The process is pinned to one CPU
(``sched_setaffinity``) and numpy's thread pools are limited to one thread.

Two cost curves, because the work of the survival-ranked policies depends on where the greedy
path stops:

- ``h100-8b``: the builtin analytic H100 / 8B roofline with CUDA-graph buckets (``builtin:h100-8b``
  — analytic, not measured). At R = 256 its first extra token falls off a bucket cliff, so
  Algorithm 1 stops before sorting anything;
- ``flat``: constant steps/s, so every extra token raises Θ and the path runs through every
  candidate — the worst case (full ranking, full path).

Run ``python bench/policy_overhead.py`` (about a minute) or with ``--write BENCHMARKS.md`` to
replace the "Policy overhead" section there; ``--quick`` runs a few cases only (a smoke test).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from policies import StepContext, available  # noqa: E402
from profiles.builtin import load_cost  # noqa: E402
from profiles.cost import CostModel  # noqa: E402

REQUESTS = (1, 16, 64, 256, 1024)
GAMMAS = (5, 7, 15)
SEED = 20260806
SECTION = "## Policy overhead"
TARGET = ("dspark", 256, 7, 20.0)  # policy, R, γ, µs per decision


def costs() -> dict[str, CostModel]:
    return {
        "h100-8b": load_cost("builtin:h100-8b"),
        "flat": CostModel.from_sps_table([1, 65536], [100.0, 100.0], source="analytic: flat"),
    }


def inputs(r: int, gamma: int, cost: CostModel) -> tuple[np.ndarray, StepContext]:
    rng = np.random.default_rng([SEED, r, gamma])
    first = rng.beta(8.0, 2.0, size=(r, 1))
    conf = first * 0.97 ** np.arange(gamma) + rng.normal(0.0, 0.05, (r, gamma))
    conf = np.clip(conf, 0.01, 0.999)
    lagged = np.clip(conf[None] + rng.normal(0.0, 0.05, (2, r, gamma)), 0.01, 0.999)
    accepted = rng.integers(0, 200, r)
    ctx = StepContext(
        cost=cost,
        lagged=lagged,
        lagged_known=rng.random((2, r)) < 0.95,
        accepted=rng.integers(0, gamma + 1, r),
        accepted_total=accepted,
        verified_total=accepted + rng.integers(0, 100, r),
        rng=np.random.default_rng(SEED),
    )
    return conf, ctx


def time_call(fn, repeat_ms: float, repeats: int) -> tuple[float, float]:
    """(min, median) CPU seconds per call, measured with the thread's CPU clock."""
    fn()
    t0 = time.thread_time()
    for _ in range(10):
        fn()
    once = max((time.thread_time() - t0) / 10, 1e-7)
    number = max(1, int(repeat_ms / 1000.0 / once))
    runs = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        runs.append((time.thread_time() - t0) / number)
    return min(runs), statistics.median(runs)


def measure(names, requests, gammas, repeat_ms, repeats) -> dict:
    results = {}
    classes = available()
    for cost_name, cost in costs().items():
        for gamma in gammas:
            for r in requests:
                conf, ctx = inputs(r, gamma, cost)
                for name in names:
                    policy = classes[name]()
                    call = functools.partial(policy.decide, conf, None, ctx)
                    best, med = time_call(call, repeat_ms, repeats)
                    results[cost_name, name, gamma, r] = (best * 1e6, med * 1e6)
            print(f"  {cost_name} γ={gamma} done", file=sys.stderr)
    return results


def report(results: dict, names, requests, gammas, repeats: int, repeat_ms: float) -> str:
    load = os.getloadavg()
    lines = [
        SECTION,
        "",
        "```",
        ".venv/bin/python bench/policy_overhead.py --write BENCHMARKS.md   # about a minute",
        "```",
        "",
        "Written by `bench/policy_overhead.py` (method in its docstring). Microseconds per",
        "`policy.decide` call (thread CPU time), minimum over "
        f"{repeats} repeats of ~{repeat_ms:g} ms (median in brackets), one pinned CPU.",
        "",
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work; load average during the run "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        f"- python {platform.python_version()}, numpy {np.__version__}, seed {SEED}",
        "",
    ]
    for cost_name in costs():
        lines += [f"### Cost curve `{cost_name}`", ""]
        lines.append("| policy | γ | " + " | ".join(f"R={r}" for r in requests) + " |")
        lines.append("|---|---|" + "---|" * len(requests))
        for name in names:
            for gamma in gammas:
                cells = []
                for r in requests:
                    best, med = results[cost_name, name, gamma, r]
                    cells.append(f"{best:.1f} ({med:.1f})")
                lines.append(f"| {name} | {gamma} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += commentary(results, names, requests, gammas)
    return "\n".join(lines)


def commentary(results: dict, names, requests, gammas) -> list[str]:
    """The reading of the tables that the target asks for (numbers filled in from this run)."""
    policy, r, gamma, target = TARGET
    if policy not in names or r not in requests or gamma not in gammas:
        return []
    at = {c: results[c, policy, gamma, r][0] for c in costs()}
    worst_r = max(requests, key=lambda q: results["h100-8b", policy, gamma, q][0])
    worst = results["h100-8b", policy, gamma, worst_r][0]
    tiny = results["h100-8b", policy, gamma, requests[0]][0]
    met = all(v <= target for v in at.values())
    return [
        "Reading the numbers:",
        "",
        f"- **Target** (`{policy}` ≤ {target:g} µs at R={r}, γ={gamma}): "
        f"{at['h100-8b']:.1f} µs on `h100-8b`, {at['flat']:.1f} µs on `flat` — "
        + ("met on both curves." if met else "see the plan below."),
        f"- On `h100-8b` at R={r} the first extra token falls off the CUDA-graph bucket at "
        f"B={r + 1}, so Algorithm 1 stops before ranking anything; on `flat` a certificate "
        "(`policies.prefix.rises_throughout`) proves Θ rises along any order, so everything is "
        "admitted without ranking. Both shortcuts return exactly what the full path returns.",
        f"- The costly case is a stop in the middle of the path, where the candidates must be "
        f"ranked: the slowest `h100-8b` column at γ={gamma} is R={worst_r} ({worst:.1f} µs; the "
        "greedy path fills the flat region up to the B=256 bucket). Ranking is a two-pass "
        "stable sort (16-bit radix, then timsort of the nearly sorted values) and the path is "
        "walked in chunks of 256, 1024, 4096, … stopping at the first drop.",
        f"- Fixed cost: even R={requests[0]} costs {tiny:.1f} µs — some 20 numpy calls at "
        "0.5–1 µs each on this machine. Sub-10 µs decisions at every R would need a compiled "
        "kernel: a k-way merge over the R sorted survival rows with the early stop costs "
        "O(n* log R) and touches only the admitted candidates. That is the plan if the mid-path "
        "case matters for simulator speed (see `bench/sim_speed.py`); the numpy version stays "
        "the reference.",
        "",
    ]


def write_section(path: Path, text: str) -> None:
    """Replace our section of BENCHMARKS.md (from its heading to the next ``## ``), or append."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[end + 1 :] if end >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the section in this Markdown file")
    parser.add_argument("--quick", action="store_true", help="a few small cases (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repeat-ms", type=float, default=20.0)
    parser.add_argument("--policies", help="comma-separated names (default: all registered)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    names = args.policies.split(",") if args.policies else list(available())
    requests, gammas = (REQUESTS, GAMMAS) if not args.quick else ((1, 16), (5,))
    if args.quick:
        args.repeats, args.repeat_ms = 2, 1.0
    results = measure(names, requests, gammas, args.repeat_ms, args.repeats)
    text = report(results, names, requests, gammas, args.repeats, args.repeat_ms)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
