"""Tune verification policies for an SLA: search parameters and load, export the best scheduler.

For every policy in ``--policies`` the adaptive grid of ``runner/search.py`` searches its
parameters; each setting is simulated at every load of the grid and scored by its throughput at
the SLA; each policy's best setting then gets its SLA load bracket bisected. Load knobs:
``--concurrency`` (closed loop, default: N users always busy, the paper's Figures 7–8),
``--request-rates`` (open loop, synthetic workloads) or ``--rate-scales`` (open loop, traces).

Points stream to ``DIR/points.jsonl`` as they finish; ``--resume`` continues a killed run
without redoing finished points. At the end ``DIR`` holds ``best.yaml``
(``spectune.scheduler/v1``; export it with ``spectune export``), ``results.csv``,
``frontier.csv``, ``summary.json``, ``frontier.png`` (Figure 7) and ``load.png`` (Figure 8).
Policy entries are names (parameters searched) or specs (given parameters pinned); ``oracle``
(the best response: it knows each request's accepted drafts and maximises tokens/s under the true
step cost) is the simulator-only reference results report a "share of oracle" against; it and
``clairvoyant`` never become ``best.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from profiles.documents import json_line
from runner.cli.options import (
    CPUS,
    DEFAULT_WORKLOAD,
    MAX_CONCURRENCY,
    add_force,
    add_model_args,
    add_server_args,
    add_workload_args,
    bounded_int,
    fit_default,
    positive_float,
    server_from_args,
    show_progress,
    workers_int,
)

NAME = "tune"
HELP = "tune verification policies for an SLA and export the best scheduler config"

DEFAULT_POLICIES = "fixed:k=1,fixed,dspark_lagged,oracle"
QUICK = {"concurrency": (2, 8, 32, 128), "requests": 80, "per_user": 4, "rounds": 1, "bisect": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_tuning_args(p.add_argument_group("tuning"))
    add_workload_args(p)
    add_model_args(p, policy_default=None)
    add_server_args(p)
    _add_execution_args(p.add_argument_group("execution and output"))


def _add_tuning_args(g) -> None:
    """What is searched: policies, the SLA, the load grid and the search's effort."""
    g.add_argument("--policies", default=DEFAULT_POLICIES, metavar="LIST",
                   help="comma-separated names (searched) or specs (pinned), "
                   "default %(default)s")  # fmt: skip
    g.add_argument("--sla", action="append", default=[], metavar="METRIC>=X",
                   help="SLA constraint, repeatable (all must hold): tps_per_user_p50>=80, "
                   "ttft_p99_s<=2, ...")  # fmt: skip
    loads = g.add_mutually_exclusive_group()
    loads.add_argument("--concurrency", metavar="LIST",
                       help="closed loop: concurrency caps (default 1,2,4,...,256)")  # fmt: skip
    loads.add_argument(
        "--request-rates",
        metavar="LIST",
        help="open loop, synthetic workloads: request rates (req/s)",
    )
    loads.add_argument("--rate-scales", metavar="LIST",
                       help="open loop, trace files: time compressions")  # fmt: skip
    g.add_argument(
        "--per-user",
        type=bounded_int(1, 10_000),
        default=None,
        help="closed loop: requests simulated per concurrent user (default 8)",
    )
    g.add_argument("--rounds", type=bounded_int(0, 10), default=None,
                   help="refinement rounds (default 2)")  # fmt: skip
    g.add_argument("--bisect", type=bounded_int(0, 30), default=None,
                   help="load bisection rounds (default 6)")  # fmt: skip
    g.add_argument(
        "--quick",
        action="store_true",
        help="coarse and small: 4 loads, fewer requests, 1 round, 1 bisection",
    )


