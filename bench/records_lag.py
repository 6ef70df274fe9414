"""Lag 1 vs lag 2 of ``dspark_lagged``, studied with records (issue #13, item 7).

    nice -n 10 python bench/records_lag.py --out runs/records-lag.json

``dspark_lagged`` sizes the batch from confidences ``lag`` steps old. How much staleness costs
depends on how a request's confidences move from round to round, which only records carry (the
parametric model draws each round independently given the request, so there lag 1 and 2 see
equally informative confidences). Three acceptance models on the CPU default cost
(``builtin:cpu-tiny-additive``, measured):

- ``records``: the default ``builtin:cpu-tiny-dspark`` (engine records + their STS temperatures);
- ``shuffled``: the same records with each request's rounds in a random order (seed 0): each
  request keeps its rounds and difficulty, the round-to-round structure is gone (a control);
- ``paper``: ``paper:qwen3-8b-dspark`` (parametric, read from the paper; γ = 7 like the records).

Closed loop (``runner/sweep.py``), ``builtin:azure-conv-like`` clamped to the engine's context,
max(64, 8·N) requests per point, seed 0, both lags on the same requests and draws. Prints a
markdown table of throughput and mean verify length per N and model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.builtin import load_acceptance, load_cost  # noqa: E402
from profiles.records import RecordsAcceptance  # noqa: E402
from runner.point import PointTask, run_point  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402
from simulator.workload import WorkloadSpec, fit_default  # noqa: E402

LOADS = (1, 4, 16, 64)
COST = "builtin:cpu-tiny-additive"


def shuffled(model: RecordsAcceptance, seed: int = 0) -> RecordsAcceptance:
    """The records with each request's rounds permuted (steps renumbered 0..n-1)."""
    r = model.records
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(r.rounds), r.request))  # grouped by request, random within
    req = r.request[order]
    first = np.r_[0, np.flatnonzero(req[1:] != req[:-1]) + 1]
    step = np.arange(r.rounds) - np.repeat(first, np.diff(np.r_[first, r.rounds]))
    recs = replace(r.take(order), step=step, meta={**r.meta, "source": "rounds shuffled"})
    return RecordsAcceptance(recs, model.temperatures, source=model.source + ", rounds shuffled")


def models() -> dict:
    records = load_acceptance("builtin:cpu-tiny-dspark")
    return {"records": records, "shuffled": shuffled(records),
            "paper": load_acceptance("paper:qwen3-8b-dspark")}  # fmt: skip


def point(cost, acc, policy: str, n: int) -> dict:
    spec = fit_default(WorkloadSpec("builtin:azure-conv-like"), cost)
    task = PointTask(policy, "concurrency", n, spec, ServerConfig(gamma=acc.gamma),
                     max(64, 8 * n), 0)  # fmt: skip
    r = run_point(task, (cost, acc))
    return {k: r[k] for k in ("throughput_tok_s", "mean_verify_len", "mean_accepted_len")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", default=",".join(map(str, LOADS)))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cost = load_cost(COST)
    out = []
    for name, acc in models().items():
        for n in (int(x) for x in args.loads.split(",")):
            row = {"model": name, "N": n}
            for lag in (1, 2):
                row[f"lag{lag}"] = point(cost, acc, f"dspark_lagged:lag={lag}", n)
            out.append(row)
            print(f"  {name} N={n} done", file=sys.stderr, flush=True)
    print("| acceptance | N | lag 1 tok/s (1+ℓ) | lag 2 tok/s (1+ℓ) | lag 2 vs lag 1 |")
    print("|---|---:|---:|---:|---:|")
    for row in out:
        a, b = row["lag1"], row["lag2"]
        print(f"| {row['model']} | {row['N']} | {a['throughput_tok_s']:,.1f} "
              f"({1 + a['mean_verify_len']:.2f}) | {b['throughput_tok_s']:,.1f} "
              f"({1 + b['mean_verify_len']:.2f}) | "
              f"{b['throughput_tok_s'] / a['throughput_tok_s'] - 1:+.2%} |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
