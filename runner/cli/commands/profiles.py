"""List the builtin cost and acceptance profiles with their provenance, and the spec forms that
load any other profile.

Cost (--profile): builtin:NAME (each an analytic roofline until measured profiles land), the
analytic:key=value,... generator with its parameters, or a YAML file (measured, or written by
`spectune import sglang-sps|cost-csv`). Acceptance (--acceptance): paper:NAME (read from the DSpark
paper, per-position curve shapes assumed), records:FILE.npz (engine recordings), or a YAML file
(parametric, e.g. `spectune import vllm-metrics`); each takes ?temps=CALIB (STS temperatures).
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "profiles"
HELP = "list builtin cost and acceptance profiles with their provenance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from profiles.catalog import catalog

    info = catalog()
    if args.json:
        json.dump(info, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    out = ["cost models (--profile)"]
    for c in info["cost"]:
        mark = " (default)" if c["default"] else ""
        out.append(f"  {c['spec']}{mark}\n      = {c['resolves_to']}\n      {c['source']}")
        fixed = {k: v for k, v in c["repaired_points"].items() if v}
        lifted = ", ".join(f"{k} {v}" for k, v in fixed.items()) or "none"
        out.append(f"      monotone repair: {sum(fixed.values())} probes lifted ({lifted})")
        env = c["envelope"]
        spans = [f"{k.replace('_', ' ')} {v[0]:g}-{v[1]:g}" for k, v in env.items()
                 if isinstance(v, list)]  # fmt: skip
        ctx = f"; engine context {env['max_context']}" if env["max_context"] else ""
        out.append(f"      measured over: {', '.join(spans)}{ctx}")
    params = ", ".join(f"{k}={v:g}" for k, v in info["analytic"]["parameters"].items())
    out.append(f"  {info['analytic']['spec']}\n      parameters (defaults): {params}")
    out += ["", "acceptance models (--acceptance)"]
    for a in info["acceptance"]:
        mark = " (default)" if a["default"] else ""
        taus = "  ".join(f"{d} {t:.2f}" for d, t in a["accepted_len"].items())
        out.append(f"  {a['spec']:<26}τ at γ={a['gamma']}: {taus}{mark}\n      {a['source']}")
    out += ["", "other spec forms"]
    for kind, forms in info["spec_forms"].items():
        out += [
            f"  --{'profile' if kind == 'cost' else kind} {spec}: {what}"
            for spec, what in forms.items()
        ]
    print("\n".join(out))
    return 0
