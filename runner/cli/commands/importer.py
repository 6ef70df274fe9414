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

from profiles.documents import json_line
from runner.cli.options import add_force

NAME = "import"
HELP = "import vLLM metrics, SGLang SPS tables, STS files and shards, or a cost CSV"
KINDS = ("vllm-metrics", "sglang-sps", "cost-csv", "sglang-sts", "sglang-shards")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="what FILE is")
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
    from profiles.importers import import_cost, prefill_from, prefill_source, provenance
    from profiles.store import acceptance_to_dict, cost_to_dict, write_yaml
    from runner.paths import out_file

    out_file(args.out, force=args.force)
    command = f"spectune import {args.kind} {args.file}"
    if args.prefill_from is not None and args.kind not in ("sglang-sps", "cost-csv"):
        raise InputError("--prefill-from completes a cost profile (sglang-sps, cost-csv)")
    if args.kind in ("sglang-sts", "sglang-shards"):
        return _sglang(args, command)
    prefill = prefill_from(args.prefill_from) if args.prefill_from is not None else None
    if args.kind == "vllm-metrics":
        from profiles.vllm import vllm_acceptance

        model, c = vllm_acceptance(
            args.file, domain=args.domain, model_name=args.model_name, since=args.since
        )
        counters = {
            "drafts": c.drafts,
            "draft_tokens": c.draft_tokens,
            "accepted": c.accepted,
            "accepted_per_pos": list(c.per_pos),
            "engines": c.engines,
            "models": list(c.models),
        }
        meta = provenance(args.kind, args.file, command=command, counters=counters)
        if args.since:
            meta["since"] = provenance(args.kind, args.since)
        doc = {**acceptance_to_dict(model), "metadata": meta}
        summary = {
            "kind": args.kind,
            "source": model.source,
            "draft_length": model.gamma,
            "mean_acceptance_length": c.mean_acceptance_length,
            "conditional_rates": list(model.rates[args.domain]),
            "domain": args.domain,
        }
        use = f"--acceptance {args.out}"
    else:
        import sys

        from profiles.importers import cost_warning

        cost, probes = import_cost(args.kind, args.file, args.lookup, prefill)
        warning = cost_warning(cost, args.out)
        if warning:
            print(f"spectune: warning: {warning}", file=sys.stderr)
        meta = provenance(args.kind, args.file, command=command)
        if args.prefill_from is not None:
            meta["prefill_from"] = prefill_source(args.prefill_from)
            command += f" --prefill-from {args.prefill_from}"
            meta["command"] = command
        doc = cost_to_dict(cost, meta)
        summary = {
            "kind": args.kind,
            "source": cost.source,
            "form": cost.kind,
            "probes": len(probes),  # the file's, not the lookup's added step points
            "batch_tokens": [probes[0], probes[-1]],
            "step_ms": [1e3 * cost.verify_time(1, b) for b in (probes[0], probes[-1])],
            "cost_warning": warning,
        }
        use = f"--profile {args.out}"
    write_yaml(args.out, doc)
    summary["out"] = args.out
    if args.json:
        print(json_line(summary))
        return 0
    print(f"source       {summary['source']}")
    if args.kind == "vllm-metrics":
        rates = " ".join(f"{r:.3f}" for r in summary["conditional_rates"])
        print(
            f"draft length {summary['draft_length']}, mean acceptance length "
            f"{summary['mean_acceptance_length']:.3f} (bonus included)"
        )
        print(f"conditional  {rates}  (positions 1..{summary['draft_length']})")
    else:
        lo, hi = summary["batch_tokens"]
        print(
            f"{summary['form']} cost model, {summary['probes']} probes over B = {lo:g}..{hi:g}, "
            f"step {summary['step_ms'][0]:.2f}..{summary['step_ms'][1]:.2f} ms"
        )
    print(f"wrote {args.out}  (use with {use})")
    return 0


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
