"""Measure how well the profiled simulator predicts the live engine.

Runs the same seeded workload at three loads (light, near the knee, saturated) for each policy
on the profiled backend and on the live engine, and reports per cell the relative error of output
throughput, mean TPOT, p50 TTFT, mean accepted length and mean verify length. ``--out DIR``
writes ``fidelity.json``, ``fidelity.md`` and ``fidelity.png``. With measured timing each cell's
prediction is priced by the stored profile recalibrated to a companion profile measured alongside
its live run (``engine/companion.py``). The profile and acceptance model
should describe the same engine and drafter that run live; the defaults do (the measured
``builtin:cpu-tiny-additive`` profile and the ``dspark`` drafter's records are committed).
``--against vllm`` runs a live ``vllm serve`` instead (runner/vllmfidelity.py, docs/vllm).
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from pathlib import Path

from profiles.documents import json_line
from runner.cli import progress
from runner.cli.engines import add_live_args
from runner.cli.options import MAX_SLOTS, add_force, add_model_args, bounded_int, seed_int
from runner.cli.text import command_line

NAME = "fidelity"
HELP = "measure the profiled simulator's error against the live engine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--against", choices=("engine", "vllm"), default="engine",
                   help="the live side: spectune's engine (default) or a live vllm serve "
                   "(--engine vllm:TARGET,draft=DIR, --profile a vLLM cost profile; "
                   "runner/vllmfidelity.py)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="fewer requests (CI-sized, < 2 min)")
    p.add_argument("--num-requests", type=bounded_int(1, 100_000), help="requests per cell")
    p.add_argument(
        "--replicates",
        type=bounded_int(1, 20),
        help="runs of each cell per server, interleaved, each between two speed "
        "references; a cell is their mean (--against vllm; default 3, --quick 1)",
    )
    p.add_argument("--policies", default="fixed:k=1,dspark", help="policies (default %(default)s)")
    p.add_argument("--max-concurrency", type=bounded_int(1, MAX_SLOTS, "engine slots"), default=8,
                   help="server cap, also the engine's slots (default 8)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0)
    add_force(p)
    add_model_args(p, policy_default=None)
    add_live_args(p)
    p.add_argument("--no-companion", action="store_true",
                   help="price predictions with the stored --profile as it is, not "
                   "recalibrated to a profile measured alongside each live run "
                   "(engine/companion.py)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", metavar="DIR", help="write fidelity.json, fidelity.md, fidelity.png")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from profiles.builtin import cost_metadata
    from runner.cli.engines import build_live_backend
    from runner.cli.options import models_from_args
    from runner.fidelity import FidelityHarness
    from runner.paths import out_dir

    if args.replicates and args.against != "vllm":
        from profiles.errors import InputError

        raise InputError("--replicates applies to --against vllm (a live vllm serve)")
    out = out_dir(args.out, NAME, force=args.force) if args.out else None
    if args.against == "vllm":
        from runner.cli.vllm import fidelity_vllm

        result = fidelity_vllm(args, out)
        return _write(args, out, result)
    cfg = config_from_args(args)
    cost, acceptance, _ = models_from_args(args)
    labels = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "engine": f"{args.engine} drafter {args.drafter} on {args.device} "
        f"({args.threads} threads, timing {args.live_timing})",
    }
    with progress.bar(args, "fidelity cells", total=len(cfg.loads) * len(cfg.policies),
                      unit="cell") as bar:  # fmt: skip
        harness = FidelityHarness(
            cfg, cost, acceptance, args.gamma or acceptance.gamma,
            lambda policy: build_live_backend(args, policy, cost)[0],
            meta=cost_metadata(args.profile), labels=labels, on_cell=lambda c: _line(bar, c),
            companion=args.live_timing == "measured" and not args.no_companion,
        )  # fmt: skip
        result = harness.run().to_dict()
    return _write(args, out, result)


def _write(args: argparse.Namespace, out: Path | None, result: dict) -> int:
    from runner.fidelity import report_markdown

    if out is not None:
        (out / "fidelity.json").write_text(json_line(result, indent=2) + "\n")
        (out / "fidelity.md").write_text(report_markdown(result))
        plot(result, out / "fidelity.png")
    print(json_line(result) if args.json else report_markdown(result))
    return 0


def config_from_args(args: argparse.Namespace):
    """The FidelityConfig of the options, prompts clamped to half the engine's context."""
    from runner.cli.engines import engine_context
    from runner.fidelity import FidelityConfig

    cfg = FidelityConfig(policies=tuple(s.strip() for s in args.policies.split(",") if s.strip()),
                         max_concurrency=args.max_concurrency, seed=args.seed)  # fmt: skip
    if args.quick:
        cfg = replace(cfg, num_requests=30, max_output_tokens=48)
    if args.num_requests:
        cfg = replace(cfg, num_requests=args.num_requests)
    context = engine_context(args)
    return replace(cfg, max_prompt_tokens=min(cfg.max_prompt_tokens, context // 2))


def _line(bar, cell: dict) -> None:
    e = cell["rel_error"]
    bar.write(f"{cell['load']:>9} {cell['policy']:<12} throughput err "
              f"{e['throughput']:.1%}  TPOT err {e['tpot_mean']:.1%}")  # fmt: skip
    bar.update(1)


def plot(result: dict, path: Path) -> None:
    """Relative error per cell and metric, with the target lines; with a companion, a second
    panel compares the mean-TPOT error of the three pricings of each cell; with speed references
    (``--against vllm``), the throughput and mean-TPOT errors speed-corrected, as stored and
    (a diagnostic) priced at the speed inside each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    metrics = list(cells[0]["rel_error"]) if cells else []
    pricings = [("recalibrated stored profile", None), ("stored profile as is", "stored_profile"),
                ("companion's own fit", "companion_fit")]  # fmt: skip
    companion = bool(cells) and all(c.get("companion_fit") for c in cells)
    speed = bool(cells) and all(c.get("speed_factor") for c in cells)
    panels = 2 if companion or speed else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 4 * panels), squeeze=False)
    labels = [f"{c['load']}\n{_short(c['policy'])}" for c in cells]
    # the vLLM target is 10% (5% the stretch, issue #15); the built-in engine's 5% (issue #6)
    lines = ((10.0, "10% target"), (5.0, "5% stretch")) if speed else ((5.0, "5% target"),)
    _bars(axes[0][0], labels, {m: [c["rel_error"][m] for c in cells] for m in metrics}, lines)
    axes[0][0].set_title("profiled simulator vs live engine, per metric")
    if companion:
        series = {name: [(c[key] if key else c)["rel_error"]["tpot_mean"] for c in cells]
                  for name, key in pricings}  # fmt: skip
        _bars(axes[1][0], labels, series)
        axes[1][0].set_title("mean TPOT error by how the prediction is priced")
    elif speed:
        _bars(axes[1][0], labels, _pricings(cells), lines)
        axes[1][0].set_title("throughput and mean TPOT error by how the prediction is priced")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pricings(cells: list[dict]) -> dict[str, list]:
    """Throughput and mean-TPOT errors of a vLLM report's pricings, per cell."""
    kinds = [("speed-corrected", None), ("stored", "stored_profile")]
    if all(c.get("in_load_priced") for c in cells):
        kinds.append(("in-load priced (diagnostic)", "in_load_priced"))
    return {
        f"{m} {name}": [(c[key] if key else c)["rel_error"][m] for c in cells]
        for m in ("throughput", "tpot_mean")
        for name, key in kinds
    }


def _bars(ax, labels: list[str], series: dict[str, list],
          lines=((5.0, "5% target"),)) -> None:  # fmt: skip
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(labels))], [100 * (v or 0.0) for v in vals],
               width, label=name)  # fmt: skip
    for (y, text), style in zip(lines, ("--", ":"), strict=False):
        ax.axhline(y, color="k", linestyle=style, linewidth=1, label=text)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("relative error, %")
    top = max([100 * (v or 0.0) for vals in series.values() for v in vals] + [y for y, _ in lines])
    ax.set_ylim(0, 1.5 * top)  # head-room for the legend above the bars
    ax.legend(fontsize=7, ncol=2, loc="upper left")


def _short(policy: str) -> str:
    """A policy spec short enough for an axis label (a table's rows drop to its name)."""
    return policy if len(policy) <= 14 else policy.split(":")[0]
