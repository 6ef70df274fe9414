"""Export a tuned scheduler (``best.yaml``) to a production engine's configuration format.

Formats: ``spectune`` (the validated ``spectune.scheduler/v1`` document), ``sglang`` (DSpark:
the whole-decode-step SPS table — 1D or additive, matching the cost model — and the STS
calibration, or a static block size), ``vllm`` (``--speculative-config`` JSON), ``trtllm``
(``extra_llm_api_options`` YAML: ``max_draft_len``, a ``draft_len_schedule`` or
``max_concurrency``), ``sglang-adaptive`` (the EAGLE adaptive ladder JSON). Every engine format
also writes ``launch.sh``, the engine's launch command with its environment and the tuned
concurrency cap (``MODEL``/``DRAFT``/``METHOD`` are placeholders the user sets). A format that
cannot express the tuned policy exports the nearest policy it can, and the command simulates
both at the tuned load — the SGLang export planning with the exported table as SGLang does — and
prints the cost of the approximation. Every run writes ``export.json`` (files, exact or not,
notes, the launch recipe) and reads its files back through the validating loader before
reporting success; ``tests/engines/`` checks them with the engines' own code. See README
"Tuning and export".
"""

from __future__ import annotations

import argparse

from profiles.documents import json_line
from runner.cli.options import add_force
from runner.formats import FORMATS

NAME = "export"
HELP = "export a tuned scheduler config (best.yaml) to spectune, SGLang, vLLM or TensorRT-LLM"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="BEST.yaml",
                   help="a spectune.scheduler/v1 document (tune writes best.yaml)")  # fmt: skip
    p.add_argument("--format", required=True, choices=FORMATS + ("all",),
                   help="target format (all: one sub-directory per format)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-simulate", action="store_true",
                   help="skip simulating the cost of an approximation")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the manifest(s) as JSON")
    add_force(p)


def run(args: argparse.Namespace) -> int:
    from runner.cli.text import describe
    from runner.export import load_export, write_export
    from runner.paths import out_dir
    from runner.scheduler import load_scheduler

    out = out_dir(args.out, NAME, force=args.force, known=("export.json",))
    cfg = load_scheduler(args.source)
    formats = FORMATS if args.format == "all" else (args.format,)
    manifests = []
    for fmt in formats:
        target = out / fmt if args.format == "all" else out
        m = write_export(cfg, fmt, target, source=str(args.source),
                         simulate=not args.no_simulate)  # fmt: skip
        load_export(fmt, target)  # what we wrote must pass the engine-side checks
        manifests.append((target, m))
    if args.json:
        print(json_line([m for _, m in manifests]))
        return 0
    for target, m in manifests:
        print(describe(target, m))
    return 0
