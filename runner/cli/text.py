"""Text of what the library returns: the tune report table and the export manifests; and the
command line, as files written record it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line() -> str:
    """This run's command, shell-quoted (``spectune ARGS``), for the provenance of its files."""
    return "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def why_not(s: dict) -> list[str]:
    """Lines saying why entries are infeasible (their best value of each SLA metric) and which
    answers sit at the top of the load grid (a larger load might do better)."""
    knob = {"concurrency": "--concurrency"}.get(s["mode"], "--rate-scales / --request-rates")
    lines = []
    for entry, d in s["policies"].items():
        if not d["feasible"] and d.get("closest"):
            best = ", ".join(f"{c.split('>=')[0].split('<=')[0]} {_g(v)} (needs {c})"
                             for c, v in d["closest"].items())  # fmt: skip
            lines.append(f"infeasible   {entry}: best over every setting and load: {best}")
        elif d.get("at_top_of_grid"):
            lines.append(f"capped       {entry}: meets the SLA at the top of the load grid "
                         f"({d['load']:g}); extend {knob} for a higher answer")  # fmt: skip
    return [""] + lines if lines else []


def _g(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def format_report(s: dict, out: Path) -> str:
    """The human-readable summary: one line per policy entry."""
    unit = "N" if s["mode"] == "concurrency" else "load"
    lines = [
        f"SLA          {' and '.join(s['sla']) or '(none: highest throughput)'}",
        f"workload     {s['workload']}",
        f"profile      {s['profile']}",
        f"acceptance   {s['acceptance']}",
        f"load         {s['mode']}: {', '.join(f'{x:g}' for x in s['loads'])}",
        "",
    ]
    head = ("policy", "best setting", "tok/s at SLA", "vs k=1", f"at {unit}", "tok/s/user",
            "verify/req", "min share of oracle")  # fmt: skip
    rows = [head]
    for entry, d in s["policies"].items():
        gain = d.get("gain_vs_fixed_k1")
        ratios = list(d["share_of_oracle"].values())
        rows.append((
            entry, d["best"] if len(d["best"]) < 60 else d["best"][:57] + "...",
            f"{d['throughput_at_sla']:,.0f}" if d["feasible"] else "infeasible",
            f"{gain:+.0%}" if gain is not None and d["feasible"] else "",
            f"{d['load']:g}" if d["load"] is not None else "",
            f"{d['tps_per_user_p50']:.1f}" if d.get("tps_per_user_p50") else "",
            f"{d['mean_verify_len']:.2f}" if d.get("mean_verify_len") is not None else "",
            f"{min(ratios):.0%}" if ratios else "",
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    for n, r in enumerate(rows):
        lines.append(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += why_not(s)
    pts = s.get("points", {})
    lines += ["", f"points       {pts.get('total', 0)} ({pts.get('reused', 0)} reused from an "
              f"earlier run, {pts.get('simulated', 0)} simulated)"]  # fmt: skip
    if s["best"]:
        lines.append(f"best.yaml    {out / 'best.yaml'}: {s['policies'][s['best']]['best']}")
    else:
        lines.append("best.yaml    not written: no lossless policy meets the SLA at any load")
    lines.append(f"wrote        {out}/: {', '.join(s.get('files', []))}")
    return "\n".join(lines)


def describe(target: Path, m: dict) -> str:
    """One block per format: files, exactness, approximation cost, notes."""
    lines = [f"{m['format']:<16} {target}/: {', '.join(m['files'])}"]
    if m["exact"]:
        lines.append(f"  exact: {m['exported_policy']}")
    elif m["exported_policy"] == m["tuned_policy"]:
        lines.append(f"  same policy, not the same planner: {m['exported_policy']} (see the notes)")
    else:
        lines.append(f"  cannot express {m['tuned_policy']}")
        lines.append(f"  nearest: {m['exported_policy']}")
        a = m.get("approximation")
        if a and a.get("simulated"):
            t, e = a["tuned"], a["exported"]
            lines.append(
                f"  simulated at {a['load_mode']} {a['load']:g}: {e['throughput_tok_s']:,.0f} vs "
                f"{t['throughput_tok_s']:,.0f} tok/s ({a['throughput_change']:+.1%}), "
                f"tok/s/user p50 {e['tps_per_user_p50']:.1f} vs {t['tps_per_user_p50']:.1f}, "
                f"SLA {'met' if e['sla_met'] else 'MISSED'}"
            )
        elif a:
            lines.append(f"  approximation not simulated: {a.get('reason')}")
    for note in m.get("notes", []):
        lines.append(f"  note: {note}")
    launch = m.get("launch")
    if launch:
        env = " ".join(f"{k}={v}" for k, v in launch["env"].items())
        lines.append(f"  launch: {target}/launch.sh  ({env + ' ' if env else ''}"
                     f"{' '.join(launch['argv'][:3])} ...)")  # fmt: skip
    return "\n".join(lines)
