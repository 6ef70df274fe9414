"""CLI option groups shared by the commands that simulate (replay, demo, tune, ...).

Each ``add_*`` puts one group on a parser; each ``*_from_args`` turns the parsed values into the
frozen configs the simulator takes. Values argparse can check (numbers, ranges) fail there with
``spectune: error: argument --x: ...``; the rest raise ``InputError`` naming the option.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from profiles.builtin import DEFAULT_ACCEPTANCE, DEFAULT_COST, load_acceptance, load_cost
from simulator.server import ServerConfig
from simulator.workload import (
    DEFAULT_WORKLOAD,
    Workload,
    WorkloadSpec,
    fit_default,
    open_workload,
    parse_domain_mix,
)

CPUS = os.cpu_count() or 1
MAX_CONCURRENCY = 100_000  # the simulator preallocates per-slot state; far above any server
MAX_REQUESTS = 10_000_000  # requests simulated in one run (each is held in the recorder)
MAX_SEED = 2**63 - 1


def _number(kind: type, *, low: float, inclusive: bool = True, allow_inf: bool = False,
            high: float | None = None, why: str = ""):  # fmt: skip
    """An argparse ``type``: ``kind`` in [low, high]; NaN, and ±inf unless allowed, refused."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError("NaN is not allowed")
        if math.isinf(value) and not allow_inf:
            raise argparse.ArgumentTypeError("infinity is not allowed")
        if value < low or (value == low and not inclusive):
            bound = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {bound} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}{why}, got {text}")
        return value

    return parse


def bounded_int(low: int, high: int, why: str = ""):
    """An argparse ``type`` for an int in [low, high]; ``why`` says where ``high`` comes from."""
    return _number(int, low=low, high=high, why=f" ({why})" if why else "")


def bounded_float(low: float, high: float, *, inclusive: bool = True, why: str = ""):
    return _number(float, low=low, inclusive=inclusive, high=high, why=f" ({why})" if why else "")


seed_int = bounded_int(0, MAX_SEED)
temperature_float = bounded_float(0.0, 100.0)  # sampling temperature; 0 = greedy
MAX_SLOTS = 256  # engine slots: each holds a full-context KV cache (100,000 would need ~100 GB)
workers_int = bounded_int(1, CPUS, f"this machine has {CPUS} CPUs")
threads_int = bounded_int(1, CPUS, f"this machine has {CPUS} CPUs")


positive_int = _number(int, low=1)
nonneg_int = _number(int, low=0)
positive_float = _number(float, low=0.0, inclusive=False)
nonneg_float = _number(float, low=0.0)


def add_workload_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workload")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--trace", metavar="PATH", help="trace file (Azure, BurstGPT, Mooncake, generic)"
    )
    src.add_argument(
        "--workload",
        metavar="SPEC",
        help=f"builtin:azure-conv-like | builtin:azure-code-like | synthetic "
        f"(default {DEFAULT_WORKLOAD})",
    )
    g.add_argument("--format", choices=("azure", "burstgpt", "mooncake", "generic"),
                   help="trace format (default: auto-detect)")  # fmt: skip
    g.add_argument("--rate-scale", type=positive_float, default=1.0,
                   help="time compression: >1 replays arrivals faster (default 1)")  # fmt: skip
    g.add_argument("--limit", type=positive_int, help="first N requests only")
    g.add_argument("--start", type=nonneg_float, metavar="S", help="window start, trace seconds")
    g.add_argument("--duration", type=positive_float, metavar="S", help="window length, seconds")
    g.add_argument("--max-prompt-tokens", type=positive_int, help="clamp prompt lengths")
    g.add_argument("--max-output-tokens", type=positive_int, help="clamp output lengths")
    g.add_argument("--skip-bad-rows", action="store_true",
                   help="skip malformed trace rows, report how many")  # fmt: skip
    g.add_argument("--domain-mix", metavar="MIX",
                   help="domains of unlabelled requests: chat=0.6,code=0.4")  # fmt: skip
    g.add_argument("--request-rate", type=_number(float, low=0.0, inclusive=False, allow_inf=True),
                   help="synthetic: requests/s (inf = all at once)")  # fmt: skip
    g.add_argument("--burstiness", type=positive_float,
                   help="synthetic: gamma shape of inter-arrivals (1 = Poisson)")  # fmt: skip
    g.add_argument("--num-requests", type=bounded_int(1, MAX_REQUESTS),
                   help="synthetic: number of requests")  # fmt: skip


