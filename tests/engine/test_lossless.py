"""Speculative sampling through the whole engine reproduces the target's distribution.

For every drafter kind: 64 copies of one prompt decode in one batch with verify lengths
ℓ = r mod (γ+1) (variable lengths in one forward), two speculative steps each, repeated with
fresh slots. The joint distribution of the first three generated tokens is compared with the
exact target probabilities (vocabulary 8: 512 outcomes, those expected < 5 times pooled) by a
chi-square test at α = 0.001. Seeds are fixed, so the test is deterministic in CI.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from engine.engine import Engine  # noqa: E402
from tests.engine.conftest import VOCAB, tiny_drafter  # noqa: E402

ALPHA = 1e-3
PROMPT = [3, 1, 4, 1, 5]
BATCH, ROUNDS = 64, 50  # 3 200 samples per drafter


def exact_joint(target) -> np.ndarray:
    """P(t1, t2, t3 | prompt) as ``[V**3]`` from plain forwards."""
    seqs = torch.tensor([PROMPT + list(c) for c in itertools.product(range(VOCAB), repeat=2)])
    logits, _ = target.forward_seq(seqs)
    p = torch.softmax(logits.double(), dim=-1)  # [V*V, S, V]
    n = len(PROMPT)
    p1 = p[0, n - 1]  # [V]
    p2 = p[::VOCAB, n]  # rows with t2 = 0: [V(t1), V(t2)]
    p3 = p[:, n + 1].view(VOCAB, VOCAB, VOCAB)  # [t1, t2, t3]
    return (p1[:, None, None] * p2[:, :, None] * p3).flatten().numpy()


def sample(target, drafter, seed: int) -> np.ndarray:
    eng = Engine(target, drafter, slots=BATCH, temperature=1.0)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(ROUNDS):
        slots = eng.add_many([PROMPT] * BATCH, g)
        for _ in range(2):
            if drafter is None:
                eng.verify(slots, None, None, g)
            else:
                d = eng.draft(slots, g)
                lengths = [r % (drafter.cfg.gamma + 1) for r in range(BATCH)]
                eng.verify(slots, d, lengths, g)
        for s in slots:
            t = eng.remove(s)
            out.append((t[0] * VOCAB + t[1]) * VOCAB + t[2])
    return np.array(out)


def pvalue(samples: np.ndarray, p: np.ndarray) -> float:
    counts = np.bincount(samples, minlength=len(p)).astype(float)
    big = p * len(samples) >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(p[big], p[~big].sum()) * len(samples)
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


@pytest.mark.parametrize("kind", ["none", "dspark", "dflash", "ar", "mtp1"])
def test_engine_samples_follow_target(target, kind):
    drafter = None if kind == "none" else tiny_drafter(target, kind)
    p = exact_joint(target)
    samples = sample(target, drafter, seed=11)
    assert pvalue(samples, p) > ALPHA


def test_test_has_power(target):
    """A biased sampler (drafts always accepted) is rejected by the same test."""
    drafter = tiny_drafter(target, "dflash")
    eng = Engine(target, drafter, slots=BATCH, temperature=1.0)
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(10):
        slots = eng.add_many([PROMPT] * BATCH, g)
        d = eng.draft(slots, g)
        for s in slots:
            t = eng.slots[s].generated[:1] + d.tokens[slots.index(s), :2].tolist()
            out.append((t[0] * VOCAB + t[1]) * VOCAB + t[2])
            eng.remove(s)
    assert pvalue(np.array(out), exact_joint(target)) < ALPHA
