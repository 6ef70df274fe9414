"""simulator/streams.py draws numpy's numbers: SeedSequence -> PCG64 -> Generator, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import streams


def _numpy(seed: int, tag: int, key: int) -> np.random.Generator:
    seq = np.random.SeedSequence(seed, spawn_key=(tag, key))
    return np.random.Generator(np.random.PCG64(seq))


def _ours(seed: int, tag: int, key: int) -> np.ndarray:
    st = np.empty(4, np.uint64)
    streams.seed_state(streams.run_entropy(seed), tag, key, st)
    return st


@pytest.mark.parametrize("seed", [0, 11, 2**32 - 1, 2**32, 2**40 + 7, 2**127 + 3])
@pytest.mark.parametrize("key", [0, 1, 19_365, 2**32 - 1, 2**33 + 5])
def test_seeded_state_is_numpys(seed, key):
    for tag in (1, 2):
        st = _numpy(seed, tag, key).bit_generator.state["state"]
        mask = (1 << 64) - 1
        want = [st["state"] >> 64, st["state"] & mask, st["inc"] >> 64, st["inc"] & mask]
        assert [int(w) for w in _ours(seed, tag, key)] == want


@pytest.mark.parametrize("seed, key", [(0, 0), (11, 7), (2**40 + 7, 123_456)])
def test_draws_are_numpys(seed, key):
    """Normals (the ziggurat, its tail included), uniforms and a scaled normal, interleaved."""
    rng, st = _numpy(seed, 1, key), _ours(seed, 1, key)
    normals = rng.standard_normal(30_000)
    assert (np.abs(normals) > streams._ZIG_R).any()  # the tail branch ran
    np.testing.assert_array_equal([streams.standard_normal(st) for _ in normals], normals)
    uniforms = rng.random(1000)
    np.testing.assert_array_equal([streams.next_double(st) for _ in uniforms], uniforms)
    assert 0.0 + 0.6 * streams.standard_normal(st) == rng.normal(0.0, 0.6)
    assert streams.next_uint64(st) == rng.bit_generator.random_raw()
