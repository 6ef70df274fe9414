"""Tiny randomly-initialised models built in code (vocabulary 8, so distributions can be tested).

The target's LM head is scaled up so its next-token distributions are far from uniform, and each
drafter gets its own random weights, so drafts are often rejected: both the accept path and the
residual path of rejection sampling are exercised.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.drafter import Drafter, DrafterConfig  # noqa: E402
from engine.model import Target, TargetConfig  # noqa: E402

VOCAB = 8
GAMMA = 4


def tiny_target(seed: int = 0, vocab: int = VOCAB) -> Target:
    torch.manual_seed(seed)
    cfg = TargetConfig(vocab=vocab, dim=32, layers=2, heads=2, hidden=64, max_len=128)
    model = Target(cfg)
    with torch.no_grad():
        model.head.weight.mul_(60.0)  # peaky distributions
    model.requires_grad_(False)
    return model.eval()


def tiny_drafter(target: Target, kind: str, seed: int = 1) -> Drafter:
    torch.manual_seed(seed)
    cfg = DrafterConfig(
        kind=kind,
        gamma=1 if kind == "mtp1" else GAMMA,
        dim=32,
        heads=2,
        hidden=64,
        feature_layers=(1, 2),
        window=8,
        markov_rank=8,
        vocab=target.cfg.vocab,
        max_len=128,
    )
    d = Drafter(cfg, target.embed, target.head, target.cfg.dim)
    with torch.no_grad():
        for p in d.parameters():
            if p.requires_grad and p.dim() > 1:
                p.normal_(0.0, 0.3)  # a drafter that disagrees with the target often
    d.requires_grad_(False)
    return d.eval()


@pytest.fixture(scope="module")
def target() -> Target:
    return tiny_target()
