"""Offline drafter evaluation: the paper's Table 1 and Figure 2 for our models.

For each drafter and domain, held-out prompts decode together with fixed-length verification
(every request verifies γ drafts each step) at temperature 1. Reported per (drafter, domain):

- ``tau``: mean tokens gained per request-step, bonus included (the paper's accepted length τ);
- ``cond_accept[k]``: P(draft k accepted | drafts 1..k−1 accepted), from the accepted counts A;
- ``conf_mean[k]``: mean predicted confidence σ(logit) at position k over the same events, so
  calibration can be read beside the observed rates (raw, before STS);
- ``tokens``, ``steps``, ``prompts``: how much was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import checkpoint
from engine.data import Corpus
from engine.decode import generate
from engine.engine import Engine
from policies import make_policy


@dataclass(frozen=True)
class EvalConfig:
    """What the evaluation decodes."""

    gamma: int = 7  # drafts verified per step (clipped to the drafter's block: mtp1 has 1)
    prompts: int = 16  # held-out prompts per domain, decoded as one batch
    prompt_len: int = 128  # bytes of each prompt (starting at a line start)
    new_tokens: int = 128  # tokens generated per prompt
    temperature: float = 1.0
    seed: int = 0


def conditional_acceptance(accepted: np.ndarray, gamma: int) -> list[float]:
    """``P(A ≥ k | A ≥ k−1)`` for k = 1..γ from per-step accepted counts A (NaN if unseen)."""
    out = []
    for k in range(1, gamma + 1):
        reached = (accepted >= k - 1).sum()
        out.append(float((accepted >= k).sum() / reached) if reached else float("nan"))
    return out


def evaluate_one(
    engine: Engine, corpus: Corpus, cfg: EvalConfig, gamma: int
) -> dict[str, float | list]:
    prompts = [list(p) for p in corpus.prompts(cfg.prompts, cfg.prompt_len, seed=cfg.seed)]
    policy = make_policy(f"fixed:k={gamma}")
    trace = generate(engine, prompts, cfg.new_tokens, policy=policy, seed=cfg.seed)
    a = np.array(trace.accepted)
    conf = np.array(trace.conf)[:, :gamma]  # [steps*R, γ]
    conf_mean = []
    for k in range(1, gamma + 1):
        reached = a >= k - 1
        conf_mean.append(float(conf[reached, k - 1].mean()) if reached.any() else float("nan"))
    return {
        "tau": float(trace.mean_accepted_len),
        "cond_accept": conditional_acceptance(a, gamma),
        "conf_mean": conf_mean,
        "tokens": trace.new_tokens,
        "steps": trace.steps,
        "prompts": len(prompts),
        "draft_s": trace.draft_s,
        "verify_s": trace.verify_s,
    }


def evaluate(
    drafters: list[str],
    domains: list[str],
    cfg: EvalConfig,
    *,
    target: str = "target",
    device: str | torch.device = "cpu",
    progress=None,
) -> dict[str, dict[str, dict]]:
    """``results[drafter][domain]`` for every pair (see module doc)."""
    model = checkpoint.load_target(target, device)
    corpora = {d: Corpus.load(d, "heldout") for d in domains}
    results: dict[str, dict[str, dict]] = {}
    for name in drafters:
        drafter = checkpoint.load_drafter(name, model, device)
        gamma = min(cfg.gamma, drafter.cfg.gamma)
        key = Path(name).stem
        results[key] = {}
        for domain in domains:
            engine = Engine(model, drafter, slots=cfg.prompts, temperature=cfg.temperature)
            r = evaluate_one(engine, corpora[domain], cfg, gamma)
            results[key][domain] = {"gamma": gamma, **r}
            if progress is not None:
                progress.update(1)
    return results


def plot(results: dict[str, dict[str, dict]], path: str) -> None:
    """Figure 2 style: conditional acceptance per position, one panel per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.4), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        for name, per in results.items():
            r = per[domain]
            ks = np.arange(1, len(r["cond_accept"]) + 1)
            ax.plot(ks, r["cond_accept"], marker="o", label=f"{name} (τ={r['tau']:.2f})")
        ax.set_title(domain)
        ax.set_xlabel("draft position k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("cond. acceptance")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict[str, dict[str, dict]]) -> str:
    """A plain-text τ table (drafters × domains) with the average."""
    domains = list(next(iter(results.values())))
    head = f"{'drafter':<8}{'gamma':>6}" + "".join(f"{d:>8}" for d in domains) + f"{'mean':>8}"
    lines = [head, "-" * len(head)]
    for name, per in results.items():
        taus = [per[d]["tau"] for d in domains]
        gamma = per[domains[0]]["gamma"]
        row = "".join(f"{t:>8.3f}" for t in taus)
        lines.append(f"{name:<8}{gamma:>6}{row}{np.mean(taus):>8.3f}")
    return "\n".join(lines)
