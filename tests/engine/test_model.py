"""The cached, flattened forward equals the plain sequence forward; rollback leaves no trace."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.cache import Layout  # noqa: E402
from tests.engine.conftest import tiny_target  # noqa: E402


def _cached(model, seqs, chunks):
    """Feed each sequence in ``chunks`` (lists of query counts per step), all slots batched."""
    cache = model.new_cache(len(seqs) + 1)
    slots = [len(seqs) - i for i in range(len(seqs))]  # non-contiguous, reversed slots
    outs = [[] for _ in seqs]
    for step in range(len(chunks[0])):
        q = [c[step] for c in chunks]
        base = [cache.lengths[s] for s in slots]
        toks = torch.cat([seqs[i][base[i] : base[i] + q[i]] for i in range(len(seqs))])
        lay = Layout.build(slots, base, q, "cpu")
        logits, _ = model(toks, lay, cache)
        off = 0
        for i, s in enumerate(slots):
            outs[i].append(logits[off : off + q[i]])
            off += q[i]
            cache.lengths[s] += q[i]
    return [torch.cat(o) for o in outs]


def test_flattened_variable_lengths_match_sequence_forward():
    model = tiny_target()
    torch.manual_seed(3)
    seqs = [torch.randint(0, 8, (20,)) for _ in range(3)]
    chunks = [[5, 1, 7, 3, 4], [9, 4, 1, 1, 5], [1, 2, 3, 4, 10]]
    got = _cached(model, seqs, chunks)
    for seq, out in zip(seqs, got, strict=True):
        ref, _ = model.forward_seq(seq[None])
        torch.testing.assert_close(out, ref[0], rtol=1e-4, atol=1e-4)


def test_single_slot_paths_match():
    model = tiny_target()
    seq = torch.randint(0, 8, (30,), generator=torch.Generator().manual_seed(1))
    (out,) = _cached(model, [seq], [[12, 1, 1, 8, 8]])
    ref, _ = model.forward_seq(seq[None])
    torch.testing.assert_close(out, ref[0], rtol=1e-4, atol=1e-4)


def test_rollback_leaves_no_trace():
    """Write a junk suffix, roll back by resetting the length, continue: same as never written."""
    model = tiny_target()
    seq = torch.randint(0, 8, (16,), generator=torch.Generator().manual_seed(2))
    junk = torch.randint(0, 8, (6,), generator=torch.Generator().manual_seed(9))
    cache = model.new_cache(2)
    model(seq[:10], Layout.build([1], [0], [10], "cpu"), cache)
    model(junk, Layout.build([1], [10], [6], "cpu"), cache)  # rejected: length stays 10
    out, _ = model(seq[10:], Layout.build([1], [10], [6], "cpu"), cache)
    ref, _ = model.forward_seq(seq[None])
    torch.testing.assert_close(out, ref[0, 10:], rtol=1e-4, atol=1e-4)


def test_features_are_requested_layers():
    model = tiny_target()
    seq = torch.randint(0, 8, (1, 12), generator=torch.Generator().manual_seed(4))
    _, f1 = model.forward_seq(seq, (1,))
    _, f12 = model.forward_seq(seq, (1, 2))
    assert f1.shape == (1, 12, 32) and f12.shape == (1, 12, 64)
    torch.testing.assert_close(f12[..., :32], f1)
    cache = model.new_cache(1)
    _, fc = model(seq[0], Layout.build([0], [0], [12], "cpu"), cache, (1, 2))
    torch.testing.assert_close(fc, f12[0], rtol=1e-4, atol=1e-4)
