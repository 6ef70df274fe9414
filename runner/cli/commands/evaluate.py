"""Evaluate drafters on held-out prompts: accepted length τ per step (DSpark Table 1) and
per-position conditional acceptance (Figure 2), with fixed-length verification.

Prints a table (or ``--json``: ``results[drafter][domain]`` with ``tau``, ``cond_accept``,
``conf_mean``, ``tokens``, ``steps``) and writes a PNG plot with ``--plot``.
"""

from __future__ import annotations

import argparse
import sys

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli import progress
from runner.cli.options import add_force, bounded_int, seed_int, temperature_float, threads_int

NAME = "evaluate"
HELP = "drafter accepted length per domain (Table 1) and per-position acceptance (Figure 2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drafters", default="dspark,dflash,ar,mtp1", help="comma-separated")
    parser.add_argument("--domains", default="code,chat,math", help="comma-separated")
    parser.add_argument("--gamma", type=bounded_int(1, 64), default=7,
                        help="drafts verified per step")  # fmt: skip
    parser.add_argument("--prompts", type=bounded_int(1, 1000, "held-out prompts are decoded "
                        "together"), default=16, help="held-out prompts per domain")  # fmt: skip
    parser.add_argument("--new-tokens", type=bounded_int(1, 1 << 20), default=128,
                        help="tokens per prompt")  # fmt: skip
    parser.add_argument("--temperature", type=temperature_float, default=1.0,
                        help="sampling temperature")  # fmt: skip
    parser.add_argument("--seed", type=seed_int, default=0, help="prompt choice and sampling seed")
    parser.add_argument("--target", default="target", help="target checkpoint (name or path)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads")
    add_force(parser)
    parser.add_argument("--plot", help="write the per-position acceptance plot (PNG) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _names(text: str, known: tuple[str, ...] | None, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"--{what} is empty")
    for n in names:
        if known is not None and n not in known:
            raise InputError(f"--{what}: unknown {n!r} (known: {', '.join(known)})")
    return names


def _blocks(drafters: list[str]) -> dict[str, int]:
    """Each drafter's block size γ, read from its checkpoint's metadata (no weights loaded)."""
    from engine import checkpoint
    from engine.drafter import DrafterConfig

    blocks = {}
    for n in drafters:
        path = checkpoint.path_of(n)
        if not path.exists():
            raise InputError(f"--drafters: no checkpoint {path}")
        try:
            blocks[n] = DrafterConfig(**checkpoint.read_meta(path)["config"]).gamma
        except (TypeError, ValueError) as e:
            raise InputError(f"--drafters: {path} is not a drafter checkpoint ({e})") from None
    return blocks


def _clips(gamma: int, blocks: dict[str, int]) -> list[str]:
    """Refuse a γ no chosen drafter reaches; name each drafter run at its own smaller block."""
    if gamma > max(blocks.values()):
        known = ", ".join(f"{n} {g}" for n, g in blocks.items())
        raise InputError(f"--gamma {gamma} exceeds every drafter's block ({known})")
    return [f"note: {n} drafts {g} token(s) per step, so it is evaluated at gamma {g}, not {gamma}"
            for n, g in blocks.items() if g < gamma]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from engine.evaluate import evaluate, plot
    from engine.load import resolve_device

    if args.plot:
        from runner.paths import out_file

        out_file(args.plot, "--plot", force=args.force)
    cfg, drafters, domains, notes = _config(args)
    device = resolve_device(args.device, args.threads)
    from engine.model import TargetConfig

    room = TargetConfig().max_len // 2
    if args.new_tokens > room:
        raise InputError(f"--new-tokens must be <= {room} (half the engine's context)")
    with progress.bar(args, "evaluate", total=len(drafters) * len(domains), unit="run") as bar:
        results = evaluate(drafters, domains, cfg, target=args.target, device=device,
                           progress=bar)  # fmt: skip
    if args.plot:
        plot(results, args.plot)
    for line in notes:
        print(line, file=sys.stderr)
    _print(args, cfg, results)
    return 0


def _config(args: argparse.Namespace):
    """(EvalConfig, drafters, domains, notes on drafters run at a smaller γ) from the options."""
    from engine.data import DOMAINS
    from engine.evaluate import EvalConfig

    drafters = _names(args.drafters, None, "drafters")
    domains = _names(args.domains, DOMAINS, "domains")
    blocks = _blocks(drafters)
    for key in ("gamma", "prompts", "new_tokens"):
        if getattr(args, key) < 1:
            raise InputError(f"--{key.replace('_', '-')} must be >= 1")
    if args.temperature < 0:
        raise InputError("--temperature must be >= 0")
    notes = _clips(args.gamma, blocks)
    cfg = EvalConfig(gamma=args.gamma, prompts=args.prompts, new_tokens=args.new_tokens,
                     temperature=args.temperature, seed=args.seed)  # fmt: skip
    return cfg, drafters, domains, notes


def _print(args: argparse.Namespace, cfg, results: dict) -> None:
    from engine.evaluate import table

    if args.json:
        print(json_line({"config": cfg.__dict__, "results": results}))
        return
    print(f"accepted length tau per step (gamma up to {args.gamma}, temperature "
          f"{args.temperature}; each drafter's gamma in its column)")  # fmt: skip
    print(table(results))
    for name, per in results.items():
        for domain, r in per.items():
            acc = " ".join(f"{x:.2f}" for x in r["cond_accept"])
            print(f"{name:<7} {domain:<5} cond. acceptance by position: {acc}")
    if args.plot:
        print(f"wrote {args.plot}")
