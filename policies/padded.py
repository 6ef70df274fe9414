"""Planning along the ranked path on engines whose step cost depends on the longest request.

Some engines pad every request's verify tokens (and its attention) to the longest request of the
batch: the tiny CPU engine's batched forward does, and its profile says so with a padding term
(``CostModel.padding_s`` per padded query token, ``ragged_s`` per ragged step) and a context term
that grows with the longest request's queries (``context_queries``). There a step's cost is not a
function of the verify batch size B alone: ``CostModel.step_seconds(R, B, longest=...)`` is what
the simulator charges, and ``1 / decode_seconds(B)`` (the SPS(B) of ``prefix.Plan``) prices
every request at the mean B/R queries, with no padding. Measured on the CPU default (closed loop,
N = 32, ``bench/tuning.py``): a DSpark step was planned at 114 ms and charged 143 ms, 26 ms of it
the context at the longest request's queries and 4 ms padding, so the plan verified drafts whose
cost it never saw, and lost 15% to the static ``fixed:k=2``, which is never ragged.

Along Algorithm 1's ranked path the longest request is known at every n before any value past it
is read: admitting candidate ``(r, j)`` makes r verify at least j + 1 drafts, so after the first
n candidates the longest request verifies ``max(lo, max_{i<n} j_i + 1)`` drafts. The true cost
of the path is therefore ``T(n) = step_seconds(R, B0 + n, longest = 1 + that)``. Stopping at
its first non-increase stays non-anticipating, but it is myopic there: the first draft of a new
level pays the whole batch's padding and never raises Θ alone, so ``dspark`` runs Algorithm 1
level by level instead (:func:`level_lengths`; ``global_sync`` keeps the global argmax of the
ranked path, its lossy negative control). The capacity pass of ``dspark_lagged`` takes the
global argmax along its stale path and also returns the longest request there, which caps the
current allocation (a cap fixed by stale confidences, like ``max_verify_len``: lossless), so the
step it runs is the step it priced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from profiles.cost import CostModel


def prices_longest(cost: Any) -> bool:
    """True when ``cost`` charges a step by its longest request (padding, ragged steps or a
    context term that depends on the longest request's queries). Only a ``CostModel`` does:
    wrappers that plan with an engine's own table (``profiles.sglang.PlannedCost``) plan as
    that engine does, by B alone."""
    if not isinstance(cost, CostModel):
        return False
    context = getattr(cost, "context", None)
    has_context = context is not None and getattr(context, "y", (0.0,)) != (0.0,)
    queries = bool(getattr(cost, "context_queries", 0.0)) and has_context
    return bool(getattr(cost, "padding_s", 0.0) or getattr(cost, "ragged_s", 0.0) or queries)


def path_seconds(
    cost: Any, r: int, b0: int, longest: np.ndarray, kv_tokens: int | None, chunk: int = 0
) -> np.ndarray:
    """Decode-step seconds for B = b0 + i with ``longest[i]`` verify tokens in the longest
    request, priced as ``CostModel.step_seconds`` prices the step (draft + verify + context at
    the longest request's queries + padding to it; ``chunk`` prefill tokens fused into the
    verify forward); float array like ``longest``."""
    longest = np.asarray(longest, dtype=np.int64)
    b = b0 + np.arange(longest.size)
    t = cost.decode_seconds(r, b0 + chunk, b0 + chunk + longest.size, None)  # draft + verify
    context = getattr(cost, "context", None)
    if kv_tokens is not None and context is not None and context.y != (0.0,):
        t = t + cost.context_seconds(kv_tokens, r, longest.astype(float))
    pad = np.maximum(r * longest - b, 0)  # padded query tokens: R · longest − B
    t = t + cost.padding_s * pad + cost.ragged_s * (pad > 0)
    return np.maximum(t, 1e-12)


def ranked_longest(order: np.ndarray, flat: np.ndarray | None, r: int, lo_max: int) -> np.ndarray:
    """Verify tokens of the longest request after the first n = 0..N ranked candidates are
    admitted (``order`` ranks the pool, ``flat`` its position-major indices, None: all),
    ``lo_max`` the most drafts any request verifies unconditionally; int64 ``[N + 1]``."""
    pos = order if flat is None else flat[order]
    drafts = pos // max(r, 1) + 1  # draft count that admitting each candidate implies
    out = np.empty(order.size + 1, dtype=np.int64)
    out[0] = lo_max
    out[1:] = np.maximum.accumulate(np.maximum(drafts, lo_max)) if drafts.size else lo_max
    return out + 1


def ranked_count(
    plan: Any,
    r: int,
    b0: int,
    tau0: float,
    vals: np.ndarray,
    flat: np.ndarray | None,
    lo_max: int,
    *,
    early_stop: bool,
    lam: float = 0.0,
) -> tuple[int, np.ndarray, int]:
    """Admitted count n, the ranking, and the longest request's verify tokens at n, along the
    ranked candidates priced with the true step cost (``plan``: a ``prefix.Plan``).

    ``early_stop``: Algorithm 1's first non-increase (lossless with current confidences); else
    the global argmax (the capacity of the lagged variant). ``lam`` > 0: the long-run marginal
    rule ``τ(n) − λ·T(n)`` instead of the ratio ``τ(n) / T(n)`` (a co-batched prefill chunk)."""
    from policies import prefix

    order = prefix.descending(vals)
    longest = ranked_longest(order, flat, r, lo_max)
    seconds = path_seconds(plan.cost, r, b0, longest, plan.kv_tokens, plan.chunk)  # [N + 1]
    tau = np.empty(vals.size + 1)
    tau[0] = tau0
    tau[1:] = vals[order]
    np.cumsum(tau, out=tau)
    score = tau - lam * seconds if lam else tau / seconds
    n = prefix.first_drop(score) if early_stop else int(score.argmax())
    return n, order, int(longest[n]), float(score[n])


def capped_count(
    plan: Any,
    r: int,
    h_t: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    eps: float,
    lam: float = 0.0,
) -> tuple[int, int]:
    """Capacity K and per-request cap (drafts) from survival ``h_t`` ``[γ, R]``: for every cap
    L from the forced drafts to γ, the global argmax along the ranked candidates with j < L,
    priced with the true step cost; the best (K, L) over all caps.

    The survival ranking alone interleaves deep drafts of confident requests with the first
    drafts of the others, so on an engine that pads to the longest request it never visits an
    even allocation; a cap does. Fed stale confidences only (``dspark_lagged``), the choice
    of (K, L) reads no current value: the current top-K under the cap L is lossless."""
    from policies import prefix

    gamma = h_t.shape[0]
    top = lo if isinstance(lo, int) else int(lo.max())
    _, b0, tau0 = prefix.forced(h_t, lo, r)
    best = (-np.inf, 0, 0)
    for cap in range(max(top, 1), gamma + 1):
        flat, vals = prefix.pool(h_t, lo, np.minimum(hi, cap), eps)
        if not vals.size:
            continue
        k, _, longest, score = ranked_count(
            plan, r, b0, tau0, vals, flat, top, early_stop=False, lam=lam
        )
        if score > best[0]:
            best = (score, k, longest - 1)
        if not (np.asarray(hi) > cap).any():
            break
    return best[1], best[2]


def fill_unknown(h_t: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Stale survival ``[γ, R]`` with each unknown row (no confidences ``lag`` steps ago) set to
    the mean of the known rows per position (1 when none is known), in place.

    SGLang counts such a row as survival 1 at every position, which on a paged engine adds γ
    cheap candidates to the capacity; on an engine that pads to the longest request those γ
    sure candidates make the stale path's longest request γ + 1 at once, and the cap lets the
    current allocation pad the whole batch to it. The mean of the batch's known rows is as
    stale as the rest of the path (no current value is read), so the rule stays lossless."""
    if known.all():
        return h_t
    h_t[:, ~known] = h_t[:, known].mean(axis=1, keepdims=True) if known.any() else 1.0
    return h_t


def level_lengths(
    plan: Any,
    r: int,
    a_t: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    eps: float = 0.0,
    lam: float = 0.0,
) -> np.ndarray:
    """``dspark``'s verify lengths ``int64 [R]`` on an engine that pads to the longest request:
    Algorithm 1 level by level. Level j holds the candidates ``(r, j)`` of the requests that
    verify exactly j drafts so far, ranked by survival (ties by request); the level's best
    prefix (the argmax of Θ over it, priced with the true step cost at the longest request it
    makes) is admitted if it raises Θ, and the next level is tried; otherwise the plan stops.

    The first candidate of a new level pays the whole batch's padding at once and is repaid
    only by the rest of the level, so the candidate-by-candidate early stop never opens a level
    there (measured: 1 + ℓ = 1.0 at N = 16 on the CPU default). Within a level, whether
    ``(r, j)`` is admitted reads survivals at position j (its own, and other requests', which
    do not depend on r's drafts) and earlier levels only, never ``c[r, j+1]``: lossless."""
    from policies import prefix

    gamma = a_t.shape[0]
    ell = np.array(np.broadcast_to(lo, (r,)), dtype=np.int64)
    top = np.broadcast_to(hi, (r,))
    _, b, tau = prefix.forced(a_t, lo, r)
    longest = int(ell.max()) + 1
    t0 = path_seconds(plan.cost, r, b, np.array([longest]), plan.kv_tokens, plan.chunk)[0]
    best = tau - lam * t0 if lam else tau / t0
    for j in range(int(ell.min()), gamma):
        idx = np.flatnonzero((ell == j) & (j < top) & (a_t[j] > eps))
        if idx.size == 0:
            if (ell > j).any():
                continue
            break
        vals = a_t[j, idx]
        order = np.argsort(-vals, kind="stable")
        cum = tau + np.cumsum(vals[order])
        level = np.full(idx.size, max(longest, j + 2))
        t = path_seconds(plan.cost, r, b + 1, level, plan.kv_tokens, plan.chunk)
        score = cum - lam * t if lam else cum / t
        k = int(score.argmax())
        if score[k] <= best:
            break
        ell[idx[order[: k + 1]]] += 1
        tau, b, best = float(cum[k]), b + k + 1, float(score[k])
        longest = max(longest, j + 2)
    return ell
