"""Tuning plots (matplotlib, Agg backend: no display). Plots live on the CLI side, runner/cli/.

- ``frontier.png`` (paper Figure 7): output throughput against tokens/s/user p50, the Pareto
  frontier of every setting and load tried per policy, with the SLA bound drawn when it is on
  tokens/s/user.
- ``load.png`` (paper Figure 8): for each policy's tuned setting, throughput (top) and the mean
  verification budget per request — verify tokens including the anchor/bonus position, 1 + ℓ,
  as the paper counts MTP-1's budget as 2 — (bottom) against the load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(path: Path, series: dict[str, list[dict[str, Any]]], sla: list[Any]) -> None:
    """``series``: policy label → frontier points (dicts with tps_per_user_p50, throughput)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in series.items():
        if pts:
            ax.plot([p["tps_per_user_p50"] for p in pts], [p["throughput_tok_s"] for p in pts],
                    marker="o", markersize=3, label=label)  # fmt: skip
    for s in sla:
        if s.metric.startswith("tps_per_user"):
            ax.axvline(s.value, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"SLA {s}", (s.value, 0), textcoords="offset points", xytext=(3, 3),
                        fontsize=7, color="grey")  # fmt: skip
    ax.set_xlabel("tokens/s/user (p50)")
    ax.set_ylabel("output throughput (tok/s)")
    ax.set_title("Throughput vs interactivity (cf. DSpark Figure 7)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_load(path: Path, series: dict[str, list[dict[str, Any]]], mode: str) -> None:
    """``series``: policy label → per-load points of its tuned setting."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    for label, pts in series.items():
        xs = [p["load"] for p in pts]
        top.plot(xs, [p["throughput_tok_s"] for p in pts], marker="o", markersize=3, label=label)
        bottom.plot(xs, [1 + (p["mean_verify_len"] or 0) for p in pts], marker="o",
                    markersize=3, label=label)  # fmt: skip
    top.set_ylabel("output throughput (tok/s)")
    top.set_title("Throughput and verification budget vs load (cf. DSpark Figure 8)")
    bottom.set_ylabel("verify tokens / request / step\n(1 + drafts verified)")
    bottom.set_xlabel("concurrent requests (cap N)" if mode == "concurrency"
                      else "offered load (request rate or rate scale)")  # fmt: skip
    for ax in (top, bottom):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    top.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tune_plots(rep: Any, sla: list[Any]) -> list[str]:
    """``frontier.png`` and ``load.png`` of a :class:`~runner.report.TuneReport` in its folder."""
    plot_frontier(rep.out / "frontier.png", rep.fronts, list(sla))
    plot_load(rep.out / "load.png", {e: list(r.per_load) for e, r in rep.policies.items()},
              rep.mode)  # fmt: skip
    return ["frontier.png", "load.png"]
