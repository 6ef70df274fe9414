"""Decode a prompt with the engine: speculative (a drafter and a verify-length policy) or plain.

Greedy mode (``--greedy`` or ``--temperature 0``) reproduces plain greedy decoding token for token;
at temperature > 0 speculative rejection sampling keeps the target's distribution. ``--drafter
none`` decodes with the target alone. ``--json`` prints text, tokens, tokens_per_s,
mean_accepted_len and steps.
"""

from __future__ import annotations

import argparse

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli.options import bounded_int, seed_int, temperature_float, threads_int

NAME = "decode"
HELP = "decode a prompt with the engine (speculative or plain), greedy or sampled"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="prompt text (UTF-8 bytes)")
    parser.add_argument("--drafter", default="dspark", help="dspark, dflash, ar, mtp1 or none")
    parser.add_argument("--policy", help="verify-length policy spec (default fixed:k=gamma)")
    parser.add_argument("--config", metavar="BEST.yaml",
                        help="a tuned scheduler (spectune.scheduler/v1): its policy, cost table "
                        "and STS temperatures replace --policy and --cost")  # fmt: skip
    parser.add_argument("--cost", help="cost profile YAML for policies that read a cost model")
    parser.add_argument("--temperature", type=temperature_float, default=1.0,
                        help="sampling temperature")  # fmt: skip
    parser.add_argument("--greedy", action="store_true", help="temperature 0 (argmax)")
    parser.add_argument("--max-new-tokens", type=bounded_int(1, 1 << 20), default=128,
                        help="tokens to generate")  # fmt: skip
    parser.add_argument("--seed", type=seed_int, default=0, help="the one seed of the run")
    parser.add_argument("--target", default="target", help="target checkpoint (name or path)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from engine.decode import complete
    from engine.load import build_engine, resolve_device
    from policies import make_policy
    from policies.registry import check_gamma

    prompt = _prompt(args)
    cost_given = _given_cost(args)
    temperature = 0.0 if args.greedy else args.temperature
    tuned = _tuned(args)
    device = resolve_device(args.device, args.threads)
    given = make_policy(args.policy) if args.policy else None
    engine, policy = build_engine(
        args.target, args.drafter, given, device=device, temperature=temperature, slots=1
    )
    if policy is not None:
        check_gamma(policy, engine.gamma)
    cost = _cost(args, engine, policy, tuned, cost_given)
    room = engine.max_len - engine.gamma - 2
    if len(prompt) + args.max_new_tokens > room:
        raise InputError(f"--prompt plus --max-new-tokens exceeds the context ({room} bytes)")
    temps = tuned.sts.temperatures if tuned is not None else None
    done = complete(engine, prompt, args.max_new_tokens, policy=policy, cost=cost,
                    seed=args.seed, temperatures=temps)  # fmt: skip
    result = {**{k: done[k] for k in ("text", "tokens", "tokens_per_s", "mean_accepted_len",
                                      "steps")},
              "drafter": args.drafter, "policy": policy.spec if policy is not None else "none",
              "temperature": temperature, "seed": args.seed, "draft_s": done["draft_s"],
              "verify_s": done["verify_s"], "device": str(device)}  # fmt: skip
    if tuned is not None:  # what runs, to compare with what was tuned
        from runner.scheduler import cost_hash

        result["config"] = {"path": args.config, "cost": cost.source,
                            "cost_sha256": cost_hash(cost),
                            "sts_temperatures": list(temps or ())}  # fmt: skip
    _print(args, result)
    return 0


def _tuned(args: argparse.Namespace):
    """The --config's scheduler, whose policy replaces --policy (the closed loop: run exactly
    what was tuned), or None."""
    if not args.config:
        return None
    from runner.scheduler import load_scheduler

    tuned = load_scheduler(args.config)
    args.policy = tuned.policy().spec
    return tuned


def _prompt(args: argparse.Namespace) -> list[int]:
    """The prompt's UTF-8 bytes, after the checks of the numbers that bound the run."""
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {args.temperature}")
    if not args.prompt:
        raise InputError("--prompt is empty")
    try:
        return list(args.prompt.encode("utf-8"))
    except UnicodeEncodeError as exc:  # bytes the terminal's locale could not decode
        raise InputError(f"--prompt is not valid UTF-8 (position {exc.start})") from None


def _given_cost(args: argparse.Namespace):
    """The --cost model, read before the engine loads (so a bad file fails first), or None."""
    if not args.cost:
        return None
    from profiles.store import read_cost

    return read_cost(args.cost)


def _cost(args: argparse.Namespace, engine, policy, tuned, given):
    """The cost model the policy sees: the tuned table, else --cost, else a quick measurement
    of this engine (None when the policy reads none)."""
    if tuned is not None:
        if engine.gamma != tuned.gamma:
            raise InputError(f"{args.config}: tuned for gamma {tuned.gamma}, the {args.drafter} "
                             f"drafter proposes {engine.gamma}")  # fmt: skip
        return tuned.cost_model()
    if policy is None or "cost" not in policy.reads:
        return None
    if given is not None:
        return given
    from engine.decode import measure_cost

    return measure_cost(engine)


def _print(args: argparse.Namespace, result: dict) -> None:
    if args.json:
        print(json_line(result))
        return
    print(result["text"])
    print(
        f"[{len(result['tokens'])} tokens in {result['steps']} steps, "
        f"{result['tokens_per_s']} tok/s, mean accepted length {result['mean_accepted_len']}]"
    )
