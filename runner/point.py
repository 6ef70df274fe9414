"""One tuning point: a policy at one load, simulated in whichever process runs it.

A point is a frozen :class:`PointTask` (plain data, picklable, the same on every backend) and
:func:`run_point` turns it into a flat dict of metrics. Two load knobs:

- ``concurrency`` (closed loop, the paper's Figures 7–8): every request arrives at t = 0 and the
  server's concurrency cap N is the load, so N users are always busy — a finished request is
  replaced at once by the next. Metrics come from the *steady window*, from the moment N requests
  have their first token to the last admission (after it the batch only drains): throughput
  counts the tokens generated inside the window (a request's decode tokens spread evenly over its
  decode span), per-request metrics use the requests that lived entirely inside it, and TTFT is
  first token − admission (the queue in front of a closed loop is an artefact, not waiting users).
- ``rate`` (open loop): requests arrive at ``load`` req/s (synthetic workloads) or at the trace's
  own times compressed by ``load`` (trace files); metrics are the whole-run summary (TTFT counts
  queueing). Below capacity every policy's throughput equals the offered load, so "highest
  throughput meeting the SLA" is the highest load whose latency metrics still meet it.

The cost and acceptance models travel with the tasks as objects (loaded once by the caller;
the executors ship them to each worker process once), never as spec strings to reload.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.request import Request
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec, open_workload

MODES = ("concurrency", "rate")
MIN_WINDOW_REQUESTS = 8  # fewer requests inside the steady window → whole-run fallback
METRICS = (
    "throughput_tok_s", "tps_per_user_mean", "tps_per_user_p50", "tps_per_user_p90",
    "tps_per_user_p99", "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s",
    "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "mean_verify_len", "mean_accepted_len",
    "mean_batch_size",
)  # fmt: skip


@dataclass(frozen=True)
class PointTask:
    """Everything one simulation needs; equal tasks give equal results on any backend."""

    policy: str  # full policy spec, every parameter spelled out
    mode: str  # "concurrency" (closed loop, load = N) or "rate" (open loop, load = req/s)
    load: float  # concurrency cap N, request rate (synthetic) or rate scale (traces)
    workload: WorkloadSpec  # the base workload (request count and rate set per point)
    server: ServerConfig  # server limits (max_concurrency replaced by N in concurrency mode)
    requests: int  # requests simulated
    seed: int  # the one seed (workload draws, acceptance streams, policy generator)

    @property
    def key(self) -> str:
        """Identity of the point in the results store (resume skips finished keys)."""
        return point_key(self.policy, self.mode, self.load)


def point_key(policy: str, mode: str, load: float) -> str:
    return f"{policy}|{mode}={load:.6g}"


def workload_for(task: PointTask) -> Iterator[Request] | Any:
    """The request stream of this point (closed loop: every arrival at t = 0)."""
    spec, n = task.workload, task.requests
    if task.mode == "rate":
        if spec.is_synthetic:
            return open_workload(replace(spec, request_rate=task.load, num_requests=n))
        return open_workload(replace(spec, rate_scale=task.load, limit=min(spec.limit or n, n)))
    if spec.is_synthetic:
        base = open_workload(replace(spec, request_rate=math.inf, num_requests=n))
    else:
        base = open_workload(replace(spec, limit=min(spec.limit or n, n)))
    return (Request(r.id, 0.0, r.prompt_tokens, r.output_tokens, r.domain)
            for r in itertools.islice(base, n))  # fmt: skip


def run_point(task: PointTask, models: tuple[Any, Any]) -> dict[str, Any]:
    """Simulate one point with ``models`` = (cost model, acceptance model); returns the key
    fields plus :data:`METRICS` and bookkeeping."""
    from policies import make_policy
    from simulator.run import simulate

    cost, acceptance = models
    server = task.server
    if task.mode == "concurrency":
        server = replace(server, max_concurrency=int(task.load))
    t0 = time.perf_counter()
    result = simulate(workload_for(task), make_policy(task.policy), cost, acceptance, server,
                      seed=task.seed)  # fmt: skip
    s = result.summary
    if task.mode == "concurrency":
        metrics = steady_metrics(result.recorder, int(task.load))
    else:
        metrics = {k: s.get(k) for k in METRICS}
        metrics.update(window_s=s["duration_s"], window_requests=s["requests_completed"],
                       steady=True)  # fmt: skip
    return {
        "policy": task.policy,
        "mode": task.mode,
        "load": task.load,
        "requests": task.requests,
        "seed": task.seed,
        **metrics,
        "requests_completed": s["requests_completed"],
        "decode_steps": s["decode_steps"],
        "extrapolated_steps": s["extrapolated_steps"],
        "wall": {"wall_s": time.perf_counter() - t0},  # the only field that differs per run
    }


def steady_metrics(recorder, n: int) -> dict[str, Any]:
    """Closed-loop metrics over the steady window (see the module docstring)."""
    r = recorder.per_request()
    first, finish, admitted = r["first_token"], r["finish"], r["admitted"]
    out = r["output_tokens"]
    if first.size == 0:
        return {k: None for k in METRICS} | {"window_s": 0.0, "window_requests": 0,
                                             "steady": False}  # fmt: skip
    t0 = float(np.sort(first)[min(n, first.size) - 1])
    t1 = float(admitted.max())
    inside = (first >= t0) & (finish <= t1)
    steady = t1 > t0 and int(inside.sum()) >= MIN_WINDOW_REQUESTS
    if not steady:  # too few requests for a steady state: whole run instead
        t0, t1 = float(first.min()), float(finish.max())
        inside = np.ones(first.size, dtype=bool)
    span = max(t1 - t0, 1e-12)
    decode = np.maximum(finish - first, 1e-12)
    overlap = np.clip(np.minimum(finish, t1) - np.maximum(first, t0), 0.0, None)
    tokens = ((first >= t0) & (first <= t1)) + (out - 1) * overlap / decode
    m: dict[str, Any] = {"throughput_tok_s": float(tokens.sum() / span)}
    for name, values in (("tps_per_user", r["tps_per_user"]),
                         ("ttft", first - admitted), ("tpot", r["tpot_s"])):  # fmt: skip
        v = values[inside]
        v = v[np.isfinite(v)]
        unit = "" if name == "tps_per_user" else "_s"
        stats = (v.mean(), *np.percentile(v, [50, 90, 99])) if v.size else (None,) * 4
        for label, x in zip(("mean", "p50", "p90", "p99"), stats, strict=True):
            m[f"{name}_{label}{unit}"] = None if x is None else float(x)
    steps = r["decode_steps"][inside].sum()
    m["mean_verify_len"] = float(r["verified"][inside].sum() / steps) if steps else 0.0
    m["mean_accepted_len"] = (float((r["accepted"][inside].sum() + steps) / steps)
                              if steps else 0.0)  # fmt: skip
    m["mean_batch_size"] = float(overlap.sum() / span)
    m.update(window_s=span, window_requests=int(inside.sum()), steady=bool(steady))
    return m
