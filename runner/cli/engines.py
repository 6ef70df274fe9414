"""The builtin engines and the live backend built from CLI options (``replay --backend live``);
torch loads lazily.

The engine's context is short, so a live replay clamps prompt and output lengths to fit it: by
default prompts to half the context and outputs to what is left after one step of drafts. The
clamps go through the workload's own ``max_*_tokens`` options, so their counts are reported
(``prompts_clamped``, ``outputs_clamped``) like any other clamp.
"""

from __future__ import annotations

import argparse

from profiles.errors import InputError
from runner.cli.options import temperature_float, threads_int

ENGINES = {"builtin:tiny": ("target", "dspark")}  # engine name -> (target, default drafter)


def add_live_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live backend (--backend live)")
    g.add_argument("--engine", default="builtin:tiny", help="engine (default builtin:tiny)")
    g.add_argument("--drafter", default="dspark", help="drafter checkpoint (default dspark)")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    g.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads (default 1)")
    g.add_argument("--live-timing", choices=("measured", "cost"), default="measured",
                   help="advance time by measured engine wall time (default) or by the cost "
                   "model for the same steps")  # fmt: skip
    g.add_argument("--temperature", type=temperature_float, default=1.0,
                   help="live sampling temperature (default 1; 0 = greedy)")  # fmt: skip


def engine_context(args: argparse.Namespace) -> int:
    """Context length of the chosen engine's target (reads the checkpoint's card only)."""
    from engine import checkpoint

    name = _target_name(args.engine)
    path = checkpoint.path_of(name)
    if not path.exists():
        raise InputError(f"{path}: no such target checkpoint (train it: spectune train target)")
    return int(checkpoint.read_meta(path)["config"]["max_len"])


def clamp_to_context(args: argparse.Namespace, context: int, gamma: int) -> None:
    """Set default prompt/output clamps so every request fits the engine's context."""
    prompt_cap = context // 2
    args.max_prompt_tokens = min(args.max_prompt_tokens or prompt_cap, prompt_cap)
    out_cap = context - args.max_prompt_tokens - gamma - 2
    args.max_output_tokens = min(args.max_output_tokens or out_cap, out_cap)


def build_live_backend(args: argparse.Namespace, policy, cost, temperatures=None):
    """(backend, gamma) for ``--backend live``; refuses oracle policies."""
    from engine.data import load_all
    from engine.decode import check_policy
    from engine.live import LiveBackend
    from engine.load import build_engine, resolve_device

    check_policy(policy)
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {args.temperature}")
    device = resolve_device(args.device, args.threads)
    engine, _ = build_engine(
        _target_name(args.engine), args.drafter, policy, device=device,
        temperature=args.temperature, slots=args.max_concurrency,
    )  # fmt: skip
    backend = LiveBackend(
        engine, load_all("heldout"), seed=args.seed, temperatures=temperatures,
        time=args.live_timing, cost=cost,
    )  # fmt: skip
    return backend, engine.gamma


def engine_checkpoints(engine: str) -> tuple[str, str]:
    """(target, default drafter) checkpoint names of a builtin ``--engine``."""
    if engine not in ENGINES:
        raise InputError(f"--engine: unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return ENGINES[engine]


def _target_name(engine: str) -> str:
    return engine_checkpoints(engine)[0]
