"""numpy's per-request random streams, compiled (numba): the same numbers without a Generator.

The profiled backend (``simulator/backend.py``) gives each request a generator
``Generator(PCG64(SeedSequence(seed, spawn_key=(tag, request id))))`` and draws its acceptance
rows from it in blocks. Building that generator costs tens of microseconds and every block is a
few numpy calls, which at saturation is a large share of a compiled run; this module reproduces
numpy's algorithms bit for bit on a four-word state per request, so the compiled step path can
seed and draw inside compiled code:

- ``SeedSequence``'s entropy pool and ``generate_state(4, uint64)`` (numpy/random/bit_generator.pyx:
  ``hashmix``, ``mix``, ``mix_entropy``; the run entropy padded to the pool size before the
  spawn key, as ``get_assembled_entropy`` does);
- ``PCG64``'s seeding and ``next64`` (numpy/random/src/pcg64: the 128-bit LCG with the default
  multiplier, the XSL-RR output), on two 64-bit words (numba has no 128-bit integers);
- ``Generator.random`` (``next_double``: the top 53 bits) and ``Generator.standard_normal``
  (the 256-layer ziggurat of numpy/random/src/distributions, with numpy's tables, which numba
  ships for its own ``Generator`` support in a private module, ``numba.np.random._constants``:
  if a numba release moved them, importing this module fails, the server falls back to the
  reference path as without numba, and tests/simulator/test_streams.py fails).

A state is ``uint64[4]``: the LCG state's high and low words, then the increment's.
tests/simulator/test_streams.py compares every function with numpy's on many seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numba.np.random._constants import (
    fi_double,
    ki_double,
    wi_double,
    ziggurat_nor_inv_r,
    ziggurat_nor_r,
)

from policies import jitcache  # noqa: F401 (first: it stamps this file with the step path's)

_U = np.uint64
_M32 = _U(0xFFFFFFFF)
_MUL_HI, _MUL_LO = _U(0x2360ED051FC65DA4), _U(0x4385DF649FCCF645)  # PCG_DEFAULT_MULTIPLIER_128
_INIT_A, _MULT_A = _U(0x43B0D7E5), _U(0x931E8875)
_INIT_B, _MULT_B = _U(0x8B51F9DD), _U(0x58F38DED)
_MIX_L, _MIX_R = _U(0xCA01F9DD), _U(0x4973F715)
_POOL = 4  # SeedSequence's default pool size (32-bit words)
_TO_DOUBLE = 1.0 / 9007199254740992.0
_KI, _WI, _FI = (np.asarray(t) for t in (ki_double, wi_double, fi_double))
_ZIG_R, _ZIG_INV_R = float(ziggurat_nor_r), float(ziggurat_nor_inv_r)


def run_entropy(seed: int) -> np.ndarray:
    """``SeedSequence(seed, spawn_key=...)``'s run entropy: ``seed`` as 32-bit words (least
    significant first), padded with zeros to the pool size (it is followed by a spawn key)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    words = []
    while True:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
        if not seed:
            break
    words += [0] * (_POOL - len(words))
    return np.asarray(words, dtype=np.uint64)


@njit(cache=True)
def _hashmix(value, hc):
    value = (value ^ hc[0]) & _M32
    hc[0] = (hc[0] * _MULT_A) & _M32
    value = (value * hc[0]) & _M32
    return value ^ (value >> _U(16))


@njit(cache=True)
def _mix(x, y):
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> _U(16))


@njit(cache=True)
def _mulhi(a, b):
    """The high 64 bits of the 128-bit product of two uint64."""
    a_lo, a_hi, b_lo, b_hi = a & _M32, a >> _U(32), b & _M32, b >> _U(32)
    p0, p1, p2 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo
    mid = (p0 >> _U(32)) + (p1 & _M32) + (p2 & _M32)
    return a_hi * b_hi + (p1 >> _U(32)) + (p2 >> _U(32)) + (mid >> _U(32))


@njit(cache=True)
def _step(st):
    """The LCG step: state = state × multiplier + increment (mod 2^128)."""
    hi, lo = st[0], st[1]
    new_hi = _mulhi(lo, _MUL_LO) + hi * _MUL_LO + lo * _MUL_HI
    new_lo = lo * _MUL_LO
    low = new_lo + st[3]
    st[0] = new_hi + st[2] + (_U(1) if low < new_lo else _U(0))
    st[1] = low


