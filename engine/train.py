"""Training the target LM on the offline corpora (``spectune train target``).

Next-byte cross-entropy on random 256-byte windows drawn from the three domains, AdamW with warmup
and cosine decay, one seed for everything (a ``numpy`` generator for batches, ``torch`` seeded
once for the initial weights). Resumable: the run directory keeps ``state.pt`` (weights, optimizer,
step, batch-generator state) written every ``save_every`` steps; rerunning the same command
continues from it. At the end the weights are rounded to fp16, evaluated on the held-out splits
(bits per byte per domain) and written to ``engine/checkpoints/target.safetensors`` with a card.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine import checkpoint
from engine.data import DOMAINS, Corpus, load_all, mixed_batch
from engine.model import Target, TargetConfig
from profiles.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (saved in the checkpoint's info)."""

    steps: int = 700  # optimizer steps
    batch: int = 16  # sequences per step
    seq_len: int = 256  # bytes per sequence
    lr: float = 3e-3  # peak learning rate
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac
    warmup: int = 40  # linear warmup steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    weights: dict = field(default_factory=lambda: {"code": 0.5, "chat": 0.25, "math": 0.25})
    eval_batches: int = 8  # held-out batches per domain for the final metrics
    save_every: int = 50  # steps between resumable states

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        frac = (step - self.warmup) / max(1, self.steps - self.warmup)
        cos = 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        return self.lr * (self.min_lr_frac + (1 - self.min_lr_frac) * cos)


# on_step(steps done, total steps, recent mean loss per name, checkpoint just saved): the
# command's progress hook (library code does not draw or print)
StepHook = Callable[[int, int, dict[str, float], bool], None]


