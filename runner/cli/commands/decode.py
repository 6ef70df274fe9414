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
    from engine.load import build_engine, resolve_device

    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {args.temperature}")
    if not args.prompt:
        raise InputError("--prompt is empty")
    try:
        prompt = list(args.prompt.encode("utf-8"))
    except UnicodeEncodeError as exc:  # bytes the terminal's locale could not decode
        raise InputError(f"--prompt is not valid UTF-8 (position {exc.start})") from None
    cost_given = None
    if args.cost:  # read now, so a bad --cost fails before the engine loads
        from profiles.store import read_cost

        cost_given = read_cost(args.cost)
    temperature = 0.0 if args.greedy else args.temperature
    tuned = None
    if args.config:  # the closed loop: run exactly what was tuned
        from runner.scheduler import load_scheduler

        tuned = load_scheduler(args.config)
        args.policy = tuned.policy().spec
    device = resolve_device(args.device, args.threads)
    engine, policy = build_engine(
        args.target, args.drafter, args.policy, device=device, temperature=temperature, slots=1
    )
    if policy is not None:
        from policies.registry import check_gamma

        check_gamma(policy, engine.gamma)
    cost = None
    if tuned is not None:
        if engine.gamma != tuned.gamma:
            raise InputError(f"{args.config}: tuned for gamma {tuned.gamma}, the {args.drafter} "
                             f"drafter proposes {engine.gamma}")  # fmt: skip
        cost = tuned.cost_model()
    elif policy is not None and "cost" in policy.reads and cost_given is not None:
        cost = cost_given
    elif policy is not None and "cost" in policy.reads:
        from engine.decode import measure_cost

        cost = measure_cost(engine)
    from engine.decode import generate

    room = engine.max_len - engine.gamma - 2
    if len(prompt) + args.max_new_tokens > room:
        raise InputError(f"--prompt plus --max-new-tokens exceeds the context ({room} bytes)")
    temps = tuned.sts.temperatures if tuned is not None else None
    trace = generate(engine, [prompt], args.max_new_tokens, policy=policy, cost=cost,
                     seed=args.seed, temperatures=temps)  # fmt: skip
    # The first new token comes from the prefill; the decode steps supply the rest.
    tokens = ([trace.first[0]] + trace.outputs[0])[: args.max_new_tokens]
    text = bytes(tokens).decode("utf-8", errors="replace")
    result = {
        "text": text,
        "tokens": tokens,
        "tokens_per_s": round(trace.tokens_per_s, 2),
        "mean_accepted_len": round(trace.mean_accepted_len, 4),
        "steps": trace.steps,
        "drafter": args.drafter,
        "policy": policy.spec if policy is not None else "none",
        "temperature": temperature,
        "seed": args.seed,
        "draft_s": round(trace.draft_s, 4),
        "verify_s": round(trace.verify_s, 4),
        "device": str(device),
    }
    if tuned is not None:  # what runs, to compare with what was tuned
        from runner.scheduler import cost_hash

        result["config"] = {"path": args.config, "cost": cost.source,
                            "cost_sha256": cost_hash(cost),
                            "sts_temperatures": list(temps or ())}  # fmt: skip
    if args.json:
        print(json_line(result))
    else:
        print(text)
        print(
            f"[{len(tokens)} tokens in {trace.steps} steps, {result['tokens_per_s']} tok/s, "
            f"mean accepted length {result['mean_accepted_len']}]"
        )
    return 0
