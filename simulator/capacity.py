"""What the simulated server can serve: its saturated request rate, and whether a load exceeds it.

:func:`saturated_rate` is the one capacity *measurement*: the request rate a policy sustains with
every request queued at t = 0 (the demo's and the fidelity harness's loads are fractions of it).

An open-loop replay whose arrivals outpace the server only grows its queue: every latency figure
then measures the backlog (TTFTs of hours), not the policy. The estimate needs no extra
simulation: a saturated server completes requests at its capacity, so the completed-request rate
of a run that was busy almost all the time is the capacity *for this workload mix, policy and
server cap* (an estimate, stated as such), and the offered rate is the requests over their arrival
span. The rate scale that would fit is the current one times capacity / offered. A run whose
requests mostly did not wait was not saturated, however short it was (a few requests finish at
their own pace, not the server's capacity): the queue must hold most of the latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.workload import Workload

OVER = 1.1  # offered / capacity above this is reported (10%: the estimate's own slack)
BUSY = 0.9  # a server idle more than 10% of the run was not saturated
QUEUED = 0.5  # saturated: waiting in the queue is over half of a request's mean latency


@dataclass(frozen=True)
class Overload:
    offered_req_s: float  # requests over their arrival span
    capacity_req_s: float  # completed requests per second of the saturated run
    rate_scale: float  # the --rate-scale that would offer about the capacity

    def message(self, what: str = "--rate-scale") -> str:
        return (f"offered load {self.offered_req_s:.3g} req/s exceeds the server's estimated "
                f"capacity {self.capacity_req_s:.3g} req/s (this run's completion rate, busy "
                f"throughout): latencies measure the queue; {what} <= {self.rate_scale:.2g} "
                "would fit, or more capacity (a faster --profile, --max-concurrency, "
                "--kv-capacity-tokens)")  # fmt: skip


def offered_rate(arrivals: np.ndarray) -> float | None:
    """Requests per second over the arrival span (None for fewer than 2 or one instant)."""
    if arrivals.size < 2:
        return None
    span = float(arrivals.max() - arrivals.min())
    return (arrivals.size - 1) / span if span > 0 else None


def overload(summary: dict[str, Any], arrivals: np.ndarray, rate_scale: float) -> Overload | None:
    """The overload of one open-loop run (``simulate``'s summary and its arrival times, s), or
    None when the offered load fits (or cannot be told: all arrivals at once is a closed batch;
    requests that hardly waited, as in a run of a few requests)."""
    offered = offered_rate(arrivals)
    capacity = summary.get("request_throughput_req_s") or 0.0
    busy = summary.get("engine_busy_fraction") or 0.0
    queued = summary.get("queue_mean_s") or 0.0
    if offered is None or capacity <= 0 or busy < BUSY or offered <= OVER * capacity:
        return None
    if queued <= QUEUED * (summary.get("e2e_mean_s") or 0.0):
        return None
    return Overload(offered, capacity, rate_scale * capacity / offered)


def grid_overload(points: list[dict[str, Any]], offered_at_1: float, loads) -> Overload | None:
    """For a tune over rate scales: the overload at the grid's lowest scale, the capacity taken
    as the highest completion rate any point reached (``requests_completed / window_s``)."""
    rates = [p["requests_completed"] / p["window_s"] for p in points
             if p.get("window_s") and p.get("requests_completed")]  # fmt: skip
    if not rates or offered_at_1 <= 0:
        return None
    capacity, low = max(rates), min(loads)
    if offered_at_1 * low <= OVER * capacity:
        return None
    return Overload(offered_at_1 * low, capacity, capacity / offered_at_1)


def saturated_rate(workload: Workload, cost, acceptance, server, seed: int,
                   policy: str = "fixed:k=1") -> float:  # fmt: skip
    """Requests/s ``policy`` sustains on this server when ``workload`` (opened with every
    request at t = 0, e.g. ``request_rate=inf``) is all queued at once."""
    from policies import make_policy
    from simulator.run import simulate

    s = simulate(workload, make_policy(policy), cost, acceptance, server, seed=seed).summary
    return s["request_throughput_req_s"]