@njit(cache=True)
def seed_state(entropy, tag, key, st):
    """``PCG64(SeedSequence(seed, spawn_key=(tag, key)))``'s state into ``st`` [4]
    (``entropy``: :func:`run_entropy` of the seed; ``tag``, ``key`` >= 0)."""
    # the entropy words: the run's, then the spawn key's (32-bit words, low first; 0 is one)
    words = np.empty(entropy.size + 6, np.uint64)
    words[: entropy.size] = entropy
    n = entropy.size
    for value in (tag, key):
        v = _U(value)
        while True:
            words[n] = v & _M32
            n += 1
            v >>= _U(32)
            if v == _U(0):
                break
    n_key = n
    pool = np.empty(_POOL, np.uint64)
    hc = np.empty(1, np.uint64)
    hc[0] = _INIT_A
    for i in range(_POOL):
        pool[i] = _hashmix(words[i] if i < n_key else _U(0), hc)
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hc))
    for i_src in range(_POOL, n_key):
        for i_dst in range(_POOL):
            pool[i_dst] = _mix(pool[i_dst], _hashmix(words[i_src], hc))
    out = np.empty(8, np.uint64)  # generate_state(4, uint64) as 8 uint32 words
    h = _INIT_B
    for i in range(8):
        v = (pool[i % _POOL] ^ h) & _M32
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        out[i] = v ^ (v >> _U(16))
    s0, s1 = out[0] | (out[1] << _U(32)), out[2] | (out[3] << _U(32))  # little-endian pairs
    i0, i1 = out[4] | (out[5] << _U(32)), out[6] | (out[7] << _U(32))
    st[0] = st[1] = _U(0)  # pcg64_set_seed: inc = (initseq << 1) | 1, step, += initstate, step
    st[2], st[3] = (i0 << _U(1)) | (i1 >> _U(63)), (i1 << _U(1)) | _U(1)
    _step(st)
    low = st[1] + s1
    st[0] = st[0] + s0 + (_U(1) if low < st[1] else _U(0))
    st[1] = low
    _step(st)


@njit(cache=True)
def next_uint64(st):
    _step(st)
    hi, lo = st[0], st[1]
    x, rot = hi ^ lo, hi >> _U(58)
    return (x >> rot) | (x << ((_U(64) - rot) & _U(63)))


@njit(cache=True)
def next_double(st):
    """``Generator.random()``."""
    return float(next_uint64(st) >> _U(11)) * _TO_DOUBLE


@njit(cache=True)
def standard_normal(st):
    """``Generator.standard_normal()`` (numpy's ziggurat)."""
    while True:
        r = next_uint64(st)
        idx = np.intp(r & _U(0xFF))
        r >>= _U(8)
        rabs = (r >> _U(1)) & _U(0x000FFFFFFFFFFFFF)
        x = float(rabs) * _WI[idx]
        if r & _U(1):
            x = -x
        if rabs < _KI[idx]:
            return x
        if idx == 0:
            while True:
                xx = -_ZIG_INV_R * np.log1p(-next_double(st))
                yy = -np.log1p(-next_double(st))
                if yy + yy > xx * xx:
                    return -(_ZIG_R + xx) if (rabs >> _U(8)) & _U(1) else _ZIG_R + xx
        elif (_FI[idx - 1] - _FI[idx]) * next_double(st) + _FI[idx] < np.exp(-0.5 * x * x):
            return x


# -- ParametricAcceptance's rows, drawn from these streams (simulator/compiled.py) -----------------
class Rows(NamedTuple):
    """Each slot's stream and latent, and where its drawn rows end (the compiled path's)."""

    state: np.ndarray  # [slot, 4] uint64: the request's PCG64 state (see the module docstring)
    mu: np.ndarray  # [slot, γ_model] the request's domain offsets
    delta: np.ndarray  # [slot] the request's latent offset
    due: np.ndarray  # [slot] int64: the step its drawn rows run out at (the backend's _due_at)
    logit: np.ndarray  # [block, γ] scratch
    token_sigma: float
    conf_sigma: float


@njit(cache=True)
def fill(rows, slot, n, start, conf_ring, acc_ring):
    """``ParametricAcceptance.draw(latent, n, rng)`` from the slot's stream, into ring columns
    ``start, start+1, ...`` (confidences of the first γ positions, A capped at γ): the noise
    ``[n, γ_model, (η, ε)]`` first, then the uniforms ``[n, γ_model]``, as ``draw`` asks numpy
    for them, with its float operations (``expit(x) = 1 / (1 + exp(-x))``)."""
    st, mu, delta = rows.state[slot], rows.mu[slot], rows.delta[slot]
    width, gamma, model = conf_ring.shape[1], conf_ring.shape[2], mu.size
    ts, cs, logit = rows.token_sigma, rows.conf_sigma, rows.logit
    for s in range(n):
        col = (start + s) % width
        for k in range(model):
            eta = standard_normal(st)
            eps = standard_normal(st)
            if k < gamma:
                logit_q = mu[k] + delta + ts * eta
                logit[s, k] = logit_q
                conf_ring[slot, col, k] = 1.0 / (1.0 + np.exp(-(logit_q + cs * eps)))
    for s in range(n):
        lead = 0
        for k in range(model):
            u = next_double(st)
            if lead == k and k < gamma and u < 1.0 / (1.0 + np.exp(-logit[s, k])):
                lead += 1
        acc_ring[slot, (start + s) % width] = lead
    rows.due[slot] = start + n


@njit(cache=True)
def join(rows, entropy, tag, key, request_sigma, slot, n, start, conf_ring, acc_ring):
    """A request joins at ``slot``: seed its stream (``SeedSequence(seed, spawn_key=(tag,
    key))``), draw its latent offset (``rng.normal(0, request_sigma)``, none when 0, as
    ``ParametricAcceptance.start``) and its first ``n`` rows from step ``start`` (``rows``: a
    :class:`Rows` as a plain tuple, which numba unboxes faster)."""
    rows = Rows(*rows)
    seed_state(entropy, tag, key, rows.state[slot])
    rows.delta[slot] = (
        0.0 + request_sigma * standard_normal(rows.state[slot]) if request_sigma else 0.0
    )
    fill(rows, slot, n, start, conf_ring, acc_ring)
