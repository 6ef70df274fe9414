"""Tune verification policies for an SLA: search parameters and load, export the best scheduler.

For every policy in ``--policies`` the adaptive grid of ``runner/tune.py`` searches its
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
from runner.options import (
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
    show_progress,
    workers_int,
)

NAME = "tune"
HELP = "tune verification policies for an SLA and export the best scheduler config"

DEFAULT_POLICIES = "fixed:k=1,fixed,dspark_lagged,oracle"
QUICK = {"concurrency": (2, 8, 32, 128), "requests": 80, "per_user": 4, "rounds": 1, "bisect": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tuning")
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
    add_workload_args(p)
    add_model_args(p, policy_default=None)
    add_server_args(p)
    r = p.add_argument_group("execution and output")
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
    from runner.paths import hold

    cfg, cost, acceptance, label = config_from_args(args)  # quick checks, no simulation
    out = claim_out(args.out, args.resume, args.force)
    with hold(out):
        summary = execute(cfg, cost, acceptance, label, out, backend=args.backend,
                          workers=args.workers, address=args.address, resume=args.resume,
                          progress=show_progress(args), plots=not args.no_plots)  # fmt: skip
    if summary["overload"] is not None:
        knob = "--request-rates" if cfg.workload.is_synthetic else "--rate-scales"
        o = summary["overload"]
        sys.stderr.write(f"spectune: warning: even the lowest load offers {o['offered_req_s']:.3g} "
                         f"req/s, beyond the server's estimated capacity {o['capacity_req_s']:.3g}"
                         f" req/s (the best completion rate of any point): {knob} up to "
                         f"{o['load_that_fits']:.2g} would fit\n")  # fmt: skip
    if args.json:
        print(json_line(summary))
    else:
        print(format_report(summary, out))
    return 0


def claim_out(text: str, resume: bool, force: bool) -> Path:
    """The results directory, checked before any simulation: ``--resume`` needs the readable
    ``run.yaml`` of an earlier tune; otherwise a foreign non-empty directory needs ``--force``."""
    from profiles.errors import InputError
    from profiles.store import load_yaml
    from runner.paths import out_dir
    from runner.results import POINTS, RUN

    if resume:
        run = Path(text) / RUN if text else None
        if run is None or not run.is_file():
            raise InputError(f"--resume: {run or '--out'} not found; --out must be the "
                             "directory of an earlier tune run")  # fmt: skip
        load_yaml(run)  # unreadable or not a mapping: one line naming the file
    return out_dir(text, NAME, force=force, known=(RUN, POINTS))


def execute(cfg, cost, acceptance, label: str, out: Path, *, backend: str = "local",
            workers: int = 1, address: str | None = None, resume: bool = False,
            progress: bool = False, plots: bool = True) -> dict:  # fmt: skip
    """Run the search into ``out`` and write every result file; returns the summary."""
    from runner.backends import make_executor
    from runner.results import PointStore
    from runner.tune import tune

    run_doc = {**cfg.describe(), "profile_sha256": _profile_hash(cost)}
    store = PointStore(out, run_doc, resume)
    executor = make_executor(backend, workers, address)
    bar = _Progress(progress)
    try:

        def run_stage(tasks):
            todo = [t for t in tasks if t.key not in store]
            bar.grow(len(tasks), len(tasks) - len(todo))
            for task, result in executor.run(todo):
                store.add(task.key, result)
                bar.done(result, cfg.sla)

        searches = tune(cfg, run_stage, store.get)
    finally:
        bar.close()
        executor.close()
        store.close()
    summary = finish(cfg, searches, store, out, cost, acceptance, label, plots=plots)
    from runner.capacity import tune_overload

    over = tune_overload(cfg, list(store.points.values()))
    summary["overload"] = None if over is None else {
        "offered_req_s": over.offered_req_s, "capacity_req_s": over.capacity_req_s,
        "load_that_fits": over.rate_scale,
    }  # fmt: skip
    summary["run"] = run_doc  # the resolved config, seed and profile hash behind it all
    summary["points"] = {"total": len(store.points), "reused": store.reused,
                         "simulated": len(store.points) - store.reused}  # fmt: skip
    (out / "summary.json").write_text(json_line(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def config_from_args(args: argparse.Namespace):
    """(TuneConfig, cost model, acceptance model, workload label) from the parsed options."""
    from profiles.builtin import load_acceptance, load_cost
    from profiles.errors import InputError
    from runner.scheduler import parse_sla
    from runner.sweep import METRICS
    from runner.tune import DEFAULT_CONCURRENCY, TuneConfig
    from simulator.server import ServerConfig
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
    cost, acceptance = load_cost(args.profile), load_acceptance(args.acceptance)
    spec = fit_default(spec, cost)  # the default workload fits a short-context engine
    workload = open_workload(spec)  # checks the file now (one-line errors)
    if workload._trace is not None and workload._trace.text is not None:
        raise InputError(f"--trace {source}: tune replays the trace once per point and cannot "
                         "re-read a pipe or FIFO; save it to a file first")  # fmt: skip
    label = workload.label
    if args.request_rates:
        mode, loads = "rate", _floats(args.request_rates, "--request-rates")
        if not spec.is_synthetic:
            raise InputError("--request-rates applies to synthetic workloads; use --rate-scales "
                             "for trace files")  # fmt: skip
    elif args.rate_scales:
        mode, loads = "rate", _floats(args.rate_scales, "--rate-scales")
        if spec.is_synthetic:
            raise InputError("--rate-scales applies to trace files; use --request-rates")
    else:
        mode = "concurrency"
        default = QUICK["concurrency"] if args.quick else DEFAULT_CONCURRENCY
        loads = _floats(args.concurrency, "--concurrency") if args.concurrency else default
    gamma = args.gamma or acceptance.gamma
    server = ServerConfig(max_concurrency=args.max_concurrency,
                          kv_capacity_tokens=args.kv_capacity_tokens,
                          max_prefill_tokens=args.max_prefill_tokens, gamma=gamma,
                          clamp_to_context=args.clamp_to_context,
                          prefill=args.prefill)  # fmt: skip
    if gamma > acceptance.gamma:
        raise InputError(f"--gamma {gamma} exceeds the acceptance model's {acceptance.gamma}")
    from policies.registry import check_gamma

    known = METRICS
    pick = lambda key, full: QUICK[key] if args.quick else full  # noqa: E731
    cfg = TuneConfig(
        policies=tuple(split_policies(args.policies)),
        sla=tuple(parse_sla(s, known) for s in args.sla),
        workload=spec, profile=args.profile, acceptance=args.acceptance, server=server,
        mode=mode, loads=tuple(loads),
        requests=args.num_requests or pick("requests", 200 if mode == "concurrency" else 1000),
        per_user=args.per_user or pick("per_user", 8), seed=args.seed,
        rounds=args.rounds if args.rounds is not None else pick("rounds", 2),
        bisect=args.bisect if args.bisect is not None else pick("bisect", 6),
    )  # fmt: skip
    for entry in cfg.policies:  # unknown names and bad parameters fail before any simulation
        from policies import make_policy

        check_gamma(make_policy(entry), gamma, "--policies")
    if not cfg.policies:
        raise InputError("--policies: no policy given")
    return cfg, cost, acceptance, label


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


def _profile_hash(cost) -> str:
    from runner.scheduler import cost_hash

    return cost_hash(cost)


class _Progress:
    """The tune bar: points done / total and the best throughput at the SLA so far."""

    def __init__(self, enabled: bool) -> None:
        from runner.progress import Progress

        self.bar = Progress(enabled, "points", total=0, unit="pt")
        self.best: tuple[float, str] = (0.0, "")

    def grow(self, total: int, cached: int) -> None:
        self.bar.grow(total, cached)

    def done(self, result: dict, sla) -> None:
        if all(s.met(result) for s in sla) and result["throughput_tok_s"] > self.best[0]:
            load = f"{result['mode'][:4]}={result['load']:g}"
            self.best = (result["throughput_tok_s"], f"{result['policy'][:32]} @ {load}")
        if self.best[1]:
            self.bar.note(f"best {self.best[0]:,.0f} tok/s at the SLA: {self.best[1]}")
        else:
            self.bar.note("no point meets the SLA yet")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def finish(cfg, searches, store, out: Path, cost, acceptance, label: str, *, plots: bool):
    """Write results.csv, frontier.csv, best.yaml and the plots; return the summary."""
    from runner import results
    from runner.scheduler import write_scheduler
    from runner.sweep import point_key

    rows = results.sorted_points(store.points, cfg.sla)
    results.write_csv(out / "results.csv", rows, results.CSV_FIELDS)
    fronts = {}
    for s in searches:
        pts = [store.get(point_key(spec, cfg.mode, x)) for spec in s.specs for x in cfg.loads]
        fronts[s.entry] = results.frontier([p for p in pts if p])
    results.write_csv(out / "frontier.csv",
              [{"entry": e, **p} for e, f in fronts.items() for p in f],
              ("entry", "policy", "load", "tps_per_user_p50", "throughput_tok_s",
               "mean_verify_len"))  # fmt: skip
    rep = results.report(cfg, searches, store)
    rep.update(workload=label, profile=cost.source, acceptance=acceptance.source)
    sched = results.best_scheduler(cfg, rep, cost, acceptance, label)
    rep["files"] = ["results.csv", "frontier.csv", "summary.json"]
    if sched is not None:
        write_scheduler(out / "best.yaml", sched)
        rep["files"].insert(0, "best.yaml")
    if plots:
        rep["files"] += ["frontier.png", "load.png"]
        from runner.plots import plot_frontier, plot_load

        plot_frontier(out / "frontier.png", fronts, list(cfg.sla))
        plot_load(out / "load.png", {e: d["per_load"] for e, d in rep["policies"].items()},
                  cfg.mode)  # fmt: skip
    return rep


def why_not(s: dict) -> list[str]:
    """Lines saying why entries are infeasible (their best value of each SLA metric) and which
    answers sit at the top of the load grid (a larger load might do better)."""
    knob = {"concurrency": "--concurrency"}.get(s["mode"], "--rate-scales / --request-rates")
    lines = []
    for entry, d in s["policies"].items():
        if not d["feasible"] and d.get("closest"):
            best = ", ".join(f"{c.split('>=')[0].split('<=')[0]} {_g(v)} (needs {c})"
                             for c, v in d["closest"].items())  # fmt: skip
            lines.append(f"infeasible   {entry}: best over every setting and load: {best}")
        elif d.get("at_top_of_grid"):
            lines.append(f"capped       {entry}: meets the SLA at the top of the load grid "
                         f"({d['load']:g}); extend {knob} for a higher answer")  # fmt: skip
    return [""] + lines if lines else []


def _g(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def format_report(s: dict, out: Path) -> str:
    """The human-readable summary: one line per policy entry."""
    unit = "N" if s["mode"] == "concurrency" else "load"
    lines = [
        f"SLA          {' and '.join(s['sla']) or '(none: highest throughput)'}",
        f"workload     {s['workload']}",
        f"profile      {s['profile']}",
        f"acceptance   {s['acceptance']}",
        f"load         {s['mode']}: {', '.join(f'{x:g}' for x in s['loads'])}",
        "",
    ]
    head = ("policy", "best setting", "tok/s at SLA", "vs k=1", f"at {unit}", "tok/s/user",
            "verify/req", "min share of oracle")  # fmt: skip
    rows = [head]
    for entry, d in s["policies"].items():
        gain = d.get("gain_vs_fixed_k1")
        ratios = list(d["share_of_oracle"].values())
        rows.append((
            entry, d["best"] if len(d["best"]) < 60 else d["best"][:57] + "...",
            f"{d['throughput_at_sla']:,.0f}" if d["feasible"] else "infeasible",
            f"{gain:+.0%}" if gain is not None and d["feasible"] else "",
            f"{d['load']:g}" if d["load"] is not None else "",
            f"{d['tps_per_user_p50']:.1f}" if d.get("tps_per_user_p50") else "",
            f"{d['mean_verify_len']:.2f}" if d.get("mean_verify_len") is not None else "",
            f"{min(ratios):.0%}" if ratios else "",
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    for n, r in enumerate(rows):
        lines.append(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += why_not(s)
    pts = s.get("points", {})
    lines += ["", f"points       {pts.get('total', 0)} ({pts.get('reused', 0)} reused from an "
              f"earlier run, {pts.get('simulated', 0)} simulated)"]  # fmt: skip
    if s["best"]:
        lines.append(f"best.yaml    {out / 'best.yaml'}: {s['policies'][s['best']]['best']}")
    else:
        lines.append("best.yaml    not written: no lossless policy meets the SLA at any load")
    lines.append(f"wrote        {out}/: {', '.join(s.get('files', []))}")
    return "\n".join(lines)
