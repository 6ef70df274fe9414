"""Record acceptance rounds from the real engine (``--acceptance records:FILE`` and calibration).

Held-out prompts of each domain are decoded with continuous batching at temperature 1; every
step verifies all γ drafts (so the accepted count A is known) while the outcome follows a verify
length ℓ drawn uniformly from 0..γ (or ``--policy``). One row per request-step: domain, request
id, step, raw confidence logits, A, ℓ (format: ``profiles/records.py``). The file's meta keeps
the engine's own mean accepted and verify lengths per domain, also for each ``--check`` policy
(the same prompts decoded again, rounds not stored) — what the simulator replaying the records
should reproduce — and the cost model that policies reading one saw (``--cost``, default
``builtin:cpu-tiny``).

  spectune record --drafter dspark --domains code,chat,math --out dspark.npz --check dspark
  spectune replay --acceptance records:dspark.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli import progress
from runner.cli.options import (
    MAX_SLOTS,
    add_force,
    bounded_int,
    seed_int,
    threads_int,
)
from runner.cli.text import command_line
from runner.paths import out_file

NAME = "record"
HELP = "record decoding rounds (confidences, accepted counts) from the engine as .npz records"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drafter", default="dspark", help="drafter checkpoint name or path")
    p.add_argument("--target", default="target", help="target checkpoint name or path")
    p.add_argument("--domains", default="code,chat,math", help="comma-separated domains")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="records file to write")
    p.add_argument("--requests", type=bounded_int(1, 10_000), default=48,
                   help="prompts per domain")  # fmt: skip
    p.add_argument("--prompt-len", type=bounded_int(1, 1 << 20), default=128,
                   help="prompt bytes")  # fmt: skip
    p.add_argument("--max-new-tokens", type=bounded_int(1, 1 << 20), default=128,
                   help="tokens per request")  # fmt: skip
    p.add_argument("--slots", type=bounded_int(1, MAX_SLOTS, "each slot holds a KV cache"),
                   default=8, help="requests decoded together")  # fmt: skip
    p.add_argument("--policy", help="verify-length policy followed (default: uniform random "
                   "lengths 0..gamma, which replay under any policy without bias)")  # fmt: skip
    p.add_argument("--check", action="append", default=[], metavar="POLICY",
                   help="also decode with POLICY; its means go in the meta")  # fmt: skip
    p.add_argument("--cost", help="cost profile for policies that read one (default: builtin "
                   "cpu-tiny when packaged)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, help="the one seed of the run")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads")
    add_force(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")


def run(args: argparse.Namespace) -> int:
    from engine.record import RecordConfig, record
    from profiles.records import write_records

    domains = _domains(args.domains)
    out = out_file(args.out, force=args.force)
    given_cost = None
    if args.cost:  # read now, so a bad --cost fails before any decoding
        from profiles.builtin import load_cost

        given_cost = load_cost(args.cost)
    if args.drafter == "none":
        raise InputError("--drafter: records need a drafter")
    cfg = RecordConfig(domains, args.requests, args.prompt_len, args.max_new_tokens, args.seed)
    engine, policy, checks, device = _engine(args, cfg)
    cost = _cost(args.cost, [policy, *checks], given_cost)
    with progress.bar(args, "record", unit="req") as bar:
        records = record(engine, cfg, policy if args.policy else None, checks,
                         target=args.target, drafter=args.drafter, device=device, cost=cost,
                         cost_spec=args.cost or (_DEFAULT_COST if cost is not None else None),
                         command=command_line(),
                         on_total=bar.start, done=bar.update)  # fmt: skip
    write_records(out, records)
    _print(args, out, records)
    return 0


def _domains(text: str) -> tuple[str, ...]:
    from engine.data import DOMAINS

    domains = tuple(d for d in text.split(",") if d)
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains:
        raise InputError(f"--domains: unknown domain(s) {bad} (known: {', '.join(DOMAINS)})")
    return domains


def _engine(args: argparse.Namespace, cfg):
    """The engine, its recording policy, the --check policies and the device: the context and
    every policy's γ checked."""
    from engine.load import build_engine, resolve_device
    from policies import make_policy
    from policies.registry import check_gamma

    device = resolve_device(args.device, args.threads)
    given = make_policy(args.policy) if args.policy else None
    engine, policy = build_engine(args.target, args.drafter, given, device=device,
                                  temperature=1.0, slots=args.slots)  # fmt: skip
    if cfg.prompt_len + cfg.max_new_tokens + engine.gamma + 2 > engine.max_len:
        raise InputError(f"--prompt-len plus --max-new-tokens exceeds the context "
                         f"({engine.max_len - engine.gamma - 2} tokens)")  # fmt: skip
    checks = [make_policy(spec) for spec in args.check]
    for pol in (policy, *checks):
        check_gamma(pol, engine.gamma, "--policy/--check")
    return engine, policy, checks, device


def _print(args: argparse.Namespace, out: Path, records) -> None:
    engine_runs, wall_s = records.meta["engine_runs"], records.meta["wall_s"]
    if args.json:
        print(json_line({"out": str(out), "rounds": records.rounds, "requests": records.requests,
                         "gamma": records.gamma, "engine_runs": engine_runs,
                         "wall_s": wall_s}))  # fmt: skip
        return
    print(f"wrote {out}: {records.rounds} rounds of {records.requests} requests "
          f"({wall_s:.0f} s)")  # fmt: skip
    for spec, by in engine_runs.items():
        for d, s in by.items():
            print(f"  {spec:>12} {d:>5}: accepted length {s['mean_accepted_len']:.3f}, "
                  f"verify length {s['mean_verify_len']:.3f}, "
                  f"{s['request_steps']} request-steps")  # fmt: skip
    print(f"  use: --acceptance records:{out}")


_DEFAULT_COST = "builtin:cpu-tiny"


def _cost(spec: str | None, policies, given=None):
    from profiles.builtin import BUILTIN_COSTS, load_cost

    if not any("cost" in p.reads for p in policies):
        return None
    if given is not None:
        return given
    if _DEFAULT_COST.partition(":")[2] in BUILTIN_COSTS:
        return load_cost(_DEFAULT_COST)
    raise InputError("a policy reads a cost model: pass --cost PROFILE.yaml")