def _add_execution_args(r) -> None:
    """Where the points run and where the results go."""
    r.add_argument("--out", required=True, metavar="DIR", help="results directory")
    r.add_argument("--workers", type=workers_int, default=1,
                   help=f"parallel simulations (at most the {CPUS} CPUs)")  # fmt: skip
    add_force(r)
    r.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or Ray tasks")  # fmt: skip
    r.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: local)")
    r.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    r.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    r.add_argument("--json", action="store_true", help="print summary.json on stdout")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from runner.cli.plots import tune_plots
    from runner.cli.progress import PointsBar
    from runner.cli.text import format_report
    from runner.executors import make_executor
    from runner.paths import hold
    from runner.tune import tune

    cfg, cost, acceptance = config_from_args(args)  # quick checks, no simulation
    out = claim_out(args.out, args.resume, args.force)
    from profiles.importers import cost_warning

    if warn := cost_warning(cost, args.profile):  # also in summary.json ("cost_warning")
        sys.stderr.write(f"spectune: warning: {warn}\n")
    if not cfg.server.clamp_to_context and cost.max_context:
        _warn_context(cfg, cost.max_context)
    executor = make_executor(args.backend, args.workers, args.address)
    bar = PointsBar(show_progress(args), cfg.sla)
    try:
        with hold(out):
            plots = None if args.no_plots else lambda r: tune_plots(r, cfg.sla)
            rep = tune(cfg, cost, acceptance, out, executor, resume=args.resume, progress=bar,
                       plots=plots)  # fmt: skip
    finally:
        bar.close()
        executor.close()
    if rep.overload is not None:
        knob = "--request-rates" if cfg.workload.is_synthetic else "--rate-scales"
        o = rep.overload
        sys.stderr.write(f"spectune: warning: even the lowest load offers {o['offered_req_s']:.3g} "
                         f"req/s, beyond the server's estimated capacity {o['capacity_req_s']:.3g}"
                         f" req/s (the best completion rate of any point): {knob} up to "
                         f"{o['load_that_fits']:.2g} would fit\n")  # fmt: skip
    print(json_line(rep.to_dict()) if args.json else format_report(rep.to_dict(), out))
    return 0


def _warn_context(cfg, max_context: int) -> None:
    """State up front how many of the workload's requests every point will reject."""
    from simulator.run import beyond_context, count_beyond_context
    from simulator.workload import open_workload

    over, seen = count_beyond_context(open_workload(cfg.workload), max_context, cfg.requests)
    if over:
        line = beyond_context(over, seen, max_context, every_point=True)
        sys.stderr.write(f"spectune: warning: {line}\n")


def claim_out(text: str, resume: bool, force: bool) -> Path:
    """The results directory, checked before any simulation: ``--resume`` needs the readable
    ``run.yaml`` of an earlier tune; otherwise a foreign non-empty directory needs ``--force``."""
    from profiles.errors import InputError
    from profiles.store import load_yaml
    from runner.paths import out_dir
    from runner.store import POINTS, RUN

    if resume:
        run = Path(text) / RUN if text else None
        if run is None or not run.is_file():
            raise InputError(f"--resume: {run or '--out'} not found; --out must be the "
                             "directory of an earlier tune run")  # fmt: skip
        load_yaml(run)  # unreadable or not a mapping: one line naming the file
    return out_dir(text, NAME, force=force, known=(RUN, POINTS))


