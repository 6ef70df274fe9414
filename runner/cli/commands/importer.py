"""Import production telemetry as spectune profiles.

  vllm-metrics  a Prometheus scrape of vLLM's /metrics → acceptance model (--acceptance FILE)
  sglang-sps    an SGLang SpsCostTable / SpsAdditiveCostTable JSON → cost model (--profile FILE)
  cost-csv      a CSV with header batch_tokens,step_ms → cost model (--profile FILE)
  sglang-sts    an SGLang STS calibration JSON (dspark_sts_fit) → calibration (?temps=FILE)
  sglang-shards SGLang's STS confidence shards STEM.{k}.pt → records (--acceptance records:FILE)

The vLLM per-position counters are unconditional (drafts whose first k tokens were accepted); they
are converted to conditional rates for a one-domain parametric model (--domain). Counters are
cumulative since the server started: --since EARLIER.prom imports the window between two scrapes.
Every output is labelled "imported: ..." and carries the input file's SHA-256. A cost table has
no prefill, draft or context term (a warning says so here and on every replay and tune that uses
it); --prefill-from completes the prefill term from another cost profile, a CSV of prefill times
(prompt_tokens,prefill_ms) or a low-load TTFT measurement (prompt_tokens,ttft_ms, or a
requests.csv with prompt_tokens and ttft_s).
"""

from __future__ import annotations

import argparse
import sys

from profiles.documents import json_line
from runner.cli.options import add_force

