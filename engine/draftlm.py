"""A standalone draft LM for vLLM's ``draft_model`` method, distilled from the target.

vLLM's ``draft_model`` speculator is a separate, smaller causal LM with the target's vocabulary,
run autoregressively for K tokens per step (no target hidden states, unlike our drafters). Ours is
a :class:`~engine.model.Target` with fewer blocks, so it exports to Hugging Face Llama exactly as
the target does (:mod:`engine.hf`):

- initialised from the target: its embedding, final norm, LM head and the blocks listed in
  ``DistilConfig.blocks`` (layer dropping; the first and last block by default);
- distilled on the offline corpora with the forward KL ``KL(p_t ‖ p_d)`` at temperature 1 over
  every position of random 256-byte windows (all weights trained, target frozen);
- measured by :func:`speculate`, speculative decoding with our lossless rejection sampler
  (:func:`engine.sampling.verify`) over held-out prompts, which gives the accepted length τ our
  engine sees with this draft (the same quantity vLLM reports as its mean acceptance length).

Resumable like the target's training (``state.pt`` in the run directory). Shapes: B batch, S
sequence, V vocab, R requests, K draft tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import checkpoint
from engine.data import DOMAINS, Corpus, load_all, mixed_batch
from engine.model import Target
from engine.sampling import Draws, verify
from engine.train import StepHook, optimise, resume, write_card


@dataclass(frozen=True)
class DistilConfig:
    """Hyperparameters of one distillation run (saved in the checkpoint's info)."""

    blocks: tuple[int, ...] = (0, 1)  # target blocks (0-based) copied into the draft, in order
    steps: int = 150  # optimizer steps
    batch: int = 8  # sequences per step
    seq_len: int = 128  # bytes per sequence
    lr: float = 1e-3  # peak learning rate (linear warmup, cosine decay to lr * min_lr_frac)
    min_lr_frac: float = 0.1
    warmup: int = 20
    grad_clip: float = 1.0
    seed: int = 0
    weights: dict = field(default_factory=lambda: {"code": 0.5, "chat": 0.25, "math": 0.25})
    eval_batches: int = 4  # held-out batches per domain for the teacher-forced metrics
    save_every: int = 25  # steps between resumable states

    def lr_at(self, step: int) -> float:
        import math

        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        frac = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * (
            self.min_lr_frac + (1 - self.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))
        )


def init_from(target: Target, blocks: tuple[int, ...]) -> Target:
    """A draft of ``len(blocks)`` layers holding copies of the target's weights."""
    if not blocks or any(not 0 <= b < target.cfg.layers for b in blocks):
        raise ValueError(f"blocks must index the target's {target.cfg.layers} layers: {blocks}")
    draft = Target(replace(target.cfg, layers=len(blocks)))
    state = {k: v for k, v in target.state_dict().items() if not k.startswith("blocks.")}
    for new, old in enumerate(blocks):
        prefix = f"blocks.{old}."
        for k, v in target.state_dict().items():
            if k.startswith(prefix):
                state[f"blocks.{new}." + k[len(prefix) :]] = v
    draft.load_state_dict({k: v.clone() for k, v in state.items()})
    return draft


def kl_loss(t_logits: torch.Tensor, d_logits: torch.Tensor) -> torch.Tensor:
    """Mean forward KL ``KL(p_t ‖ p_d)`` over positions; logits ``[B, S, V]``."""
    t = F.log_softmax(t_logits.float(), dim=-1).flatten(0, 1)
    d = F.log_softmax(d_logits.float(), dim=-1).flatten(0, 1)
    return F.kl_div(d, t, log_target=True, reduction="batchmean")


@torch.no_grad()
def teacher_forced(
    target: Target, draft: Target, corpora: dict[str, Corpus], cfg: DistilConfig
) -> dict:
    """Per domain: mean KL and the single-position acceptance ``1 − ½‖p_d − p_t‖₁`` (seed 1234)."""
    out = {}
    for name, corpus in corpora.items():
        rng = np.random.default_rng(1234)
        kls, acc = [], []
        for _ in range(cfg.eval_batches):
            x = torch.from_numpy(corpus.batch(rng, cfg.batch, cfg.seq_len))
            t, _ = target.forward_seq(x)
            d, _ = draft.forward_seq(x)
            kls.append(kl_loss(t, d).item())
            tv = 0.5 * (t.softmax(-1) - d.softmax(-1)).abs().sum(-1)  # [B, S]
            acc.append((1 - tv).mean().item())
        out[name] = {
            "kl": round(float(np.mean(kls)), 4),
            "accept_1_minus_tv": round(float(np.mean(acc)), 4),
        }
    return out


