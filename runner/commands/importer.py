"""Import production telemetry as spectune profiles.

  vllm-metrics  a Prometheus scrape of vLLM's /metrics → acceptance model (--acceptance FILE)
  sglang-sps    an SGLang SpsCostTable / SpsAdditiveCostTable JSON → cost model (--profile FILE)
  cost-csv      a CSV with header batch_tokens,step_ms → cost model (--profile FILE)

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
from runner.options import add_force

NAME = "import"
HELP = "import vLLM metrics, SGLang SPS tables or a cost CSV as spectune profiles"
KINDS = ("vllm-metrics", "sglang-sps", "cost-csv")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="what FILE is")
    p.add_argument("file", metavar="FILE", help="the file to import")
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="profile to write")
    g = p.add_argument_group("vllm-metrics")
    g.add_argument("--domain", default="chat", help="domain label of the model (default chat)")
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
    if args.prefill_from is not None and args.kind == "vllm-metrics":
        raise InputError("--prefill-from completes a cost profile (sglang-sps, cost-csv)")
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