NAME = "import"
HELP = "import vLLM metrics, SGLang SPS tables, STS files and shards, or a cost CSV"
SOURCES = ("vllm-metrics", "sglang-sps", "cost-csv", "sglang-sts", "sglang-shards")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=SOURCES, help="what FILE is")
    p.add_argument("file", metavar="FILE", help="the file to import (sglang-shards: the STEM "
                   "SGLANG_DSPARK_STS_COLLECT_PATH named, or one .pt shard)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="profile to write")
    g = p.add_argument_group("vllm-metrics")
    g.add_argument("--domain", default="chat", help="domain label of the model or of the "
                   "sglang-shards records (default chat)")  # fmt: skip
    g.add_argument("--model-name", help="only this model_name label (when a scrape has several)")
    g.add_argument("--since", metavar="EARLIER", help="subtract an earlier scrape's counters")
    p.add_argument("--lookup", choices=("sglang", "linear"), default="sglang",
                   help="sglang-sps: read the table as SGLang does (floor probe / clamped, the "
                   "default) or interpolate and extrapolate linearly")  # fmt: skip
    p.add_argument("--prefill-from", metavar="PROFILE|CSV",
                   help="sglang-sps, cost-csv: the prefill term from a cost profile, a CSV of "
                   "prefill times (prompt_tokens,prefill_ms) or of low-load TTFTs "
                   "(prompt_tokens,ttft_ms or a requests.csv's ttft_s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    add_force(p)


def run(args: argparse.Namespace) -> int:
    from profiles.errors import InputError
    from profiles.importers import cost_document
    from profiles.store import write_yaml
    from profiles.vllm import acceptance_document
    from runner.paths import out_file

    out_file(args.out, force=args.force)
    command = f"spectune import {args.kind} {args.file}"
    if args.prefill_from is not None and args.kind not in ("sglang-sps", "cost-csv"):
        raise InputError("--prefill-from completes a cost profile (sglang-sps, cost-csv)")
    if args.kind in ("sglang-sts", "sglang-shards"):
        return _sglang(args, command)
    if args.kind == "vllm-metrics":
        doc, summary = acceptance_document(args.file, domain=args.domain, since=args.since,
                                           model_name=args.model_name, command=command)  # fmt: skip
        use = f"--acceptance {args.out}"
    else:
        doc, summary = cost_document(args.kind, args.file, args.lookup, args.prefill_from,
                                     command=command, name=args.out)  # fmt: skip
        if summary["cost_warning"]:
            print(f"spectune: warning: {summary['cost_warning']}", file=sys.stderr)
        use = f"--profile {args.out}"
    write_yaml(args.out, doc)
    summary["out"] = args.out
    print(json_line(summary) if args.json else "\n".join(_lines(summary, use)))
    return 0


def _lines(summary: dict, use: str) -> list[str]:
    """The human-readable summary of an imported acceptance or cost profile."""
    lines = [f"source       {summary['source']}"]
    if summary["kind"] == "vllm-metrics":
        rates = " ".join(f"{r:.3f}" for r in summary["conditional_rates"])
        lines.append(f"draft length {summary['draft_length']}, mean acceptance length "
                     f"{summary['mean_acceptance_length']:.3f} (bonus included)")  # fmt: skip
        lines.append(f"conditional  {rates}  (positions 1..{summary['draft_length']})")
    else:
        lo, hi = summary["batch_tokens"]
        lines.append(f"{summary['form']} cost model, {summary['probes']} probes over B = "
                     f"{lo:g}..{hi:g}, step {summary['step_ms'][0]:.2f}.."
                     f"{summary['step_ms'][1]:.2f} ms")  # fmt: skip
    return [*lines, f"wrote {summary['out']}  (use with {use})"]


def _sglang(args: argparse.Namespace, command: str) -> int:
    """``sglang-sts`` → a spectune calibration YAML; ``sglang-shards`` → a records ``.npz``."""
    from pathlib import Path

    suffix = Path(args.out).suffix.lower()
    read = _sglang_sts if args.kind == "sglang-sts" else _sglang_shards
    summary, lines = read(args, command, suffix)
    print(json_line(summary) if args.json else "\n".join(lines))
    return 0


def _sglang_sts(args: argparse.Namespace, command: str, suffix: str) -> tuple[dict, list[str]]:
    from profiles.errors import InputError
    from profiles.importers import provenance
    from profiles.store import write_yaml
    from profiles.sts import calibration_doc, read_sglang_sts

    if suffix not in (".yaml", ".yml"):
        raise InputError(f"--out {args.out}: sglang-sts writes a spectune calibration YAML "
                         "(.yaml); use the SGLang JSON itself as ?temps=FILE.json")  # fmt: skip
    sts = read_sglang_sts(args.file)
    write_yaml(args.out, calibration_doc(sts, provenance(args.kind, args.file, command=command)))
    summary = {"kind": args.kind, "temperatures": list(sts.temperatures),
               "gamma": len(sts.temperatures), "dataset": sts.dataset,
               "num_samples": sts.num_samples, "out": args.out}  # fmt: skip
    temps = " ".join(f"{t:.3f}" for t in sts.temperatures)
    return summary, [
        f"STS calibration, gamma {summary['gamma']}, fitted on {sts.num_samples} "
        f"samples ({sts.dataset or 'dataset not named'})",
        f"temperatures {temps}",
        f"wrote {args.out}  (use with --acceptance MODEL?temps={args.out})",
    ]


def _sglang_shards(args: argparse.Namespace, command: str, suffix: str) -> tuple[dict, list[str]]:
    from profiles.errors import InputError

    if suffix != ".npz":
        raise InputError(f"--out {args.out}: sglang-shards writes a records .npz")
    from engine.shards import read_shards
    from engine.shards import summary as shard_summary
    from profiles.records import write_records

    records = read_shards(args.file, args.domain, command=f"{command} --domain {args.domain}")
    write_records(args.out, records)
    summary = {"kind": args.kind, **shard_summary(records), "source": records.meta["source"],
               "out": args.out}  # fmt: skip
    return summary, [f"source       {summary['source']}",
                     f"{summary['rounds']} rounds, gamma {summary['gamma']}, mean accepted "
                     f"{summary['mean_accepted']:.3f} drafts of {summary['gamma']}",
                     f"wrote {args.out}  (use with --acceptance records:{args.out}, or spectune "
                     f"calibrate --records {args.out})"]  # fmt: skip
