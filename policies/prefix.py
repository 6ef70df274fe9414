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

Speed (the simulator calls these on every step; ``bench/policy_overhead.py`` measures them):

- candidates are laid out position-major (``j·R + r``), so one stable sort on ``-a`` alone
  yields the ``(-a, j, r)`` order; large pools sort in two stable passes — a 16-bit radix sort
  on quantised survival, then a stable (tim)sort of the nearly sorted exact values — which is
  exactly the order of one float sort at about half the cost;
- Algorithm 1 ranks nothing when it can prove the answer without the order: when the best
  candidate already lowers Θ (n* = 0, a saturated batch) or when Θ provably rises along any
  order (n* = N); otherwise it walks the ranked path in growing chunks and stops at the first
  drop. Every shortcut returns exactly what the full path returns (tested against a
  transcription of the paper's pseudocode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.errors import InputError

_RADIX_MIN = 1024  # candidates from which the two-pass sort beats one float sort (measured)
_QUANT = 65534.0  # radix keys 0..65534 (uint16)
_CHUNK = 256  # first chunk of the early-stop path; later chunks grow fourfold
_MARGIN = 1e-11  # relative slack of the "Θ rises throughout" certificate (≫ N·ulp, N ≤ 65536)


OBJECTIVES = ("step", "verify")  # what SPS(B) the DSpark family plans with (see Plan)


@dataclass(frozen=True, eq=False)
class Plan:
    """The ``SPS(B)`` a DSpark-family policy plans with under the ``step`` objective: whole
    decode steps per second at the step's KV size, ``1 / (draft(R) + verify(R, B) +
    context(KV) + fixed overhead)`` (``CostModel.plan_sps``) — the paper's Eq. 1 latency
    (T_draft + T_verify)/τ, vLLM's ``draft_cost[R] + verify_cost[tokens]``, SGLang's recorded
    wall-clock decode steps. The ``verify`` objective plans with the verify forward alone
    (``CostModel.sps_range``, what SGLang does with a verify-only SPS table)."""

    cost: Any  # profiles.CostModel
    kv_tokens: int | None  # attended KV tokens of this step (cost's context_basis); None: unknown
    chunk: int = 0  # prefill tokens fused into this step's verify forward (``prefill_fused``)

    def sps_range(self, r: int, start: int, stop: int) -> np.ndarray:
        """Whole-step SPS for B = start..stop-1; with a fused prefill chunk, the forward over
        B + chunk tokens (the chunk's context queries are not priced: a roofline has none)."""
        return self.cost.plan_sps(r, start + self.chunk, stop + self.chunk, self.kv_tokens)

    def sps(self, r: int, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        lo = int(tokens.min()) if tokens.size else 0
        table = self.sps_range(r, lo, int(tokens.max()) + 1 if tokens.size else 0)
        return table[tokens - lo]


def check_objective(name: str, objective: str) -> None:
    if objective not in OBJECTIVES:
        raise InputError(f"{name}: objective must be 'step' or 'verify', got {objective!r}")


def planner(ctx: Any, objective: str) -> Any:
    """What the policy's ``SPS(B)`` comes from this step: a :class:`Plan` of the whole decode
    step (``objective="step"``, for cost models with ``plan_sps``) or the cost model itself
    (``"verify"``, or duck-typed costs with only ``sps``)."""
    cost = ctx.cost
    if objective == "step" and hasattr(cost, "plan_sps"):
        chunk = ctx.prefill_tokens if getattr(cost, "prefill_fused", False) else 0
        return Plan(cost, ctx.kv_tokens, chunk)
    return cost


def marginal(ctx: Any, objective: str) -> float:
    """λ of the long-run marginal rule, or 0 where the step is planned by its own ratio.

    A step that co-batches a prefill chunk pays the chunk whatever the policy verifies, so
    putting it in the per-step ratio ``τ / (T + prefill)`` lowers the bar and over-verifies.
    Long-run tokens per second is maximised (Dinkelbach) by maximising ``τ − λ·T(B)`` per step
    with λ the long-run rate: admit a candidate while its survival exceeds ``λ · ΔT``. The
    prefill work is fixed per request whatever the policy does, so the rate to maximise is
    tokens per second of *decode* work: λ is the server's running tokens per decode second,
    prefill excluded (``ctx.rate``). With λ in tokens per busy second (prefill included) the
    bar is too low: on the CPU default the tuned ``dspark_lagged`` then verified 1 + ℓ = 3.85
    at N = 128 and lost 3.0% to ``fixed:k=2``; with the decode rate it verifies 3.0 and ties
    (``bench/tuning.py``). Steps without prefill keep Algorithm 1's own ratio (in steady
    state the two coincide)."""
    if objective != "step" or not ctx.prefill_tokens or ctx.rate <= 0:
        return 0.0
    return float(ctx.rate)


def check_bounds(name: str, min_verify_len: int, max_verify_len: int, eps: float) -> None:
    """Validate the DSpark-family hyperparameters (InputError naming the policy)."""
    if min_verify_len < 0 or max_verify_len < 0:
        raise InputError(f"{name}: min_verify_len and max_verify_len must be >= 0")
    if max_verify_len and min_verify_len > max_verify_len:
        raise InputError(f"{name}: min_verify_len exceeds max_verify_len")
    if not 0.0 <= eps < 1.0:
        raise InputError(f"{name}: survival_eps must lie in [0, 1)")


def survival_t(conf: np.ndarray) -> np.ndarray:
    """Survival laid out position-major, ``aT[j, r] = Π_{i≤j} c[r, i]``, shape ``[γ, R]``."""
    if conf.shape[0] <= 64:  # small batches: one accumulate call is cheapest
        return np.ascontiguousarray(np.multiply.accumulate(conf.T, axis=0))
    out = conf.T.copy()
    for j in range(1, out.shape[0]):  # long rows: γ-1 row products beat a strided accumulate
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


@dataclass(frozen=True, eq=False)
class Pool:
    """The candidates of one step, ranked: ``vals`` in the order ``(-a, j, r)``."""

    r: int  # requests in the batch
    flat: np.ndarray | None  # position-major flat index of each ranked candidate (None: all)
    order: np.ndarray  # ranking of the unranked candidates
    vals: np.ndarray  # survival of each ranked candidate, descending

    def rows(self, n: int) -> np.ndarray:
        """Request of each of the first ``n`` ranked candidates."""
        head = self.order[:n]
        pos = head if self.flat is None else self.flat[head]
        return pos % max(self.r, 1)


def pool(
    a_t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int, eps: float = 0.0
) -> tuple[np.ndarray | None, np.ndarray]:
    """Unranked candidates ``(flat index or None for "all", values)``: ``lo ≤ j < hi`` and
    ``a > eps``. ``a_t`` is position-major ``[γ, R]``."""
    gamma = a_t.shape[0]
    flat = a_t.reshape(-1)
    whole = isinstance(lo, int) and isinstance(hi, int) and lo == 0 and hi == gamma
    if whole and (flat.size == 0 or a_t[-1].min() > eps):  # survival is smallest in the last row
        return None, flat
    keep = a_t > eps
    if not whole:
        j = np.arange(gamma)[:, None]
        keep &= (j >= lo) & (j < hi)
    idx = np.flatnonzero(keep.reshape(-1))
    return idx, flat[idx]


def rank(a_t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int, eps: float = 0.0) -> Pool:
    """Rank the candidates of a step (see :func:`pool`)."""
    flat, vals = pool(a_t, lo, hi, eps)
    order = descending(vals)
    return Pool(a_t.shape[1], flat, order, vals[order])


def candidates(
    a_t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int, eps: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked candidates as ``(rows, values)`` (convenience for tests and small callers)."""
    ranked = rank(a_t, lo, hi, eps)
    return ranked.rows(ranked.vals.size), ranked.vals


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
    return _path(cost, r, b0, tau0, vals)[1]


def _path(
    cost: Any, r: int, b0: int, tau0: float, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    tau = np.empty(vals.size + 1)
    tau[0] = tau0
    tau[1:] = vals
    np.cumsum(tau, out=tau)  # left to right from τ0, as Algorithm 1 accumulates
    return tau, tau * sps_range(cost, r, b0, b0 + vals.size + 1)


def sps_range(cost: Any, r: int, start: int, stop: int) -> np.ndarray:
    """``SPS(B)`` for B = start..stop-1 (``CostModel.sps_range``, or ``sps`` for duck types)."""
    fast = getattr(cost, "sps_range", None)
    return fast(r, start, stop) if fast else cost.sps(r, np.arange(start, stop))


def first_drop(theta: np.ndarray) -> int:
    """Algorithm 1's stop: the largest n with Θ(0) < Θ(1) < ... < Θ(n)."""
    if theta.size < 2:
        return 0
    rising = theta[1:] > theta[:-1]
    n = int(rising.argmin())
    return theta.size - 1 if rising[n] else n


def rises_throughout(
    vals: np.ndarray, sps: np.ndarray, tau0: float, bottom: float | None = None
) -> bool:
    """True if Θ strictly rises at every step of the path over ``vals`` in *any* order, with
    ``sps[n] = SPS(B0 + n)`` for n = 0..N (``bottom``: ``vals.min()`` if already known).

    A step from τ at B to τ + a at B+1 rises iff ``a · SPS(B+1) > τ · (SPS(B) − SPS(B+1))``,
    i.e. ``a > τ · (q − 1)`` with ``q = SPS(B)/SPS(B+1)``. With τ ≤ τ_max and a ≥ a_min this
    holds everywhere if ``a_min > τ_max · max_B (q − 1)⁺`` — plus a slack far above what float
    arithmetic can lose (the path's prefix sums drift by at most N ulps of τ_max, one comparison
    by a few ulps of Θ), so the certificate is never wrong: when it says True, the exact float
    path rises throughout too.
    """
    tau_hi = (tau0 + float(vals.sum())) * (1.0 + _MARGIN)
    worst = max(float((sps[:-1] / sps[1:]).max()) - 1.0, 0.0)  # largest relative SPS drop
    low = float(vals.min()) if bottom is None else bottom
    return low > tau_hi * worst + 4.0 * _MARGIN * tau_hi * (1.0 + worst)


def greedy_stop(
    cost: Any,
    r: int,
    b0: int,
    tau0: float,
    vals: np.ndarray,
    top: float | None = None,
    bottom: float | None = None,
) -> tuple[int, np.ndarray | None]:
    """Algorithm 1's stop n* over the unranked candidate values, and the ranking it needed
    (None when n* = 0 or n* = N, where the admitted set does not depend on the order).

    Exactly :func:`first_drop` of :func:`throughput` over the ranked values, but cheaper:

    1. if the best candidate does not raise Θ, n* = 0 without ranking anything (a saturated
       batch, the usual case under load);
    2. if :func:`rises_throughout` certifies that Θ rises along any ordering, n* = N without
       ranking (cheap tokens, light load);
    3. otherwise rank and walk the path in growing chunks, stopping at the first drop.

    ``top`` and ``bottom`` are ``vals.max()`` and ``vals.min()`` when the caller knows them.
    """
    n_all = vals.size
    sps = sps_range(cost, r, b0, b0 + n_all + 1)  # a free slice for 1D tables
    if (tau0 + (vals.max() if top is None else top)) * sps[1] <= tau0 * sps[0]:
        return 0, None
    # Small pools: ranking is cheaper than the certificate.
    if n_all > _CHUNK and rises_throughout(vals, sps, tau0, bottom):
        return n_all, None
    order = descending(vals)
    ranked = vals[order]
    start, chunk, tau_start = 0, _CHUNK, tau0
    while True:
        stop = min(n_all, start + chunk)
        tau = np.empty(stop - start + 1)
        tau[0] = tau_start
        tau[1:] = ranked[start:stop]
        np.cumsum(tau, out=tau)  # left to right from τ0, exactly as throughput() sums
        n = first_drop(tau * sps[start : stop + 1])
        if n < stop - start or stop == n_all:
            return start + n, order
        start, chunk, tau_start = stop, chunk * 4, float(tau[-1])


def best_count(
    cost: Any, r: int, b0: int, tau0: float, vals: np.ndarray
) -> tuple[int, np.ndarray | None]:
    """The global argmax n of Θ over the ranked path (first maximum), and the ranking it
    needed (None when :func:`rises_throughout` proves the answer is N without ranking)."""
    sps = sps_range(cost, r, b0, b0 + vals.size + 1)
    if vals.size > _CHUNK and rises_throughout(vals, sps, tau0):
        return vals.size, None
    order = descending(vals)
    tau = np.empty(vals.size + 1)
    tau[0] = tau0
    tau[1:] = vals[order]
    np.cumsum(tau, out=tau)
    return int((tau * sps).argmax()), order


def lengths(base: np.ndarray | int, rows: np.ndarray, r: int) -> np.ndarray:
    """Verify lengths ``int64 [R]``: the base lengths plus one per admitted candidate row."""
    out = np.bincount(rows, minlength=r) if rows.size else np.zeros(r, dtype=np.int64)
    out = out + base
    return out.astype(np.int64, copy=False)


def marginal_count(
    plan: Any, r: int, b0: int, vals: np.ndarray, lam: float, early_stop: bool
) -> tuple[int, np.ndarray | None]:
    """Admissions under the long-run marginal rule (see :func:`marginal`): along the ranked
    candidates, candidate i gains ``a_i − λ · (T(B0+i+1) − T(B0+i))``; with ``early_stop`` the
    count is the first non-positive gain (Algorithm 1's stop, lossless), else the argmax of the
    cumulative gain (the capacity of the lagged production variant)."""
    order = descending(vals)
    seconds = 1.0 / sps_range(plan, r, b0, b0 + vals.size + 1)
    gain = vals[order] - lam * np.diff(seconds)
    if early_stop:
        bad = np.flatnonzero(gain <= 0.0)
        return (int(bad[0]) if bad.size else vals.size), order
    path = np.concatenate([[0.0], np.cumsum(gain)])
    return int(path.argmax()), order
