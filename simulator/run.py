"""One simulation from resolved inputs to a summary: the Python API behind ``spectune replay``.

from simulator.run import simulate
result = simulate(requests, make_policy("dspark"), load_cost("builtin:h100-8b"),
                  load_acceptance("paper:qwen3-8b-dspark"), ServerConfig(max_concurrency=64))
result.summary["throughput_tok_s"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from policies.base import Policy
from profiles.cost import CostModel
from profiles.errors import InputError
from simulator.backend import Backend, ProfiledBackend
from simulator.metrics import Recorder
from simulator.request import Request
from simulator.server import Server, ServerConfig


@dataclass
class Result:
    summary: dict[str, Any]  # DESIGN §5 metric names plus provenance labels
    recorder: Recorder  # per-request columns, for CSV output and plots


def simulate(
    workload: Iterable[Request],
    policy: Policy,
    cost: CostModel,
    acceptance: Any,
    config: ServerConfig,
    *,
    seed: int = 0,
    backend: Backend | None = None,
    on_request: Callable[[Request], None] | None = None,
) -> Result:
    """Run ``workload`` through a simulated server and summarise it (profiled backend default)."""
    if config.gamma > acceptance.gamma:
        raise InputError(
            f"gamma {config.gamma} exceeds the acceptance model's {acceptance.gamma} positions"
        )
    if backend is None:
        backend = ProfiledBackend(cost, acceptance, config.max_concurrency, seed, config.gamma)
    server = Server(config, policy, backend, cost=cost, seed=seed, on_request=on_request)
    t0 = time.perf_counter()
    recorder = server.run(workload)
    wall = time.perf_counter() - t0
    summary = recorder.summary()
    summary.update(
        {
            "extrapolated_steps": getattr(backend, "extrapolated_steps", 0),
            "policy": policy.spec,
            "gamma": config.gamma,
            "max_concurrency": config.max_concurrency,
            "kv_capacity_tokens": config.kv_capacity_tokens,
            "seed": seed,
            "backend": backend.source,
            "profile": cost.source,
            "acceptance": acceptance.source,
            # wall-clock figures, the only ones that differ between runs of the same seed
            "wall": {
                "wall_s": wall,
                "decode_steps_per_wall_s": recorder.decode_steps / wall if wall > 0 else 0.0,
            },
        }
    )
    return Result(summary, recorder)
