"""Reliability diagram of an STS calibration (the DSpark paper's Figure 6, on our records).

One panel per draft position: observed prefix acceptance 1[A ≥ k] against the predicted survival
Π_{i≤k} σ(logit_i / T_i) in 15 equal-width bins, before (T = 1) and after calibration, the
diagonal of perfect calibration, and the held-out sample counts per bin as a shaded histogram.
Bins holding fewer than ``MIN_COUNT`` rounds are not drawn (their frequencies are noise).
Plotting lives in runner/ (STYLE 8); the numbers come from ``profiles.calibration``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from profiles.calibration import BINS, auc, ece, reliability, view

MIN_COUNT = 10  # rounds a bin needs to be drawn


def reliability_png(
    path: str | Path,
    logits: np.ndarray,
    accepted: np.ndarray,
    temperatures: np.ndarray,
    *,
    title: str = "",
    kind: str = "cumulative",
    bins: int = BINS,
) -> None:
    """Write the diagram for held-out ``logits`` [N, γ] / ``accepted`` [N] to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gamma = logits.shape[1]
    cols = min(gamma, 4)
    rows = -(-gamma // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for k, ax in enumerate(axes.ravel()):
        if k >= gamma:
            ax.axis("off")
            continue
        raw, hit = view(kind, logits, accepted, k, None)
        cal, _ = view(kind, logits, accepted, k, np.asarray(temperatures, float))
        hist = ax.twinx()
        _, _, count = reliability(cal, hit, bins)
        hist.bar(edges[:-1], count, width=1.0 / bins, align="edge", color="0.85", zorder=0)
        hist.set_yticks([])
        ax.set_zorder(hist.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="Perfect calibration")
        for probs, style, label in (
            (raw, "o-", "Before calibration"),
            (cal, "s-", "After calibration"),
        ):
            pred, obs, n = reliability(probs, hit, bins)
            ok = n >= MIN_COUNT
            ax.plot(pred[ok], obs[ok], style, ms=3.5, lw=1.3, label=label)
        ax.text(
            0.04,
            0.96,
            f"ECE: {100 * ece(raw, hit, bins):.1f}% → {100 * ece(cal, hit, bins):.1f}%"
            f"\nAUC: {auc(cal, hit):.3f}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"Position {k + 1}")
        if k % cols == 0:
            ax.set_ylabel("Observed acceptance")
        if k >= gamma - cols:
            ax.set_xlabel("Predicted acceptance")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle(title or f"Reliability of the {kind} survival (held-out split)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