def optimise(
    opt: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable, lr: float, clip: float
) -> None:
    """One optimiser step: set the learning rate, back-propagate ``loss``, clip, update."""
    set_lr(opt, lr)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def resume(
    state_path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator
) -> tuple[int, list, list]:
    """Load a resumable state (if ``state_path`` exists) into the model, optimiser and generator:
    (first step to run, loss history, sessions so far)."""
    if not state_path.exists():
        return 0, [], []
    state = torch.load(state_path, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = state["rng"]
    start = state["step"]
    sessions = state.get("sessions") or [{"command": "(first session)", "steps": [0, start]}]
    return start, state["history"], sessions


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


@torch.no_grad()
def heldout_bits(model: Target, corpora: dict[str, Corpus], cfg: TrainConfig) -> dict[str, float]:
    """Bits per byte of the target on each domain's held-out split (fixed windows, seed 1234)."""
    model.eval()
    out = {}
    for name, corpus in corpora.items():
        rng = np.random.default_rng(1234)
        total, count = 0.0, 0
        for _ in range(cfg.eval_batches):
            x = torch.from_numpy(corpus.batch(rng, cfg.batch, cfg.seq_len + 1))
            logits, _ = model.forward_seq(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            total += loss.item() * x[:, 1:].numel()
            count += x[:, 1:].numel()
        out[name] = total / count / math.log(2)
    model.train()
    return out


def train_target(
    model_cfg: TargetConfig,
    cfg: TrainConfig,
    run_dir: Path,
    out: Path,
    command: str,
    on_step: StepHook | None = None,
) -> dict:
    """Train (or resume) the target; write ``out`` and its card. Returns the info dict."""
    torch.manual_seed(cfg.seed)
    model = Target(model_cfg)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )
    rng = np.random.default_rng(cfg.seed)
    state_path = run_dir / "state.pt"
    start, history, sessions = resume(state_path, model, opt, rng)
    sessions.append({"command": command, "steps": [start, cfg.steps]})
    train = load_all("train")
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        x = torch.from_numpy(mixed_batch(train, cfg.weights, rng, cfg.batch, cfg.seq_len + 1))
        logits, _ = model.forward_seq(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        optimise(opt, loss, model.parameters(), cfg.lr_at(step), cfg.grad_clip)
        history.append(loss.item())
        save = (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps
        if on_step is not None:
            on_step(step + 1, cfg.steps, {"loss": float(np.mean(history[-50:]))}, save)
        if save:
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "rng": rng.bit_generator.state,
                "step": step + 1,
                "history": history,
                "sessions": sessions,
            }
            torch.save(state, state_path)
    # round to the committed precision first, so the card describes the committed weights
    rounded = {k: v.half().float() for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    held = heldout_bits(model, load_all("heldout"), cfg)
    info = {
        "train": asdict(cfg),
        "steps_done": cfg.steps,
        "final_train_loss": float(np.mean(history[-50:])),
        "loss_curve": [float(np.mean(history[i : i + 50])) for i in range(0, len(history), 50)],
        "heldout_bits_per_byte": held,
        "params": sum(p.numel() for p in model.parameters()),
        "corpus_bytes": {d: int(len(train[d].data)) for d in DOMAINS},
        "seconds_this_session": time.perf_counter() - t0,
        "command": command,
        "sessions": sessions,
    }
    checkpoint.save(out, model.state_dict(), "target", model_cfg.to_dict(), info)
    write_card(out, "target", model_cfg.to_dict(), info)
    return info


def write_card(out: Path, kind: str, model_cfg: dict, info: dict, notes: str = "") -> None:
    """A markdown model card beside the checkpoint: data, steps, losses, held-out metrics."""
    lines = [
        f"# {out.stem} ({kind})",
        "",
        f"Reproduce: `{info['command']}`",
        "",
        *_sessions(info),
        "## Config",
        "",
        "```",
        *[f"{k} = {v}" for k, v in model_cfg.items()],
        "```",
        "",
        "## Training",
        "",
        *[f"- {k}: {v}" for k, v in info["train"].items()],
        f"- parameters trained: {info['params']:,}",
        f"- corpus bytes (train split): {info['corpus_bytes']}",
        f"- wall time of the last session: {info['seconds_this_session']:.0f} s",
        f"- final train loss (mean of last 50 steps): {info['final_train_loss']:.4f}",
        f"- loss every 50 steps: {', '.join(f'{x:.3f}' for x in info['loss_curve'])}",
        "",
        "## Held-out metrics (fp16 weights as committed)",
        "",
    ]
    for key in ("heldout_bits_per_byte", "heldout"):
        for domain, value in info.get(key, {}).items():
            lines.append(f"- {domain}: {value}")
    if notes:
        lines += ["", "## Notes", "", notes]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _sessions(info: dict) -> list[str]:
    """Card lines for a run that was resumed with different settings (to reproduce it exactly)."""
    sessions = info.get("sessions") or []
    if len(sessions) < 2:
        return []
    lines = ["This run was resumed; each session's command and steps:", ""]
    lines += [f"- steps {a}..{b}: `{s['command']}`" for s in sessions for a, b in [s["steps"]]]
    return [*lines, ""]


def train(what: str, kinds: Sequence[str] = (), *, seed: int = 0,
          overrides: dict[str, Any] | None = None, target: str = "target",
          out_dir: Path = checkpoint.CHECKPOINTS, run_dir: Path, command: str = "",
          device: str = "cpu", on_step: StepHook | None = None) -> dict[str, dict]:  # fmt: skip
    """``spectune train``: the target LM (``what="target"``), the drafters ``kinds`` together
    against the frozen ``target`` (``"drafter"``, engine/distill.py) or the standalone draft LM
    (``"draft-model"``, engine/draftlm.py), each config's defaults under ``overrides``. Returns
    by model name its checkpoint path (in ``out_dir``) and its training info, loss curve left
    out."""
    overrides = overrides or {}
    if what == "target":
        out = out_dir / "target.safetensors"
        cfg = replace(TrainConfig(seed=seed), **overrides)
        infos = {
            "target": train_target(TargetConfig(), cfg, run_dir, out, command, on_step=on_step)
        }
    elif what == "draft-model":
        from engine.draftlm import DistilConfig, distil

        if not checkpoint.path_of(target).exists():
            raise InputError(f"{checkpoint.path_of(target)}: no target checkpoint")
        model, cfg = checkpoint.load_target(target), replace(DistilConfig(seed=seed), **overrides)
        infos = {"draft": distil(model, cfg, run_dir, out_dir / "draft.safetensors", command,
                                 on_step=on_step)}  # fmt: skip
    else:
        from engine.distill import DistillConfig, train_drafter

        target_path = checkpoint.path_of(target)
        if not target_path.exists():
            raise InputError(f"{target_path}: no target checkpoint (train the target first)")
        cfg = replace(DistillConfig(seed=seed), **overrides)
        outs = {k: out_dir / f"{k}.safetensors" for k in kinds}
        infos = train_drafter(list(kinds), target_path, cfg, run_dir, outs, command, device,
                              on_step=on_step)  # fmt: skip
    return {name: {"checkpoint": str(out_dir / f"{name}.safetensors"),
                   **{k: v for k, v in info.items() if k != "loss_curve"}}
            for name, info in infos.items()}  # fmt: skip
