"""Step 1 of the demo: the same seeded default workload replayed under each policy at loads that
are fractions of the server's capacity (``simulator.capacity.saturated_rate`` of fixed:k=1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from simulator.workload import DEFAULT_WORKLOAD, WorkloadSpec, fit_default, open_workload

Rows = list[dict[str, Any]]


def compare(policies: Sequence[tuple[str, Any]], loads: Sequence[float], cost, acceptance, server,
            num_requests: int, seed: int,
            on_run: Callable[[str], None] | None = None) -> tuple[str, Rows]:  # fmt: skip
    """(workload label, one row per (load, policy)): the load, its request rate, the policy's
    label and the run's summary. ``policies`` are (label, policy) pairs; ``on_run`` hears each
    run start. Every run uses ``seed``, so the policies see the same requests and draws."""
    from simulator.capacity import saturated_rate
    from simulator.run import simulate

    def spec(rate: float) -> WorkloadSpec:  # fits a short-context engine (clamps in the label)
        return fit_default(WorkloadSpec(DEFAULT_WORKLOAD, request_rate=rate, seed=seed,
                                        num_requests=num_requests), cost)  # fmt: skip

    capacity = saturated_rate(open_workload(spec(float("inf"))), cost, acceptance, server, seed)
    rows, label = [], ""
    for load in loads:
        rate = load * capacity
        workload = open_workload(spec(rate))
        label = workload.label
        for name, policy in policies:
            if on_run:
                on_run(f"{policy.spec} at load {load:g}")
            s = simulate(workload, policy, cost, acceptance, server, seed=seed).summary
            rows.append({"load": load, "rate_req_s": rate, "label": name, **s})
    return label, rows