@torch.no_grad()
def speculate(
    target: Target,
    draft: Target,
    prompts: list[list[int]],
    new_tokens: int,
    gamma: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Speculative decoding of equal-length ``prompts`` with ``gamma`` drafts per step.

    Every step the draft samples ``gamma`` tokens autoregressively, the target scores them in one
    pass and :func:`~engine.sampling.verify` accepts a prefix and samples the next token
    (lossless). Sequences are right-padded in one buffer and recomputed each step (causal
    attention, so padding never leaks). Returns the accepted count ``n`` of every request-step
    (τ = mean(n) + 1), decoding until each request has ``new_tokens`` new tokens.
    """
    g = torch.Generator().manual_seed(seed)
    r, p = len(prompts), len(prompts[0])
    buf = torch.zeros((r, p + new_tokens + gamma + 1), dtype=torch.long)  # [R, S]
    buf[:, :p] = torch.tensor(prompts)
    lens = torch.full((r,), p)  # tokens so far per request
    rows, out = torch.arange(r), []
    while True:
        live = (lens - p < new_tokens).nonzero().flatten()
        if not len(live):
            return np.concatenate(out) if out else np.zeros(0, dtype=int)
        b, n0 = buf[live], lens[live]
        dt, dp = [], []
        for k in range(gamma):  # draft: K autoregressive samples
            logits, _ = draft.forward_seq(b[:, : int(n0.max()) + k])
            last = logits[rows[: len(live)], n0 + k - 1]  # [R, V]
            if temperature <= 0:  # greedy: argmax drafts (verify matches the target's argmax)
                tok = last.argmax(-1)
                probs = F.one_hot(tok, last.shape[-1]).float()
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                tok = torch.multinomial(probs, 1, generator=g)[:, 0]
            b[rows[: len(live)], n0 + k] = tok
            dt.append(tok)
            dp.append(probs)
        logits, _ = target.forward_seq(b[:, : int(n0.max()) + gamma])
        pos = n0[:, None] - 1 + torch.arange(gamma + 1)[None, :]  # [R, K+1]
        t_logits = logits[rows[: len(live), None], pos]  # [R, K+1, V]
        draws = Draws.new(len(live), gamma, logits.shape[-1], g, "cpu")
        ell = torch.full((len(live),), gamma)
        n, nxt, _ = verify(
            t_logits, torch.stack(dt, 1), torch.stack(dp, 1), ell, temperature, draws
        )
        b[rows[: len(live)], n0 + n] = nxt
        buf[live], lens[live] = b, n0 + n + 1
        out.append(n.numpy())


def distil(
    target: Target,
    cfg: DistilConfig,
    run_dir: Path,
    out: Path,
    command: str,
    on_step: StepHook | None = None,
) -> dict:
    """Distil (or resume) the draft from ``target``; write ``out`` and its card. Returns info."""
    torch.manual_seed(cfg.seed)
    draft = init_from(target, cfg.blocks).train()
    opt = torch.optim.AdamW(draft.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    state_path = run_dir / "state.pt"
    start, history, sessions = resume(state_path, draft, opt, rng)
    sessions.append({"command": command, "steps": [start, cfg.steps]})
    train = load_all("train")
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        x = torch.from_numpy(mixed_batch(train, cfg.weights, rng, cfg.batch, cfg.seq_len))
        with torch.no_grad():
            t_logits, _ = target.forward_seq(x)
        d_logits, _ = draft.forward_seq(x)
        loss = kl_loss(t_logits, d_logits)
        optimise(opt, loss, draft.parameters(), cfg.lr_at(step), cfg.grad_clip)
        history.append(loss.item())
        save = (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps
        if on_step is not None:
            on_step(step + 1, cfg.steps, {"kl": float(np.mean(history[-25:]))}, save)
        if save:
            run_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"model": draft.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                        "rng": rng.bit_generator.state, "history": history,
                        "sessions": sessions}, state_path)  # fmt: skip
    draft.load_state_dict({k: v.half().float() for k, v in draft.state_dict().items()})
    draft.eval()
    info = {
        "role": "draft_model",
        "train": {**asdict(cfg), "blocks": list(cfg.blocks)},
        "final_train_loss": float(np.mean(history[-25:])),
        "loss_curve": [float(np.mean(history[i : i + 25])) for i in range(0, len(history), 50)],
        "heldout": teacher_forced(target, draft, load_all("heldout"), cfg),
        "params": sum(p.numel() for p in draft.parameters()),
        "corpus_bytes": {d: int(len(train[d].data)) for d in DOMAINS},
        "seconds_this_session": time.perf_counter() - t0,
        "command": command,
        "sessions": sessions,
    }
    checkpoint.save(out, draft.state_dict(), "target", draft.cfg.to_dict(), info)
    write_card(out, "draft_model", draft.cfg.to_dict(), info)
    return info


def tau(
    target: Target,
    draft: Target,
    domains: tuple[str, ...] = DOMAINS,
    *,
    prompts: int = 8,
    prompt_len: int = 128,
    new_tokens: int = 64,
    gamma: int = 4,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Accepted length τ (bonus included) per held-out domain, decoded by :func:`speculate`."""
    out = {}
    for d in domains:
        ps = [list(p) for p in Corpus.load(d, "heldout").prompts(prompts, prompt_len, seed=seed)]
        n = speculate(target, draft, ps, new_tokens, gamma, temperature, seed)
        out[d] = round(float(n.mean()) + 1.0, 3)
    return out
