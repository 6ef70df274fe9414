"""Steps 2–5 of ``spectune demo``: pick an SLA, tune for it, export, print the gain over MTP-1.

(Step 1, the policy comparison on the default workload, is ``runner/cli/commands/demo.py``; all
steps use the ``--profile`` and ``--acceptance`` given, by default ``profiles.builtin``'s.)
The story calls the library (``runner.tune.tune``, ``runner.export``), never a command.

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

from runner.cli.options import positive_float, show_progress, workers_int

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
    from runner.tune import TuneConfig
    from simulator.server import ServerConfig
    from simulator.workload import DEFAULT_WORKLOAD, WorkloadSpec, fit_default

    out = Path(args.out)
    cost, acceptance = load_cost(args.profile), load_acceptance(args.acceptance)
    server = ServerConfig(gamma=args.gamma or acceptance.gamma)
    spec = fit_default(WorkloadSpec(DEFAULT_WORKLOAD, seed=args.seed), cost)
    print()
    sla = _sla(args, spec, cost, acceptance, server)
    quick = args.quick
    cfg = TuneConfig(policies=POLICIES, sla=(sla,), workload=spec, profile=args.profile,
                     acceptance=args.acceptance, server=server,
                     loads=(2, 8, 32, 128) if quick else LOADS, requests=32 if quick else 150,
                     per_user=2 if quick else 6, seed=args.seed, rounds=1,
                     bisect=1 if quick else 6)  # fmt: skip
    rep = _tune(args, cfg, cost, acceptance, out / "tune")
    if rep.best is None:
        print("\nno lossless policy meets the SLA: nothing to export")
        return 0
    _export(out / "tune" / "best.yaml", out / "export")
    _result(rep, sla, out / "tune")
    return 0


def _sla(args: argparse.Namespace, spec, cost, acceptance, server):
    """Step 2: the given SLA, or a moderate one derived from MTP-1's single-user speed."""
    from runner.point import METRICS
    from runner.scheduler import parse_sla

    if args.sla:
        sla, why = parse_sla(args.sla, METRICS), "given"
    else:
        solo = _solo_speed(spec, cost, acceptance, server, args.seed)
        sla = parse_sla(f"tps_per_user_p50>={round(args.sla_fraction * solo):d}")
        why = f"{args.sla_fraction:g} x fixed:k=1's single-user {solo:.0f} tok/s/user"
    print(f"\n2. SLA        {sla}   ({why})")
    return sla


def _tune(args: argparse.Namespace, cfg, cost, acceptance, out: Path):
    """Step 3: tune the story's policies over concurrency caps; one line per policy."""
    from runner.cli.plots import tune_plots
    from runner.cli.progress import PointsBar
    from runner.executors import make_executor
    from runner.tune import tune

    print(f"3. tune       {', '.join(POLICIES)} at concurrency "
          f"{', '.join(f'{x:g}' for x in cfg.loads)} (closed loop) ...")  # fmt: skip
    sys.stdout.flush()
    executor, bar = make_executor("local", args.workers), PointsBar(show_progress(args), cfg.sla)
    try:
        rep = tune(cfg, cost, acceptance, out, executor, resume=args.resume, progress=bar,
                   plots=lambda r: tune_plots(r, cfg.sla))  # fmt: skip
    finally:
        bar.close()
        executor.close()
    for entry, d in rep.policies.items():
        gain = d.gain_vs_fixed_k1
        thr = f"{d.throughput_at_sla:8,.0f} tok/s at N={d.load:g}" if d.feasible \
            else "   cannot meet the SLA at any load"  # fmt: skip
        extra = f"   {gain:+.0%} vs fixed:k=1" if gain is not None and d.feasible else ""
        print(f"   {entry:<14} {thr}{extra}   ({d.best})")
    return rep


def _export(best: Path, out: Path) -> None:
    """Step 4: every export format of ``best.yaml``, read back; one block per format."""
    from runner.cli.text import describe
    from runner.export import FORMATS, load_export, write_export
    from runner.scheduler import load_scheduler

    cfg_best = load_scheduler(best)
    print(f"\n4. export     {best}")
    for fmt in FORMATS:
        m = write_export(cfg_best, fmt, out / fmt, source=str(best))
        load_export(fmt, out / fmt)
        lines = describe(out / fmt, m).splitlines()
        print("   " + lines[0])
        for line in lines[1:]:
            if not line.strip().startswith(("note:", "launch:")):
                print("   " + line)


def _result(rep, sla, out: Path) -> None:
    """Step 5: the tuned scheduler's gain over MTP-1 and its share of the oracle."""
    d = rep.policies[rep.best]
    base = rep.policies.get("fixed:k=1")
    print(f"\n5. result     tuned {d.best}")
    if base is not None and base.feasible:
        print(f"             {d.throughput_at_sla:,.0f} tok/s at {sla} vs fixed:k=1 (MTP-1) "
              f"{base.throughput_at_sla:,.0f} tok/s: {d.gain_vs_fixed_k1:+.0%}")  # fmt: skip
    else:
        print(f"             {d.throughput_at_sla:,.0f} tok/s at {sla}; fixed:k=1 (MTP-1) "
              "cannot meet this SLA at any concurrency")  # fmt: skip
    if d.share_of_oracle:
        print("             share of oracle (the best response: knows each draft's fate, pays the"
              " true step cost): " + ", ".join(
              f"N={float(k):g} {v:.0%}" for k, v in d.share_of_oracle.items()))  # fmt: skip
    print(f"plots        {out / 'frontier.png'} (Figure 7), {out / 'load.png'} (Figure 8)")


def _solo_speed(spec, cost, acceptance, server, seed: int) -> float:
    """fixed:k=1's tokens/s/user p50 with one user (closed loop, concurrency 1)."""
    from runner.point import PointTask, run_point

    task = PointTask("fixed:k=1", "concurrency", 1.0, spec, server, 40, seed)
    return float(run_point(task, (cost, acceptance))["tps_per_user_p50"])
