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
from dataclasses import fields
from typing import Any

NAME = "profiles"
HELP = "list builtin cost and acceptance profiles with their provenance"

SPEC_FORMS = {
    "cost": {
        "builtin:NAME": "a named builtin cost profile (below)",
        "analytic:key=value,...": "analytic roofline generator (parameters below), not measured",
        "FILE.yaml": "a spectune.cost/v1 profile: measured, or `spectune import "
        "sglang-sps|cost-csv`",
    },
    "acceptance": {
        "paper:NAME": "parametric model read from the DSpark paper (below)",
        "records:FILE.npz[?temps=CALIB]": "replay of recorded engine rounds per request; temps "
        "from `spectune calibrate` (YAML) or SGLang STS JSON",
        "FILE.yaml": "a spectune.acceptance/v1 parametric profile, e.g. `spectune import "
        "vllm-metrics`",
        "SPEC?temps=CALIB": "any form above with STS temperatures (a spectune calibration or an "
        "SGLang STS JSON; its length must be the model's gamma)",
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe() -> dict[str, Any]:
    """Everything ``--json`` prints."""
    from profiles.analytic import Roofline
    from profiles.builtin import (
        BUILTIN_ACCEPTANCE,
        BUILTIN_COSTS,
        DEFAULT_ACCEPTANCE,
        DEFAULT_COST,
        PAPER_MODELS,
        load_acceptance,
        load_cost,
    )

    costs = []
    for name, spec in BUILTIN_COSTS.items():
        model = load_cost(spec)
        costs.append({
            "spec": f"builtin:{name}",
            "resolves_to": spec,
            "source": model.source,
            "default": f"builtin:{name}" == DEFAULT_COST,
            "repaired_points": model.repaired(),  # probes the monotone repair lifted, per term
            "envelope": model.envelope(),  # measured ranges; steps outside are counted
        })  # fmt: skip
    defaults = Roofline()
    analytic = {
        "spec": "analytic:key=value,...",
        "source": defaults.label(),
        "parameters": {f.name: getattr(defaults, f.name) for f in fields(Roofline)},
    }
    acceptance = []
    specs = [f"builtin:{n}" for n in BUILTIN_ACCEPTANCE] + [f"paper:{n}" for n in PAPER_MODELS]
    for spec in specs:
        model = load_acceptance(spec)
        entry = {
            "spec": spec,
            "source": model.source,
            "gamma": model.gamma,
            "accepted_len": {d: round(model.expected_accepted_len(d), 3) for d in model.domains},
            "default": spec == DEFAULT_ACCEPTANCE,
        }
        if hasattr(model, "rates"):
            entry["rates"] = {d: [round(r, 4) for r in v] for d, v in model.rates.items()}
        acceptance.append(entry)
    return {"cost": costs, "analytic": analytic, "acceptance": acceptance, "spec_forms": SPEC_FORMS}


def run(args: argparse.Namespace) -> int:
    info = describe()
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