def add_model_args(p: argparse.ArgumentParser, *, policy_default: str | None = "fixed:k=1") -> None:
    g = p.add_argument_group("engine model")
    if policy_default is not None:
        g.add_argument("--policy", default=policy_default, metavar="SPEC",
                       help=f"name or name:key=value,... (default {policy_default}); "
                       "see `spectune policies`")  # fmt: skip
    g.add_argument("--profile", default=DEFAULT_COST, metavar="SPEC",
                   help=f"cost model: builtin:NAME, analytic:k=v,..., or FILE.yaml "
                   f"(default {DEFAULT_COST})")  # fmt: skip
    g.add_argument("--acceptance", default=DEFAULT_ACCEPTANCE, metavar="SPEC",
                   help="paper:NAME, records:FILE.npz[?temps=CAL] or FILE.yaml "
                   f"(default {DEFAULT_ACCEPTANCE})")  # fmt: skip
    g.add_argument("--gamma", type=bounded_int(1, 64), default=None,
                   help="draft tokens per step (default: the acceptance model's)")  # fmt: skip


def add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--max-concurrency", type=bounded_int(1, MAX_CONCURRENCY), default=64,
                   help="running requests at most (default 64)")  # fmt: skip
    g.add_argument("--kv-capacity-tokens", type=bounded_int(0, 10**12), default=0,
                   help="KV cache capacity in tokens; 0 = unlimited (default)")  # fmt: skip
    g.add_argument("--max-prefill-tokens", type=positive_int, default=2048,
                   help="chunked prefill: prompt tokens per step (default 2048)")  # fmt: skip
    g.add_argument("--prefill", choices=("colocated", "disaggregated"), default="colocated",
                   help="colocated: prompts prefilled in chunks in this server's steps (default); "
                   "disaggregated: a decode-only instance, each request arriving after its "
                   "prefill time on a prefill instance with its KV ready")  # fmt: skip
    g.add_argument("--clamp-to-context", action="store_true",
                   help="trim requests longer than the engine's context (counted) instead of "
                   "rejecting them (counted and stated, as vLLM rejects them)")  # fmt: skip
    g.add_argument("--seed", type=seed_int, default=0, help="the one seed (default 0)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g.add_argument(
        "--out", metavar="DIR", help="write requests.csv and summary.json (live: texts.jsonl)"
    )
    add_force(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_force(p) -> None:
    p.add_argument(
        "--force", action="store_true", help="replace output files, write into any directory"
    )


def workload_from_args(args: argparse.Namespace, cost: Any = None) -> Workload:
    """The workload of the parsed options (``cost``: see :func:`fit_default`)."""
    source = args.trace or args.workload or DEFAULT_WORKLOAD
    spec = WorkloadSpec(
        source=source,
        format=args.format,
        rate_scale=args.rate_scale,
        limit=args.limit,
        start_s=args.start,
        duration_s=args.duration,
        max_prompt_tokens=args.max_prompt_tokens,
        max_output_tokens=args.max_output_tokens,
        skip_bad_rows=args.skip_bad_rows,
        domain_mix=parse_domain_mix(args.domain_mix) if args.domain_mix else (),
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        num_requests=args.num_requests,
        seed=args.seed,
    )
    return open_workload(fit_default(spec, cost))


def models_from_args(args: argparse.Namespace):
    """(cost model, acceptance model, gamma) from --profile, --acceptance, --gamma."""
    cost = load_cost(args.profile)
    acceptance = load_acceptance(args.acceptance)
    return cost, acceptance, args.gamma or acceptance.gamma


def policy_for(spec: str, gamma: int, option: str = "--policy"):
    """The policy of ``spec``, refused if one of its draft-length parameters exceeds ``gamma``."""
    from policies import make_policy
    from policies.registry import check_gamma

    policy = make_policy(spec)
    check_gamma(policy, gamma, option)
    return policy


def server_from_args(args: argparse.Namespace, gamma: int) -> ServerConfig:
    return ServerConfig(
        max_concurrency=args.max_concurrency,
        kv_capacity_tokens=args.kv_capacity_tokens,
        max_prefill_tokens=args.max_prefill_tokens,
        gamma=gamma,
        clamp_to_context=getattr(args, "clamp_to_context", False),
        prefill=getattr(args, "prefill", "colocated"),
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether the command draws progress (``runner.cli.progress.enabled``)."""
    from runner.cli.progress import enabled

    return enabled(args)
