"""The README demo, the whole story in one command, no files needed.

1. Replays ``builtin:azure-conv-like`` (synthetic, fitted to the Azure 2023 conversation trace:
   its lengths and burstiness) at two loads through the simulated server with the default cost
   and acceptance profiles, once per policy, and prints one comparison table. Loads are
   fractions of the server's capacity on this profile (the request rate fixed:k=1 sustains with
   every request queued at t = 0), so the table means the same on a GPU or a CPU profile.
   Every run uses the same seed, so the policies see the same requests and acceptance draws.
2–5. Picks a moderate SLA, tunes the policies for it over concurrency caps, exports the tuned
   scheduler to every production format and prints its gain over fixed:k=1 (MTP-1), with the
   plots in ``--out`` (see ``runner/cli/story.py``). ``--no-tune`` stops after step 1; ``--json``
   prints step 1 only, as one JSON object.
"""

from __future__ import annotations

import argparse
import sys

from profiles.documents import json_line
from runner.cli import progress
from runner.cli.options import (
    MAX_REQUESTS,
    add_force,
    add_model_args,
    add_server_args,
    bounded_int,
    models_from_args,
    positive_float,
    server_from_args,
)
from runner.cli.story import add_story_args, tell

NAME = "demo"
HELP = "compare verification policies on the embedded default workload"

POLICIES = ("none", "fixed:k=1", "fixed:k=5", "dspark", "dspark_lagged")
DEFAULT_POLICIES = ",".join(POLICIES)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", default=DEFAULT_POLICIES,
                   help="comma-separated policy specs (default: %(default)s)")  # fmt: skip
    p.add_argument("--loads", default="0.5,0.9", metavar="LIST",
                   help="loads as fractions of capacity (default 0.5,0.9)")  # fmt: skip
    p.add_argument("--num-requests", type=bounded_int(0, MAX_REQUESTS), default=1000,
                   help="requests per run (default 1000)")  # fmt: skip
    add_model_args(p, policy_default=None)
    add_server_args(p)
    p.add_argument("--json", action="store_true", help="print step 1 as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_story_args(p)
    add_force(p)


def run(args: argparse.Namespace) -> int:
    from runner.compare import compare
    from runner.paths import out_dir

    if not args.no_tune:  # checked before any simulation
        out_dir(args.out, NAME, force=args.force, known=("tune", "export"))
    policies, missing = _policies(args.policies)
    loads = _loads(args.loads)
    cost, acceptance, gamma = models_from_args(args)
    config = server_from_args(args, gamma)
    with progress.bar(args, "replay", total=len(loads) * len(policies), unit="run") as bar:

        def step(note: str) -> None:
            bar.note(note)
            bar.update(1)

        label, rows = compare(policies, loads, cost, acceptance, config, args.num_requests,
                              args.seed, on_run=step)  # fmt: skip
    if args.json:
        print(json_line({"workload": label, "skipped_unregistered": missing, "runs": rows}))
        return 0
    print(f"profile     {cost.source}")
    print(f"acceptance  {acceptance.source}")
    print(f"\n1. replay   {label}")
    print(f"            server: max concurrency {config.max_concurrency}, gamma {gamma}, "
          f"seed {args.seed}\n")  # fmt: skip
    print(table(rows))
    _regime(cost)
    if missing:
        print(f"\n(not registered in this build, skipped: {', '.join(missing)})")
    if args.no_tune:
        return 0
    sys.stdout.flush()
    return tell(args)


def _regime(cost) -> None:
    """Say where this engine's regime differs from a GPU's (a padded engine, e.g. the CPU one)."""
    from policies.padded import prices_longest

    if prices_longest(cost):
        print("\nregime      this engine pads every request's verify tokens to the batch's longest"
              "\n            (the CPU engine's batched attention), so batching gains it far less"
              "\n            than a paged GPU engine: DSpark plans whole levels here and, at high"
              "\n            concurrency, ties the best static k, where on builtin:h100-8b it"
              '\n            beats it (measured in BENCHMARKS.md "Tuning")')  # fmt: skip


def _policies(text: str):
    """([(spec, policy)], specs skipped as unregistered): the default list skips names this build
    lacks; a list the user gave must name registered policies only."""
    from policies import available, make_policy, parse_spec
    from profiles.errors import InputError

    specs = [s.strip() for s in text.split(",")]
    if "" in specs:
        raise InputError(f"--policies: empty entry in {text!r}")
    if text != DEFAULT_POLICIES:  # the user's own list: every name must exist
        for s in specs:
            make_policy(s)
    known = available()
    missing = [s for s in specs if parse_spec(s)[0] not in known]
    return [(s, make_policy(s)) for s in specs if s not in missing], missing


def _loads(text: str) -> list[float]:
    from profiles.errors import InputError

    try:
        return [positive_float(x) for x in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"--loads: {exc}") from None


def table(rows: list[dict]) -> str:
    """The comparison table: one line per (load, policy), gains relative to fixed:k=1."""
    head = ("load (req/s)", "policy", "tok/s", "vs k=1", "tok/s/user p50", "TTFT p99 ms",
            "TPOT p50 ms", "accepted/step", "verify/req")  # fmt: skip
    lines = [head]
    base = {r["load"]: r["throughput_tok_s"] for r in rows if r["policy"] == "fixed:k=1"}
    for r in rows:
        ref = base.get(r["load"])
        gain = f"{r['throughput_tok_s'] / ref - 1:+.0%}" if ref else ""
        lines.append((
            f"{r['load']:g}x ({r['rate_req_s']:.2f}/s)", r["label"],
            f"{r['throughput_tok_s']:.0f}", gain,
            _num(r["tps_per_user_p50"], "{:.1f}"), _num(r["ttft_p99_s"], "{:.0f}", 1e3),
            _num(r["tpot_p50_s"], "{:.2f}", 1e3), f"{r['mean_accepted_len']:.2f}",
            f"{r['mean_verify_len']:.2f}",
        ))  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        cells = [str(c).ljust(w) if i < 2 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]  # fmt: skip
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _num(v, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if v is None else fmt.format(v * scale)
