"""Training drafters against the frozen target (``spectune train drafter --kind ...``).

DSpark §3.3: blocks of γ tokens at random anchor positions of each sequence; the target, its
embedding and LM head are frozen; the loss is ``0.1·L_ce + 0.9·L_tv + 1.0·L_conf``, every term
weighted per block position by ``w_k = exp(−(k−1)/γ)``:

- ``L_ce``: cross-entropy of the ground-truth next byte;
- ``L_tv``: ``‖p_d − p_t‖₁`` to the target's distribution (temperature 1);
- ``L_conf``: BCE of the confidence head against ``c* = 1 − ½‖p_d − p_t‖₁`` (eq. 8).

Several drafter kinds can train in one run on the same batches: the target forward (the
expensive part on a CPU) is shared. Resumable like the target run; each kind gets its own fp16
checkpoint and model card with held-out metrics per domain.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import checkpoint
from engine.data import DOMAINS, Corpus, load_all, mixed_batch
from engine.drafter import Drafter, DrafterConfig
from engine.model import Target
from engine.train import StepHook, optimise, write_card


@dataclass(frozen=True)
class DistillConfig:
    """Hyperparameters of a drafter run (saved in each checkpoint's info)."""

    steps: int = 800  # optimizer steps
    batch: int = 8  # sequences per step
    seq_len: int = 256  # bytes per sequence
    anchors: int = 24  # blocks per sequence
    lr: float = 2e-3
    min_lr_frac: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    alpha_ce: float = 0.1
    alpha_tv: float = 0.9
    alpha_conf: float = 1.0
    seed: int = 0
    weights: dict = field(default_factory=lambda: {"code": 0.5, "chat": 0.25, "math": 0.25})
    eval_batches: int = 4  # held-out batches per domain
    save_every: int = 50

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        frac = (step - self.warmup) / max(1, self.steps - self.warmup)
        cos = 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        return self.lr * (self.min_lr_frac + (1 - self.min_lr_frac) * cos)


def drafter_config(kind: str, target: Target) -> DrafterConfig:
    """The sizes we ship (chosen by measurement, see the model cards)."""
    t = target.cfg
    layers = tuple(sorted({max(1, t.layers // 3), max(1, 2 * t.layers // 3), t.layers}))
    return DrafterConfig(
        kind=kind,
        gamma=1 if kind == "mtp1" else 7,
        dim=t.dim,
        heads=t.heads,
        feature_layers=layers,
        max_len=t.max_len,
    )


def losses(
    drafter: Drafter,
    x: torch.Tensor,
    feats: torch.Tensor,
    pt_all: torch.Tensor,
    anchors: torch.Tensor,
    cfg: DistillConfig,
) -> dict[str, torch.Tensor]:
    """The three weighted losses (per block, averaged) and diagnostics for one batch."""
    k = drafter.cfg.gamma
    b, n = anchors.shape
    logits, conf = drafter.forward_train(x, feats, anchors)  # [B, n, K, V], [B, n, K]
    pos = anchors[:, :, None] + torch.arange(k, device=x.device)  # [B, n, K]
    tgt = x.gather(1, (pos + 1).reshape(b, -1)).view(b, n, k)
    pt = pt_all.gather(1, pos.reshape(b, -1, 1).expand(-1, -1, pt_all.shape[-1])).view(b, n, k, -1)
    logp = F.log_softmax(logits, dim=-1)
    ce = -logp.gather(-1, tgt[..., None]).squeeze(-1)  # [B, n, K]
    l1 = (logp.exp() - pt).abs().sum(-1)
    cstar = (1 - 0.5 * l1).detach().clamp(0.0, 1.0)
    bce = F.binary_cross_entropy_with_logits(conf, cstar, reduction="none")
    w = torch.exp(-torch.arange(k, device=x.device, dtype=logits.dtype) / k)  # w_k
    mean = lambda t: (t * w).sum(-1).mean()  # noqa: E731
    total = cfg.alpha_ce * mean(ce) + cfg.alpha_tv * mean(l1) + cfg.alpha_conf * mean(bce)
    return {
        "loss": total,
        "ce": mean(ce).detach(),
        "tv": mean(l1).detach(),
        "conf": mean(bce).detach(),
        "accept": cstar.mean((0, 1)),  # [K] analytic per-position acceptance 1 - TV
        "conf_err": (torch.sigmoid(conf) - cstar).abs().mean().detach(),
    }


@torch.no_grad()
def target_pass(target: Target, x: torch.Tensor, layers: tuple[int, ...]):
    logits, feats = target.forward_seq(x[:, :-1], layers)
    return feats, torch.softmax(logits, dim=-1)


def sample_anchors(rng: np.random.Generator, b: int, n: int, s: int, k: int) -> torch.Tensor:
    """``[B, n]`` distinct anchor positions in ``1 .. s−k`` per row."""
    rows = [rng.choice(np.arange(1, s - k + 1), size=n, replace=False) for _ in range(b)]
    return torch.from_numpy(np.stack(rows)).long()


@torch.no_grad()
def heldout(
    drafter: Drafter, target: Target, corpora: dict[str, Corpus], cfg: DistillConfig, device
) -> dict[str, dict]:
    """Per domain: analytic acceptance per position (teacher forced), losses, conf error."""
    drafter.eval()
    out = {}
    for name, corpus in corpora.items():
        rng = np.random.default_rng(4321)
        acc, tv, err = [], [], []
        for _ in range(cfg.eval_batches):
            x = torch.from_numpy(corpus.batch(rng, cfg.batch, cfg.seq_len + 1)).to(device)
            feats, pt = target_pass(target, x, drafter.cfg.feature_layers)
            a = sample_anchors(rng, cfg.batch, cfg.anchors, cfg.seq_len, drafter.cfg.gamma)
            m = losses(drafter, x, feats, pt, a.to(device), cfg)
            acc.append(m["accept"].cpu().numpy())
            tv.append(float(m["tv"]))
            err.append(float(m["conf_err"]))
        a = np.mean(acc, axis=0)
        out[name] = {
            "accept_1_minus_tv": [round(float(v), 4) for v in a],
            "expected_tau_teacher_forced": round(float(1 + np.cumprod(a).sum()), 3),
            "tv_loss": round(float(np.mean(tv)), 4),
            "conf_abs_err": round(float(np.mean(err)), 4),
        }
    drafter.train()
    return out


def train_drafter(
    kinds: list[str],
    target_path: Path,
    cfg: DistillConfig,
    run_dir: Path,
    outs: dict[str, Path],
    command: str,
    device: str = "cpu",
    on_step: StepHook | None = None,
) -> dict[str, dict]:
    """Train the drafters of ``kinds`` together on shared target passes. Returns infos by kind."""
    target = checkpoint.load_target(str(target_path), device)
    torch.manual_seed(cfg.seed)
    drafters = {k: Drafter(drafter_config(k, target), target.embed, target.head, target.cfg.dim)
                for k in kinds}  # fmt: skip
    for d in drafters.values():
        d.to(device).train()
    params = {k: [p for p in d.parameters() if p.requires_grad] for k, d in drafters.items()}
    opts = {k: torch.optim.AdamW(p, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
            for k, p in params.items()}  # fmt: skip
    layers = tuple(sorted({x for d in drafters.values() for x in d.cfg.feature_layers}))
    rng = np.random.default_rng(cfg.seed)
    start, history, sessions = 0, {k: [] for k in kinds}, []
    state_path = run_dir / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        for k in kinds:
            drafters[k].load_state_dict(state["model"][k], strict=False)
            opts[k].load_state_dict(state["opt"][k])
        rng.bit_generator.state = state["rng"]
        start, history = state["step"], state["history"]
        sessions = state.get("sessions") or [{"command": "(first session)", "steps": [0, start]}]
    sessions.append({"command": command, "steps": [start, cfg.steps]})
    train = load_all("train")
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        x = torch.from_numpy(mixed_batch(train, cfg.weights, rng, cfg.batch, cfg.seq_len + 1))
        x = x.to(device)
        feats, pt = target_pass(target, x, layers)
        for k, d in drafters.items():
            idx = [layers.index(i) for i in d.cfg.feature_layers]
            f = feats.unflatten(-1, (len(layers), -1))[:, :, idx].flatten(-2)
            a = sample_anchors(rng, cfg.batch, cfg.anchors, cfg.seq_len, d.cfg.gamma).to(device)
            m = losses(d, x, f, pt, a, cfg)
            optimise(opts[k], m["loss"], params[k], cfg.lr_at(step), cfg.grad_clip)
            history[k].append(float(m["loss"].detach()))
        save = (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps
        if on_step is not None:
            means = {k: float(np.mean(h[-50:])) for k, h in history.items()}
            on_step(step + 1, cfg.steps, means, save)
        if save:
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "model": {k: d.trainable_state() for k, d in drafters.items()},
                "opt": {k: o.state_dict() for k, o in opts.items()},
                "rng": rng.bit_generator.state,
                "step": step + 1,
                "history": history,
                "sessions": sessions,
            }
            torch.save(state, state_path)
    held_corpora = load_all("heldout")
    infos = {}
    for k, d in drafters.items():
        rounded = {n: v.half().float() for n, v in d.trainable_state().items()}
        d.load_state_dict(rounded, strict=False)
        h = history[k]
        info = {
            "train": asdict(cfg),
            "steps_done": cfg.steps,
            "final_train_loss": float(np.mean(h[-50:])),
            "loss_curve": [float(np.mean(h[i : i + 50])) for i in range(0, len(h), 50)],
            "heldout": heldout(d, target, held_corpora, cfg, device),
            "params": sum(p.numel() for p in params[k]),
            "corpus_bytes": {dm: int(len(train[dm].data)) for dm in DOMAINS},
            "seconds_this_session": time.perf_counter() - t0,
            "target": str(target_path.name),
            "command": command,
            "sessions": sessions,
        }
        checkpoint.save(outs[k], d.trainable_state(), k, d.cfg.to_dict(), info)
        write_card(outs[k], k, d.cfg.to_dict(), info)
        infos[k] = info
    return infos
