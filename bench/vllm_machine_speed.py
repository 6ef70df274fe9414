"""How a served vLLM's step time moves on this machine by itself (issue #15, docs/vllm/README.md).

    .venv-vllm/bin/python bench/vllm_machine_speed.py pinning  [--rounds 4]
    .venv-vllm/bin/python bench/vllm_machine_speed.py prompts  [--rounds 4]

One ``vllm serve`` (``fixed:k=4``, the committed target and distilled draft, max-num-seqs 8),
warmed up, then alternating rounds, each printed as one JSON line from the server's own step log
(``--enable-logging-iteration-details``; mean and spread of the logged milliseconds):

- ``pinning``: per round, with the API server, engine core and this client either free (both
  cores) or pinned to core 1 (vLLM binds its worker to core 0): a speed reference (8 requests
  of 32 prompt / 48 output tokens one at a time) and a closed-loop burst of 16 requests of 96
  prompt tokens at concurrency 8; the R = 1 and R = 7-8 decode steps.
- ``prompts``: per round, 6 requests one at a time at prompt lengths 32, 128 and 512 (order
  reversed every other round); the R = 1 decode steps.

Measured on a machine with nothing else running: what it measures is the machine's own speed
changes, so run it alone (not under pytest). Needs the vLLM extra.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from engine import bench, serve, vllmbench, vllmcost
from simulator.request import Request

LOAD = bench.Load  # concurrency, time limit, request timeout, temperature


def _tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                todo += [int(k) for k in kids]
    return out


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def _steps(rows: list[dict], lo: int, hi: int) -> list[float] | None:
    ms = [r["elapsed_ms"] for r in rows if lo <= r["gen_requests"] <= hi and not r["ctx_requests"]]
    return [round(float(np.mean(ms)), 1), round(float(np.std(ms)), 1), len(ms)] if ms else None


def _pinning(session: vllmbench.Session, rounds: int, out: Path) -> None:
    others = [p for p in _tree(session._served.proc.pid) if os.sched_getaffinity(p) != {0}]
    next_id = 100
    for rnd in range(rounds):
        for mode in ("free", "pinned") if rnd % 2 == 0 else ("pinned", "free"):
            cpus = {1} if mode == "pinned" else {0, 1}
            _pin(others, cpus)
            os.sched_setaffinity(0, cpus)
            for kind, conc, n, prompt in (("reference", 1, 8, 32), ("burst", 8, 16, 96)):
                reqs = [Request(next_id + i, 0.0, prompt, 48, "code") for i in range(n)]
                next_id += n
                session.run(reqs, LOAD(conc, 300, 120, 0.0), 0, out / f"{mode}-{kind}-{rnd}")
                rows = session.last_steps
                print(json.dumps({"round": rnd, "mode": mode, "kind": kind,
                                  "r1_ms": _steps(rows, 1, 1), "r7_8_ms": _steps(rows, 7, 8)}),
                      flush=True)  # fmt: skip
    _pin(others, {0, 1})


def _prompts(session: vllmbench.Session, rounds: int, out: Path) -> None:
    next_id = 100
    for rnd in range(rounds):
        for prompt in (32, 128, 512) if rnd % 2 == 0 else (512, 128, 32):
            reqs = [Request(next_id + i, 0.0, prompt, 48, "code") for i in range(6)]
            next_id += 6
            session.run(reqs, LOAD(1, 300, 120, 0.0), 0, out / f"p{prompt}-{rnd}")
            print(json.dumps({"round": rnd, "prompt": prompt,
                              "r1_ms": _steps(session.last_steps, 1, 1)}), flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", choices=("pinning", "prompts"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", default=None, help="server log and runs (default: a temp dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-speed-") as scratch:
        out = Path(args.out or scratch)
        target = vllmcost.resolve_model("target", scratch)
        spec = {"method": "draft_model", "model": vllmcost.resolve_model("draft", scratch),
                "num_speculative_tokens": 4}  # fmt: skip
        cfg = serve.ServeConfig(target, spec, max_num_seqs=8, max_model_len=1024)
        with vllmbench.Session(vllmbench.Setup(cfg, bench.Load()), out) as session:
            warm = [Request(i, 0.0, 64, 48, "code") for i in range(8)]
            session.run(warm, LOAD(8, 300, 120, 0.0), 0, out / "warmup")
            (_pinning if args.experiment == "pinning" else _prompts)(session, args.rounds, out)


if __name__ == "__main__":
    main()
