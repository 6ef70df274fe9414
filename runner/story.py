"""Steps 2–5 of ``spectune demo``: pick an SLA, tune for it, export, print the gain over MTP-1.

(Step 1, the policy comparison on the default workload, is ``runner/commands/demo.py``; all
steps use the default profile — whatever ``profiles.builtin.DEFAULT_COST`` names, so the demo
follows the default when a measured profile replaces the analytic one.)

2. Picks a moderate interactivity SLA unless ``--sla`` is given: tokens/s/user p50 of at least
   ``--sla-fraction`` (default 0.6) of what fixed:k=1 achieves for a single user on this
   profile — MTP-1 then still sustains a real batch, as at the paper's 80 tok/s/user anchor.
3. Tunes fixed:k=1, fixed:k=5, dspark_lagged (parameters searched) and oracle (the reference)
   over concurrency caps in closed loop (``spectune tune``), writes ``best.yaml`` and plots.
4. Exports ``best.yaml`` to every format (``spectune export --format all``).
5. Prints throughput at the SLA of each policy and the tuned scheduler's gain over fixed:k=1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runner.options import positive_float, show_progress, workers_int

POLICIES = ("fixed:k=1", "fixed:k=5", "dspark_lagged", "oracle")
LOADS = (1, 2, 4, 8, 16, 32, 64, 128)


def add_story_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-tune", action="store_true", help="stop after the comparison table")
    p.add_argument("--out", default="runs/demo", metavar="DIR",
                   help="folder for results, plots and exports (default %(default)s)")  # fmt: skip
    p.add_argument("--sla", metavar="METRIC>=X", help="SLA (default: moderate, derived)")
    p.add_argument("--sla-fraction", type=positive_float, default=0.6,
                   help="default SLA = this fraction of fixed:k=1's single-user tok/s")  # fmt: skip
    p.add_argument("--workers", type=workers_int, default=min(2, os.cpu_count() or 1),
                   help="parallel simulations (default %(default)s)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="fewer loads, requests and rounds")
    p.add_argument("--resume", action="store_true", help="reuse points of an earlier story")


def tell(args: argparse.Namespace) -> int:
    """Steps 2–5 (SLA, tune, export, result) on the parsed demo arguments."""
    from profiles.builtin import load_acceptance, load_cost
    from runner.commands.export import describe
    from runner.commands.tune import execute
    from runner.export import FORMATS, load_export, write_export
    from runner.options import DEFAULT_WORKLOAD, fit_default
    from runner.scheduler import load_scheduler, parse_sla
    from runner.sweep import METRICS
    from runner.tune import TuneConfig
    from simulator.server import ServerConfig
    from simulator.workload import WorkloadSpec, open_workload

    out = Path(args.out)
    cost, acceptance = load_cost(args.profile), load_acceptance(args.acceptance)
    gamma = args.gamma or acceptance.gamma
    server = ServerConfig(gamma=gamma)
    spec = fit_default(WorkloadSpec(DEFAULT_WORKLOAD, seed=args.seed), cost)
    say = print
    say()
    if args.sla:
        sla = parse_sla(args.sla, METRICS)
        why = "given"
    else:
        solo = _solo_speed(spec, cost, acceptance, server, args.seed)
        sla = parse_sla(f"tps_per_user_p50>={round(args.sla_fraction * solo):d}")
        why = f"{args.sla_fraction:g} x fixed:k=1's single-user {solo:.0f} tok/s/user"
    say(f"\n2. SLA        {sla}   ({why})")

    quick = args.quick
    cfg = TuneConfig(policies=POLICIES, sla=(sla,), workload=spec, profile=args.profile,
                     acceptance=args.acceptance, server=server,
                     loads=(2, 8, 32, 128) if quick else LOADS, requests=32 if quick else 150,
                     per_user=2 if quick else 6, seed=args.seed, rounds=1,
                     bisect=1 if quick else 6)  # fmt: skip
    say(f"3. tune       {', '.join(POLICIES)} at concurrency "
        f"{', '.join(f'{x:g}' for x in cfg.loads)} (closed loop) ...")  # fmt: skip
    sys.stdout.flush()
    summary = execute(cfg, cost, acceptance, open_workload(spec).label, out / "tune",
                      workers=args.workers, resume=args.resume,
                      progress=show_progress(args))  # fmt: skip
    for entry, d in summary["policies"].items():
        gain = d.get("gain_vs_fixed_k1")
        thr = f"{d['throughput_at_sla']:8,.0f} tok/s at N={d['load']:g}" if d["feasible"] \
            else "   cannot meet the SLA at any load"  # fmt: skip
        extra = f"   {gain:+.0%} vs fixed:k=1" if gain is not None and d["feasible"] else ""
        say(f"   {entry:<14} {thr}{extra}   ({d['best']})")

    if summary["best"] is None:
        say("\nno lossless policy meets the SLA: nothing to export")
        return 0
    best = out / "tune" / "best.yaml"
    cfg_best = load_scheduler(best)
    say(f"\n4. export     {best}")
    for fmt in FORMATS:
        m = write_export(cfg_best, fmt, out / "export" / fmt, source=str(best))
        load_export(fmt, out / "export" / fmt)
        lines = describe(out / "export" / fmt, m).splitlines()
        say("   " + lines[0])
        for line in lines[1:]:
            if not line.strip().startswith(("note:", "launch:")):
                say("   " + line)

    d = summary["policies"][summary["best"]]
    base = summary["policies"].get("fixed:k=1", {})
    say(f"\n5. result     tuned {d['best']}")
    if base.get("feasible"):
        say(f"             {d['throughput_at_sla']:,.0f} tok/s at {sla} vs fixed:k=1 (MTP-1) "
            f"{base['throughput_at_sla']:,.0f} tok/s: {d['gain_vs_fixed_k1']:+.0%}")  # fmt: skip
    else:
        say(f"             {d['throughput_at_sla']:,.0f} tok/s at {sla}; fixed:k=1 (MTP-1) "
            "cannot meet this SLA at any concurrency")  # fmt: skip
    ratios = d.get("share_of_oracle") or {}
    if ratios:
        say("             share of oracle (the best response: knows each draft's fate, pays the"
            " true step cost): " + ", ".join(
            f"N={float(k):g} {v:.0%}" for k, v in ratios.items()))  # fmt: skip
    say(
        f"plots        {out / 'tune' / 'frontier.png'} (Figure 7), "
        f"{out / 'tune' / 'load.png'} (Figure 8)"
    )
    return 0


def _solo_speed(spec, cost, acceptance, server, seed: int) -> float:
    """fixed:k=1's tokens/s/user p50 with one user (closed loop, concurrency 1)."""
    from runner.sweep import PointTask, run_point

    task = PointTask("fixed:k=1", "concurrency", 1.0, spec, "", "", server, 40, seed)
    return float(run_point(task, models=(cost, acceptance))["tps_per_user_p50"])
