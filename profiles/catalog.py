"""The catalog of profiles: every builtin cost and acceptance profile with its provenance, the
analytic generator's parameters, and the spec forms that load any other profile
(``spectune profiles`` prints it)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

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


def catalog() -> dict[str, Any]:
    """Everything ``spectune profiles --json`` prints."""
    return {"cost": _costs(), "analytic": _analytic(), "acceptance": _acceptance(),
            "spec_forms": SPEC_FORMS}  # fmt: skip


def _costs() -> list[dict[str, Any]]:
    """Each builtin cost profile: what it resolves to, its source, repairs and envelope."""
    from profiles.builtin import BUILTIN_COSTS, DEFAULT_COST, load_cost

    out = []
    for name, spec in BUILTIN_COSTS.items():
        model = load_cost(spec)
        out.append({
            "spec": f"builtin:{name}",
            "resolves_to": spec,
            "source": model.source,
            "default": f"builtin:{name}" == DEFAULT_COST,
            "repaired_points": model.repaired(),  # probes the monotone repair lifted, per term
            "envelope": model.envelope(),  # measured ranges; steps outside are counted
        })  # fmt: skip
    return out


def _analytic() -> dict[str, Any]:
    """The ``analytic:`` generator with its default parameters."""
    from profiles.analytic import Roofline

    defaults = Roofline()
    return {
        "spec": "analytic:key=value,...",
        "source": defaults.label(),
        "parameters": {f.name: getattr(defaults, f.name) for f in fields(Roofline)},
    }


def _acceptance() -> list[dict[str, Any]]:
    """Each builtin and paper acceptance model: source, γ, accepted length per domain, rates."""
    from profiles.builtin import (
        BUILTIN_ACCEPTANCE,
        DEFAULT_ACCEPTANCE,
        PAPER_MODELS,
        load_acceptance,
    )

    out = []
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
        out.append(entry)
    return out
