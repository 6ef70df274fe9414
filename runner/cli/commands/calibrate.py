"""Fit Sequential Temperature Scaling (STS) of the confidence head on recorded rounds.

Splits the records by request (--fit-fraction, --seed), fits per-position temperatures T_k on the
fit part — left to right on a log grid 0.05..20, minimising the 15-bin ECE of the cumulative
survival Π σ(logit_i/T_i) against 1[A ≥ k] (--variant cumulative, the DSpark paper's), or of
σ(logit_k/T_k) against 1[A ≥ k] among rounds with A ≥ k−1 (--variant conditional, vLLM's online
variant) — and reports ECE, AUC and Brier per position before and after on the held-out part.

Writes the spectune YAML (--out), SGLang's DSparkStsCalibration JSON (--sglang-out; its
ece_before/ece_after are the held-out cumulative-survival ECE, num_samples the fit rounds) and a
reliability diagram (--plot, the paper's Figure 6 analog). Use the result with
--acceptance records:FILE.npz?temps=OUT.yaml.
"""

from __future__ import annotations

import argparse

import numpy as np

from profiles.documents import json_line

NAME = "calibrate"
HELP = "fit STS temperatures on recorded rounds; report held-out ECE/AUC/Brier and a diagram"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from runner.cli.options import nonneg_int

    p.add_argument("--records", required=True, metavar="FILE.npz", help="recorded rounds")
    p.add_argument(
        "--variant",
        choices=("cumulative", "conditional"),
        default="cumulative",
        help="cumulative (paper, default) or conditional (vLLM's online variant)",
    )
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="spectune calibration YAML")
    p.add_argument(
        "--sglang-out",
        metavar="FILE.json",
        help="SGLang DSparkStsCalibration JSON (default: OUT with .sglang.json)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="reliability diagram (default: OUT .png)")
    p.add_argument("--no-plot", action="store_true", help="skip the diagram")
    p.add_argument("--domain", help="calibrate on this domain's rounds only")
    p.add_argument(
        "--fit-fraction",
        type=_fraction,
        default=0.5,
        help="share of requests in the fit split (default 0.5)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="split seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the YAML document as JSON")
    from runner.cli.options import add_force

    add_force(p)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from profiles.calibration import calibrate_file
    from profiles.store import write_yaml
    from runner.paths import out_file

    out = out_file(args.out, force=args.force)
    sglang = out_file(args.sglang_out or out.with_suffix(".sglang.json"), "--sglang-out",
                      force=args.force)  # fmt: skip
    png = None if args.no_plot else out_file(args.plot or out.with_suffix(".png"), "--plot",
                                              force=args.force)  # fmt: skip
    cal, fit, report, records = calibrate_file(args.records, args.variant, args.fit_fraction,
                                               args.seed, args.domain)  # fmt: skip
    doc = cal.to_dict()
    doc["records_meta"] = records.meta
    write_yaml(out, doc)
    sglang.write_text(json_line(cal.to_sglang(), indent=2) + "\n", encoding="utf-8")
    written = [str(out), str(sglang)]
    if png is not None:
        from runner.cli.plots_calibration import reliability_png

        reliability_png(png, report.logits, report.accepted, np.asarray(cal.temperatures),
                        title=f"STS ({args.variant}) on {cal.dataset}: held-out "
                        f"{report.rounds} rounds")  # fmt: skip
        written.append(str(png))
    if args.json:
        print(json_line(doc))
        return 0
    print(
        f"STS {args.variant} on {cal.dataset}: fitted on {fit.rounds} rounds of {fit.requests} "
        f"requests, reported on {report.rounds} held-out rounds of {report.requests} requests"
    )
    print(f"records: {records.meta.get('source', 'unlabelled')}")
    print(format_table(cal))
    print("wrote " + ", ".join(written))
    return 0


def format_table(cal) -> str:
    """Per-position temperatures and held-out metrics (cumulative-survival view)."""
    b, a = cal.before["cumulative"], cal.after["cumulative"]
    lines = [" pos      T_k   ECE before  after   AUC before  after   Brier before  after"]
    for k, t in enumerate(cal.temperatures):
        lines.append(
            f"{k + 1:>4} {t:>8.3f}   {b['ece'][k]:>10.4f} {a['ece'][k]:>6.4f}   "
            f"{b['auc'][k]:>10.3f} {a['auc'][k]:>6.3f}   "
            f"{b['brier'][k]:>12.4f} {a['brier'][k]:>6.4f}"
        )
    better = sum(x < y for x, y in zip(a["ece"], b["ece"], strict=True))
    lines.append(
        f"held-out ECE of the cumulative survival lower at {better}/{len(a['ece'])} "
        f"positions (mean {np.nanmean(b['ece']):.4f} → {np.nanmean(a['ece']):.4f})"
    )
    return "\n".join(lines)
