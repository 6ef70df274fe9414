"""One tuning point: a policy at one load, simulated in whichever process runs it.

A point is a frozen :class:`PointTask` (plain data, picklable, the same on every backend) and
:func:`run_point` turns it into a flat dict of metrics. Two load knobs:

- ``concurrency`` (closed loop, the paper's Figures 7–8): every request arrives at t = 0 and the
  server's concurrency cap N is the load, so N users are always busy; metrics come from the
  steady window (``simulator/closed.py``).
- ``rate`` (open loop): requests arrive at ``load`` req/s (synthetic workloads) or at the trace's
  own times compressed by ``load`` (trace files); metrics are the whole-run summary (TTFT counts
  queueing). Below capacity every policy's throughput equals the offered load, so "highest
  throughput meeting the SLA" is the highest load whose latency metrics still meet it.

The cost and acceptance models travel with the tasks as objects (loaded once by the caller;
the executors ship them to each worker process once), never as spec strings to reload.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from simulator.closed import closed_loop, steady_metrics
from simulator.request import Request
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec, open_workload

MODES = ("concurrency", "rate")
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


def workload_for(task: PointTask) -> Iterable[Request]:
    """The request stream of this point (closed loop: every arrival at t = 0)."""
    spec, n = task.workload, task.requests
    if task.mode == "concurrency":
        return closed_loop(spec, n)
    if spec.is_synthetic:
        return open_workload(replace(spec, request_rate=task.load, num_requests=n))
    return open_workload(replace(spec, rate_scale=task.load, limit=min(spec.limit or n, n)))


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
        metrics = steady_metrics(result.recorder, int(task.load), METRICS)
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
