"""Shared, vectorised machinery of the survival-ranked policies (DSpark Algorithm 1 and kin).

Every survival-ranked policy works on the same objects:

- the survival ``a[r, j] = Π_{i≤j} c[r, i]`` (j counted from 0 here, draft j+1 in the paper),
  which is non-increasing along j, so ranking all candidates ``(r, j)`` by survival admits
  prefixes;
- a *window* of candidate positions per request, ``lo[r] ≤ j < hi[r]``: positions below ``lo``
  are admitted unconditionally (``min_verify_len``), positions at or above ``hi`` never
  (``max_verify_len``, the valid mask);
- the *ranking*: candidates in descending survival, ties broken by position and then by request,
  ``(-a, j, r)``. The tie-break depends on no value, so a candidate's rank is decided by the
  candidates ranked before it alone; in particular ``(r, j+1)`` never ranks before ``(r, j)``,
  even when ``c[r, j+1] = 1``. This is what keeps every admission rule here non-anticipating;
- the *throughput path* of Algorithm 1: admitting the first n ranked candidates gives
  ``Θ(n) = τ(n) · SPS(B(n))`` with ``τ(n) = τ0 + Σ_{i<n} a_i`` and ``B(n) = B0 + n``.

Speed: the ranking is one stable sort of the flattened candidates. Candidates are laid out
position-major (``j·R + r``) so a stable sort on ``-a`` alone yields the ``(-a, j, r)`` order.
Large inputs are sorted in two stable passes — a 16-bit radix sort on quantised survival, then
a stable (tim)sort of the nearly sorted exact values — which gives exactly the same order as one
float sort at about half the cost (see ``bench/policy_overhead.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_RADIX_MIN = 256  # candidates from which the two-pass sort beats one float sort
_QUANT = 65534.0  # radix keys 0..65534 (uint16)


def survival_t(conf: np.ndarray) -> np.ndarray:
    """Survival laid out position-major, ``aT[j, r] = Π_{i≤j} c[r, i]``, shape ``[γ, R]``."""
    out = conf.T.copy()
    if out.shape[0] > 8:
        return np.multiply.accumulate(out, axis=0, out=out)
    for j in range(1, out.shape[0]):  # γ small: a few row products beat accumulate
        np.multiply(out[j], out[j - 1], out=out[j])
    return out


def window(
    r: int,
    gamma: int,
    valid: np.ndarray | None,
    min_len: int = 0,
    max_len: int = 0,
) -> tuple[np.ndarray | int, np.ndarray | int]:
    """Candidate window ``lo[r] ≤ j < hi[r]`` per request, as arrays or (common case) ints.

    ``hi`` is the number of leading valid drafts capped by ``max_len`` (0 = γ); ``lo`` is
    ``min_len`` capped by ``hi`` (the drafts verified unconditionally).
    """
    top = gamma if max_len <= 0 else min(max_len, gamma)
    if valid is None:
        return min(min_len, top), top
    hi = np.minimum(np.cumprod(valid, axis=1).sum(axis=1), top)
    return np.minimum(hi, min_len), hi


def candidates(
    a_t: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    eps: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked candidates: ``(rows, values)`` of every ``(r, j)`` with ``lo ≤ j < hi`` and
    ``a > eps``, in the order ``(-a, j, r)``. ``a_t`` is position-major ``[γ, R]``."""
    r = a_t.shape[1]
    flat = a_t.reshape(-1)
    idx = np.flatnonzero(_keep(a_t, lo, hi, eps))
    vals = flat[idx]
    order = descending(vals)
    return idx[order] % max(r, 1), vals[order]


def ranked_values(
    a_t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int, eps: float = 0.0
) -> np.ndarray:
    """The candidates' survival values alone, descending (what a capacity computation needs)."""
    vals = np.sort(a_t.reshape(-1)[_keep(a_t, lo, hi, eps)], kind="stable")
    return vals[::-1]


def _keep(a_t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int, eps: float) -> np.ndarray:
    """Flat position-major mask of the candidates: inside the window and ``a > eps``."""
    gamma = a_t.shape[0]
    keep = a_t > eps
    if not (isinstance(lo, int) and isinstance(hi, int) and lo == 0 and hi == gamma):
        j = np.arange(gamma)[:, None]
        keep &= (j >= lo) & (j < hi)
    return keep.reshape(-1)


def descending(vals: np.ndarray) -> np.ndarray:
    """Stable descending argsort of values in [0, 1] (equal values keep their input order)."""
    if vals.size < _RADIX_MIN:
        return np.argsort(-vals, kind="stable")
    coarse = np.argsort(((1.0 - vals) * _QUANT).astype(np.uint16), kind="stable")
    fine = np.argsort(-vals[coarse], kind="stable")
    return coarse[fine]


def forced(a_t: np.ndarray, lo: np.ndarray | int, r: int) -> tuple[np.ndarray | int, int, float]:
    """What the unconditional window start admits: ``(lengths, B0, τ0)`` with the anchors."""
    if isinstance(lo, int):
        tau0 = float(r) + float(a_t[:lo].sum()) if lo else float(r)
        return lo, r + lo * r, tau0
    j = np.arange(a_t.shape[0])[:, None]
    tau0 = float(r) + float(a_t[j < lo].sum())
    return lo, r + int(lo.sum()), tau0


def throughput(cost: Any, r: int, b0: int, tau0: float, vals: np.ndarray) -> np.ndarray:
    """Θ(n) for n = 0..N along the ranked candidates: ``(τ0 + Σ_{i<n} a_i) · SPS(B0 + n)``."""
    tau = np.empty(vals.size + 1)
    tau[0] = tau0
    tau[1:] = vals
    np.cumsum(tau, out=tau)  # left to right from τ0, as Algorithm 1 accumulates
    return tau * cost.sps(r, np.arange(b0, b0 + vals.size + 1))


def first_drop(theta: np.ndarray) -> int:
    """Algorithm 1's stop: the largest n with Θ(0) < Θ(1) < ... < Θ(n)."""
    if theta.size < 2:
        return 0
    rising = theta[1:] > theta[:-1]
    n = int(rising.argmin())
    return theta.size - 1 if rising[n] else n


def lengths(base: np.ndarray | int, rows: np.ndarray, n: int, r: int) -> np.ndarray:
    """Verify lengths ``int64 [R]``: the base lengths plus the first ``n`` ranked candidates."""
    out = np.bincount(rows[:n], minlength=r) if n else np.zeros(r, dtype=np.int64)
    out = out + base
    return out.astype(np.int64, copy=False)