def config_from_args(args: argparse.Namespace):
    """(TuneConfig, cost model, acceptance model) from the parsed options."""
    from profiles.builtin import load_acceptance, load_cost
    from profiles.errors import InputError
    from runner.cli.options import policy_for
    from runner.point import METRICS
    from runner.scheduler import parse_sla
    from runner.tune import TuneConfig

    cost, acceptance = load_cost(args.profile), load_acceptance(args.acceptance)
    spec = workload_from_args(args, cost)
    mode, loads = loads_from_args(args, spec)
    gamma = args.gamma or acceptance.gamma
    if gamma > acceptance.gamma:
        raise InputError(f"--gamma {gamma} exceeds the acceptance model's {acceptance.gamma}")
    pick = lambda key, full: QUICK[key] if args.quick else full  # noqa: E731
    cfg = TuneConfig(
        policies=tuple(split_policies(args.policies)),
        sla=tuple(parse_sla(s, METRICS) for s in args.sla),
        workload=spec, profile=args.profile, acceptance=args.acceptance,
        server=server_from_args(args, gamma), mode=mode, loads=tuple(loads),
        requests=args.num_requests or pick("requests", 200 if mode == "concurrency" else 1000),
        per_user=args.per_user or pick("per_user", 8), seed=args.seed,
        rounds=args.rounds if args.rounds is not None else pick("rounds", 2),
        bisect=args.bisect if args.bisect is not None else pick("bisect", 6),
    )  # fmt: skip
    for entry in cfg.policies:  # unknown names and bad parameters fail before any simulation
        policy_for(entry, gamma, "--policies")
    return cfg, cost, acceptance


def workload_from_args(args: argparse.Namespace, cost):
    """The base workload spec, checked now (a trace must be a file tune can re-read)."""
    from profiles.errors import InputError
    from simulator.workload import WorkloadSpec, open_workload, parse_domain_mix

    if args.request_rate is not None:
        raise InputError("--request-rate: tune sweeps the load; use --request-rates LIST")
    source = args.trace or args.workload or DEFAULT_WORKLOAD
    spec = WorkloadSpec(
        source=source, format=args.format, rate_scale=args.rate_scale, limit=args.limit,
        start_s=args.start, duration_s=args.duration, max_prompt_tokens=args.max_prompt_tokens,
        max_output_tokens=args.max_output_tokens, skip_bad_rows=args.skip_bad_rows,
        domain_mix=parse_domain_mix(args.domain_mix) if args.domain_mix else (),
        burstiness=args.burstiness, seed=args.seed,
    )  # fmt: skip
    spec = fit_default(spec, cost)  # the default workload fits a short-context engine
    workload = open_workload(spec)  # checks the file now (one-line errors)
    if workload._trace is not None and workload._trace.text is not None:
        raise InputError(f"--trace {source}: tune replays the trace once per point and cannot "
                         "re-read a pipe or FIFO; save it to a file first")  # fmt: skip
    return spec


def loads_from_args(args: argparse.Namespace, spec) -> tuple[str, list[float]]:
    """(mode, load grid): closed loop over --concurrency, or open loop over rates/scales."""
    from profiles.errors import InputError
    from runner.tune import DEFAULT_CONCURRENCY

    if args.request_rates:
        if not spec.is_synthetic:
            raise InputError("--request-rates applies to synthetic workloads; use --rate-scales "
                             "for trace files")  # fmt: skip
        return "rate", _floats(args.request_rates, "--request-rates")
    if args.rate_scales:
        if spec.is_synthetic:
            raise InputError("--rate-scales applies to trace files; use --request-rates")
        return "rate", _floats(args.rate_scales, "--rate-scales")
    if args.concurrency:
        return "concurrency", _floats(args.concurrency, "--concurrency")
    return "concurrency", list(QUICK["concurrency"] if args.quick else DEFAULT_CONCURRENCY)


def split_policies(text: str) -> list[str]:
    """Comma-separated entries; a ``key=value`` piece continues the previous spec's params."""
    out: list[str] = []
    for piece in (x.strip() for x in text.split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece and out:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def _floats(text: str, option: str) -> list[float]:
    from profiles.errors import InputError

    pieces = [x.strip() for x in text.split(",")]
    if not any(pieces) or "" in pieces:
        raise InputError(f"{option}: empty entry in {text!r}")
    try:
        values = [positive_float(x) for x in pieces]
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"{option}: {exc}") from None
    if option == "--concurrency" and max(values) > MAX_CONCURRENCY:
        raise InputError(f"{option}: at most {MAX_CONCURRENCY:,} concurrent requests")
    return values
