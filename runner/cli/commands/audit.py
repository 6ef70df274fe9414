"""Audit a policy's losslessness by exact enumeration over small scenarios (policies/audit.py).

``spectune audit --policy SPEC [--scenario NAME]`` prints the target's and the policy's exact
output distributions and their total variation; exit code 0 when lossless, 3 when not.
``spectune audit --all`` runs every registered policy (default parameters) over every scenario
and prints a table; exit 3 if a policy that claims to be lossless is not.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "audit"
HELP = "check a policy's losslessness exactly on small enumerable scenarios"

NOT_LOSSLESS = 3  # exit code when the audited policy changes the output distribution


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", metavar="SPEC", help="policy spec, e.g. dspark:min_verify_len=1")
    which.add_argument("--all", action="store_true", help="every registered policy")
    from policies.scenarios import SCENARIOS

    parser.add_argument(
        "--scenario",
        metavar="NAME",
        help=f"one scenario of {', '.join(SCENARIOS)} (default: all of them)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from policies import available, make_policy
    from policies.audit import audit_many
    from policies.scenarios import SCENARIOS, scenario

    names = [scenario(args.scenario).name] if args.scenario else list(SCENARIOS)
    if args.all:
        rows = [_summary(audit_many(cls(), names)) for cls in available().values()]
        ok = all(r["verdict"] != "FAIL" for r in rows)
        if args.json:
            _dump({"lossless_claims_hold": ok, "scenarios": names, "policies": rows})
        else:
            _print_table(rows, names)
        return 0 if ok else NOT_LOSSLESS
    results = audit_many(make_policy(args.policy), names)
    lossless = all(r.lossless for r in results)
    if args.json:
        if len(results) == 1:
            _dump(results[0].to_json())
        else:
            worst = max(results, key=lambda r: r.total_variation).to_json()
            _dump(
                {
                    "policy": worst["policy"],
                    "claims_lossless": worst["claims_lossless"],
                    "lossless": lossless,
                    "total_variation": worst["total_variation"],
                    "worst_scenario": worst["scenario"],
                    "target_distribution": worst["target_distribution"],
                    "output_distribution": worst["output_distribution"],
                    "scenarios": [r.to_json() for r in results],
                }
            )
    else:
        for r in results:
            _print_result(r)
    return 0 if lossless else NOT_LOSSLESS


def _summary(results: list) -> dict[str, Any]:
    first = results[0]
    lossless = all(r.lossless for r in results)
    if first.claims is None:
        verdict = "n/a"
    elif first.claims:
        verdict = "ok" if lossless else "FAIL"
    else:
        verdict = "not caught" if lossless else "caught"
    return {
        "policy": first.policy,
        "claims_lossless": first.claims,
        "lossless": lossless,
        "verdict": verdict,
        "total_variation": {r.scenario: round(r.total_variation, 12) + 0.0 for r in results},
    }


def _print_table(rows: list[dict[str, Any]], names: list[str]) -> None:
    claim = {True: "lossless", False: "lossy", None: "n/a"}
    width = max(len(r["policy"].split(":")[0]) for r in rows) + 2
    cols = [n[:16] for n in names]
    out = sys.stdout
    out.write(
        f"{'policy':<{width}}{'claims':<10}{'verdict':<12}" + "".join(f"{c:>18}" for c in cols)
    )
    out.write("\n")
    for r in rows:
        name = r["policy"].split(":")[0]
        tvs = "".join(f"{r['total_variation'][n]:>18.4f}" for n in names)
        out.write(f"{name:<{width}}{claim[r['claims_lossless']]:<10}{r['verdict']:<12}{tvs}\n")
    out.write("(columns: total variation between the target's and the policy's output law)\n")


def _print_result(r: Any) -> None:
    verdict = "lossless" if r.lossless else "NOT LOSSLESS"
    out = sys.stdout
    out.write(f"{r.policy} on {r.scenario}: {verdict}  (total variation {r.total_variation:.4f}")
    out.write(f", first token {r.first_token_tv:.4f})\n")
    out.write(f"  {'first token':<14}{'target':>10}{'output':>10}\n")
    for key, p in r.target_distribution.items():
        out.write(f"  {key:<14}{p:>10.4f}{r.output_distribution[key]:>10.4f}\n")


def _dump(obj: dict[str, Any]) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
