"""One simulation from resolved inputs to a summary: the Python API behind ``spectune replay``.

from simulator.run import simulate
result = simulate(requests, make_policy("dspark"), load_cost("builtin:h100-8b"),
                  load_acceptance("paper:qwen3-8b-dspark"), ServerConfig(max_concurrency=64))
result.summary["throughput_tok_s"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
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
    compiled: bool = True,
) -> Result:
    """Run ``workload`` through a simulated server and summarise it (profiled backend default).

    ``compiled``: use the compiled step path where the policy has a kernel (same results,
    simulator/compiled.py); False runs the reference step throughout."""
    if config.gamma > acceptance.gamma:
        raise InputError(
            f"gamma {config.gamma} exceeds the acceptance model's {acceptance.gamma} positions"
        )
    if backend is None:
        backend = ProfiledBackend(cost, acceptance, config.max_concurrency, seed, config.gamma)
    tally = Fit()
    if cost.max_context:
        workload = fit_context(workload, cost.max_context, config.clamp_to_context, tally,
                               on_reject=on_request)  # fmt: skip
    server = Server(
        config, policy, backend, cost=cost, seed=seed, on_request=on_request, compiled=compiled
    )
    t0 = time.perf_counter()
    recorder = server.run(workload)
    wall = time.perf_counter() - t0
    summary = recorder.summary()
    extrapolated = getattr(backend, "extrapolated_steps", 0)
    priced = getattr(backend, "priced_steps", recorder.decode_steps)
    summary.update(
        {
            "extrapolated_steps": extrapolated,
            "extrapolated_step_share": extrapolated / priced if priced else 0.0,
            "requests_clamped_to_context": tally.clamped,
            "requests_rejected_context": tally.rejected,
            "max_context": cost.max_context,
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


@dataclass
class Fit:
    """How many requests did not fit the engine's context: trimmed, or rejected (never run)."""

    clamped: int = 0
    rejected: int = 0


def fit_context(
    workload: Iterable[Request],
    max_context: int,
    clamp: bool,
    tally: Fit,
    on_reject: Callable[[Request], None] | None = None,
) -> Iterator[Request]:
    """The workload checked against the engine's context (prompt + output tokens ≤
    ``max_context``). A longer request is rejected and counted, as vLLM rejects a request beyond
    ``max_model_len`` and serves the rest; with ``clamp`` it is trimmed instead — prompt first
    (its tail kept), then output — and counted."""
    for req in workload:
        if fits(req, max_context):
            yield req
            continue
        if not clamp:
            tally.rejected += 1
            if on_reject is not None:  # it arrived, and was turned away
                on_reject(req)
            continue
        tally.clamped += 1
        output = min(req.output_tokens, max_context - 1)
        prompt = min(req.prompt_tokens, max_context - output)
        yield Request(req.id, req.arrival_s, prompt, output, req.domain)


def fits(req: Request, max_context: int) -> bool:
    """True when ``req`` (prompt + output tokens) fits an engine of ``max_context`` tokens."""
    return req.prompt_tokens + req.output_tokens <= max_context


def beyond_context(over: int, total: int, max_context: int, *, every_point: bool = False) -> str:
    """The one sentence replay and tune print on requests beyond the engine's context:
    ``over`` of ``total`` requests (``every_point``: the first ``total`` of a tune's workload,
    rejected at each of its points)."""
    first = "the first " if every_point else ""
    verb = "are rejected at every point" if every_point else "were rejected"
    return (f"{over} of {first}{total} requests ({over / total:.0%}) need more than the engine's "
            f"{max_context}-token context and {verb}, as vLLM rejects them (--clamp-to-context "
            "trims them instead; --max-prompt-tokens/--max-output-tokens clamp the trace's "
            "lengths)")  # fmt: skip


def context_warning(summary: dict[str, Any]) -> str | None:
    """One line on requests the engine's context rejected, or None."""
    n = summary.get("requests_rejected_context", 0)
    if not n:
        return None
    return beyond_context(n, n + summary.get("requests_completed", 0), summary["max_context"])


def count_beyond_context(workload: Iterable[Request], max_context: int, n: int) -> tuple[int, int]:
    """(requests beyond ``max_context``, requests looked at) over the first ``n`` of
    ``workload`` — what a run of those requests will reject (or clamp)."""
    seen = over = 0
    for req in workload:
        if seen == n:
            break
        seen += 1
        over += not fits(req, max_context)
    return over, seen
