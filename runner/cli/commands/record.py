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
import shlex
import sys
import time
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
    from engine.data import DOMAINS

    domains = tuple(d for d in args.domains.split(",") if d)
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains:
        raise InputError(f"--domains: unknown domain(s) {bad} (known: {', '.join(DOMAINS)})")
    out = out_file(args.out, force=args.force)
    given_cost = None
    if args.cost:  # read now, so a bad --cost fails before any decoding
        from profiles.builtin import load_cost

        given_cost = load_cost(args.cost)
    if args.drafter == "none":
        raise InputError("--drafter: records need a drafter")
    from engine.load import build_engine, resolve_device
    from engine.recorder import UNIFORM, RecordConfig, decode, prompts_for, records_arrays
    from policies import make_policy
    from profiles.records import Records, write_records
    from profiles.store import cost_to_dict

    device = resolve_device(args.device, args.threads)
    engine, policy = build_engine(args.target, args.drafter, args.policy, device=device,
                                  temperature=1.0, slots=args.slots)  # fmt: skip
    cfg = RecordConfig(domains, args.requests, args.prompt_len, args.max_new_tokens, args.seed)
    if cfg.prompt_len + cfg.max_new_tokens + engine.gamma + 2 > engine.max_len:
        raise InputError(f"--prompt-len plus --max-new-tokens exceeds the context "
                         f"({engine.max_len - engine.gamma - 2} tokens)")  # fmt: skip
    record_spec = policy.spec if args.policy else UNIFORM  # uniform: recorder.decode(None)
    checks = [make_policy(spec) for spec in args.check]
    policies = [policy, *checks]
    from policies.registry import check_gamma

    for pol in policies:
        check_gamma(pol, engine.gamma, "--policy/--check")
    cost = _cost(args.cost, policies, given_cost)
    prompts = {d: prompts_for(d, cfg) for d in domains}
    total = sum(map(len, prompts.values())) * len(policies)
    bar = progress.bar(args, "record", total=total, unit="req")
    t0 = time.perf_counter()
    specs = [record_spec, *(p.spec for p in checks)]
    runs = {spec: {} for spec in specs}
    try:
        followed = [None if args.policy is None else policy, *checks]
        for spec, pol in zip(specs, followed, strict=True):
            for d in domains:
                runs[spec][d] = decode(engine, prompts[d], cfg.max_new_tokens, pol,
                                       cost=cost, seed=cfg.seed, done=bar.update)  # fmt: skip
    finally:
        bar.close()
    from engine.provenance import checkpoint_digest, environment

    env = environment(device)
    engine_runs = {spec: {d: r.summary() for d, r in by.items()} for spec, by in runs.items()}
    meta = {
        "drafter": args.drafter,
        "target": args.target,
        "checkpoints_sha256": {
            "target": checkpoint_digest(args.target),
            "drafter": checkpoint_digest(args.drafter),
        },
        "gamma": engine.gamma,
        "temperature": 1.0,
        "seed": cfg.seed,
        "source": f"engine {Path(args.target).stem} + {Path(args.drafter).stem}, "
        f"held-out prompts, {record_spec}, {env['date'][:10]}, commit {env['commit'][:12]}",
        "spectune_version": _version(),
        "command": "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "policy": record_spec,
        "domains": list(domains),
        "requests_per_domain": cfg.requests,
        "prompt_len": cfg.prompt_len,
        "max_new_tokens": cfg.max_new_tokens,
        "slots": args.slots,
        "cost": cost.source if cost is not None else None,
        "cost_spec": args.cost or (_DEFAULT_COST if cost is not None else None),
        # the cost model the policies saw, so the engine's figures stay reproducible when the
        # named profile is re-measured (profiles.store.cost_from_dict rebuilds it)
        "cost_profile": cost_to_dict(cost) if cost is not None else None,
        "engine_runs": engine_runs,
        "wall_s": round(time.perf_counter() - t0, 1),
        **{k: env[k] for k in ("device", "threads", "torch", "date", "commit")},
    }
    records = Records(**records_arrays(runs[record_spec]), meta=meta)
    write_records(out, records)
    summary = {
        "out": str(out),
        "rounds": records.rounds,
        "requests": records.requests,
        "gamma": records.gamma,
        "engine_runs": engine_runs,
        "wall_s": meta["wall_s"],
    }
    if args.json:
        print(json_line(summary))
    else:
        print(f"wrote {out}: {records.rounds} rounds of {records.requests} requests "
              f"({meta['wall_s']:.0f} s)")  # fmt: skip
        for spec, by in engine_runs.items():
            for d, s in by.items():
                print(f"  {spec:>12} {d:>5}: accepted length {s['mean_accepted_len']:.3f}, "
                      f"verify length {s['mean_verify_len']:.3f}, "
                      f"{s['request_steps']} request-steps")  # fmt: skip
        print(f"  use: --acceptance records:{out}")
    return 0


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


def _version() -> str:
    from runner import __version__

    return __version__
