"""Compiled decisions of the built-in policies (numba), for the simulator's fast path.

A policy opts in through :meth:`policies.base.Policy.kernel`, which names one of the decisions
here (``KERNELS``) and passes its hyperparameters as floats; a policy without one (plugins, the
oracles) runs its own ``decide`` on the reference path. The reference is always the policy's
``decide``: each kernel returns exactly what it returns for the same step (valid mask None) —
the same ranking ``(-a, j, r)``, the same float operations in the same order (sequential prefix
sums as ``np.cumsum``, numpy's pairwise sum for the forced drafts' survival), which
``tests/simulator/test_compiled.py`` checks run against run.

Ranking without a sort: survival is non-increasing along j, so each request's candidates are
already in rank order and the batch's ranking is a k-way merge of R sorted lists — a binary
heap keyed by ``(-a, j·R + r)`` — popped only as far as the rule needs: Algorithm 1 stops at
its first drop, the top-K allocation after K pops, and only the global argmax (``global_sync``,
the lagged capacity) walks the whole path. ``SPS(B)`` is priced per popped candidate from the
dense tables (``simulator/compiled.py`` builds them from the cost model), as
``CostModel.plan_sps`` prices it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from policies import jitcache  # noqa: F401 (before any njit: the cache stamps every file)

# name -> code of the compiled decision (the names policies return from ``kernel``)
KERNELS = {"none": 0, "fixed": 1, "batch_table": 2, "dspark": 3, "global_sync": 4,
           "dspark_lagged": 5}  # fmt: skip
_DENSE = 1 << 16  # profiles.cost._DENSE_LIMIT: integer B / bs covered by the dense tables


@njit(cache=True)
def curve_at(x: np.ndarray, y: np.ndarray, q: float) -> float:
    """``profiles.cost.Curve.at``: piecewise linear through (x, y), extended at both ends."""
    n = x.size
    if n == 1:
        return y[0]
    i = min(max(np.searchsorted(x, q, side="right"), 1), n - 1)
    x0, y0 = x[i - 1], y[i - 1]
    return y0 + (q - x0) * (y[i] - y0) / (x[i] - x0)


@njit(cache=True)
def plan_seconds(t, requests: int, kv: int, b: int, step: bool) -> float:
    """Seconds ``CostModel.decode_seconds`` gives B = ``b`` (``step``), or the verify forward
    alone that ``CostModel.sps_range`` inverts (not ``step``); ``t`` is a CostTables tuple."""
    n = min(requests, _DENSE - 1)
    s = t.verify[b] + t.alpha[n]
    if not step:
        return max(s, 1e-12)
    s += t.draft[n]
    if t.has_context and requests:
        if not t.context_base:
            s += max(curve_at(t.ctx_x, t.ctx_y, kv), 0.0)
        else:
            base = requests * t.context_base
            extra = curve_at(t.ctx_x, t.ctx_y, kv) - curve_at(t.ctx_x, t.ctx_y, base)
            if t.context_queries:
                one = curve_at(t.one_x, t.one_y, kv) - curve_at(t.one_x, t.one_y, base)
                extra = one + (b / requests - 1.0) / (t.context_queries - 1.0) * (extra - one)
            s += extra
    return max(s, 1e-12)


@njit(cache=True)
def context_seconds(t, kv: int, requests: int, queries: float) -> float:
    """``CostModel.context_seconds`` at one ``queries`` (the longest request's verify tokens)."""
    if not t.context_base:
        return max(curve_at(t.ctx_x, t.ctx_y, kv), 0.0)
    base = requests * t.context_base
    extra = curve_at(t.ctx_x, t.ctx_y, kv) - curve_at(t.ctx_x, t.ctx_y, base)
    if not t.context_queries:
        return extra
    one = curve_at(t.one_x, t.one_y, kv) - curve_at(t.one_x, t.one_y, base)
    return one + (queries - 1.0) / (t.context_queries - 1.0) * (extra - one)


@njit(cache=True)
def path_seconds(t, requests: int, b: int, longest: int, kv: int, chunk: int) -> float:
    """``policies.padded.path_seconds`` at one B = ``b`` with ``longest`` verify tokens in the
    longest request (``chunk`` prefill tokens fused into the verify forward)."""
    n = min(requests, _DENSE - 1)
    s = t.verify[b + chunk] + t.alpha[n]
    s += t.draft[n]
    s = max(s, 1e-12)
    if t.has_context:
        s = s + context_seconds(t, kv, requests, float(longest))
    pad = max(requests * longest - b, 0)
    s = s + t.padding_s * pad + t.ragged_s * (1.0 if pad > 0 else 0.0)
    return max(s, 1e-12)


@njit(cache=True)
def pairwise_sum(a: np.ndarray) -> float:
    """``float(a.sum())`` for a contiguous float64 vector, as numpy adds it: blocks of at most
    128 in eight lanes, halves split at multiples of 8 and added pairwise. An explicit stack
    instead of recursion (numba cannot load a cached recursive function)."""
    at, size = np.empty(32, np.int64), np.empty(32, np.int64)
    stage, left = np.zeros(32, np.int64), np.empty(32)
    at[0], size[0], top, ret = 0, a.size, 0, 0.0
    while True:
        i, m = at[top], size[top]
        if m <= 128:
            ret = _block(a, i, m)
        else:
            half = m // 2 - (m // 2) % 8
            if stage[top] < 2:  # descend into the first (0) or second (1) half
                if stage[top] == 1:
                    left[top] = ret
                stage[top] += 1
                top += 1
                at[top] = i if stage[top - 1] == 1 else i + half
                size[top] = half if stage[top - 1] == 1 else m - half
                stage[top] = 0
                continue
            ret = left[top] + ret
        top -= 1
        if top < 0:
            return 0.0 + ret


@njit(cache=True)
def _block(a, i0, n):
    """numpy's pairwise sum of ``a[i0 : i0 + n]`` for ``n <= 128`` (one leaf)."""
    if n < 8:
        res = -0.0
        for i in range(n):
            res += a[i0 + i]
        return res
    r = a[i0 : i0 + 8].copy()
    i = 8
    while i < n - (n % 8):
        for k in range(8):
            r[k] += a[i0 + i + k]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[i0 + i]
        i += 1
    return res


@njit(cache=True)
def survival(conf: np.ndarray, out: np.ndarray) -> None:
    """``out[j, r] = Π_{i≤j} conf[r, i]`` (position-major, as ``prefix.survival_t``)."""
    r, gamma = conf.shape
    for i in range(r):
        acc = conf[i, 0]
        out[0, i] = acc
        for j in range(1, gamma):
            acc = acc * conf[i, j]
            out[j, i] = acc


# -- the ranked candidates: a k-way merge of the requests' prefixes ---------------------------
@njit(cache=True)
def _before(a, r, j1, i1, j2, i2):
    """True if candidate (i1, j1) ranks before (i2, j2): larger survival, then flat index."""
    v1, v2 = a[j1, i1], a[j2, i2]
    return v1 > v2 or (v1 == v2 and j1 * r + i1 < j2 * r + i2)


@njit(cache=True)
def _sift_down(heap, nxt, a, r, size, k):
    while True:
        c = 2 * k + 1
        if c >= size:
            return
        if c + 1 < size and _before(a, r, nxt[heap[c + 1]], heap[c + 1], nxt[heap[c]], heap[c]):
            c += 1
        if not _before(a, r, nxt[heap[c]], heap[c], nxt[heap[k]], heap[k]):
            return
        heap[k], heap[c] = heap[c], heap[k]
        k = c


@njit(cache=True)
def _merge_start(a, lo, end, heap, nxt):
    """Heap of the requests with candidates left (next candidate ``nxt[i]``); returns its size."""
    r = end.size
    size = 0
    for i in range(r):
        nxt[i] = lo
        if lo < end[i]:
            heap[size] = i
            size += 1
    for k in range(size // 2 - 1, -1, -1):
        _sift_down(heap, nxt, a, r, size, k)
    return size


@njit(cache=True)
def _merge_pop(a, end, heap, nxt, size):
    """Pop the best candidate: returns (request, new heap size); its survival is a[nxt-1, i]."""
    i = heap[0]
    nxt[i] += 1
    if nxt[i] >= end[i]:
        size -= 1
        heap[0] = heap[size]
    if size:
        _sift_down(heap, nxt, a, end.size, size, 0)
    return i, size


# -- the decisions -----------------------------------------------------------------------------
@njit(cache=True)
def _pool(a, lo, hi, eps, end):
    """Per request the end of its candidate run ``lo ≤ j < end[i]`` with ``a > eps``; total."""
    n = 0
    for i in range(end.size):
        e = lo
        while e < hi and a[e, i] > eps:
            e += 1
        end[i] = e
        n += e - lo
    return n


@njit(cache=True)
def _count(t, a, lo, end, n_all, r, b0, tau0, kv, step, lam, argmax, rows, chunk):
    """How many ranked candidates the rule admits; their requests go to ``rows``.

    Without ``lam``: Algorithm 1's Θ(n) = τ(n)·SPS(B0+n) path, first drop (``argmax``
    False: ``prefix.greedy_stop``) or first maximum (``prefix.best_count``). With ``lam``:
    the long-run marginal gains a − λ·ΔT (``prefix.marginal_count``). ``chunk``: prefill
    tokens fused into the verify forward (``prefix.Plan.chunk``)."""
    heap, nxt = np.empty(r, np.int64), np.empty(r, np.int64)
    size = _merge_start(a, lo, end, heap, nxt)
    tau = tau0
    prev = 1.0 / plan_seconds(t, r, kv, b0 + chunk, step)
    best, best_val, path = 0, (0.0 if lam else tau0 * prev), 0.0
    secs = 1.0 / prev
    for n in range(n_all):
        i, size = _merge_pop(a, end, heap, nxt, size)
        val = a[nxt[i] - 1, i]
        rows[n] = i
        sps = 1.0 / plan_seconds(t, r, kv, b0 + chunk + n + 1, step)
        if lam:
            nsecs = 1.0 / sps
            gain = val - lam * (nsecs - secs)
            secs = nsecs
            if not argmax:
                if gain <= 0.0:
                    return n
                continue
            path += gain
            if path > best_val:
                best, best_val = n + 1, path
            continue
        tau = tau + val
        theta = tau * sps
        if argmax:
            if theta > best_val:
                best, best_val = n + 1, theta
        elif not theta > best_val:
            return n
        else:
            best_val = theta
    return best if argmax else n_all


@njit(cache=True)
def _ranked(t, a, lo, end, n_all, r, b0, tau0, kv, chunk, lam, rows):
    """``padded.ranked_count`` without the early stop: the global argmax of Θ along the ranked
    path priced with the true step cost at its longest request; returns (n, longest at n,
    score at n), the first n requests in ``rows``."""
    heap, nxt = np.empty(r, np.int64), np.empty(r, np.int64)
    size = _merge_start(a, lo, end, heap, nxt)
    tau, drafts = tau0, lo
    sec = path_seconds(t, r, b0, lo + 1, kv, chunk)
    best, best_longest = 0, lo + 1
    best_val = tau0 - lam * sec if lam else tau0 / sec
    for n in range(n_all):
        i, size = _merge_pop(a, end, heap, nxt, size)
        j = nxt[i] - 1
        rows[n] = i
        drafts = max(drafts, j + 1)
        tau = tau + a[j, i]
        sec = path_seconds(t, r, b0 + n + 1, drafts + 1, kv, chunk)
        score = tau - lam * sec if lam else tau / sec
        if score > best_val:
            best, best_val, best_longest = n + 1, score, drafts + 1
    return best, best_longest, best_val


@njit(cache=True)
def _levels(t, a, lo, hi, eps, kv, chunk, lam, out):
    """``padded.level_lengths``: Algorithm 1 level by level on the true step cost, into
    ``out`` [R] (which holds ``lo`` on entry)."""
    gamma, r = a.shape
    b, tau = _forced(a, lo, r)
    longest = lo + 1
    t0 = path_seconds(t, r, b, longest, kv, chunk)
    best = tau - lam * t0 if lam else tau / t0
    idx, vals = np.empty(r, np.int64), np.empty(r)
    for j in range(lo, gamma):
        m = 0
        deeper = False
        for i in range(r):
            if out[i] > j:
                deeper = True
            elif out[i] == j and j < hi and a[j, i] > eps:
                idx[m], vals[m] = i, -a[j, i]
                m += 1
        if m == 0:
            if deeper:
                continue
            break
        order = np.argsort(vals[:m], kind="mergesort")  # stable: ties by request
        level = max(longest, j + 2)
        k, s = 0, 0.0
        k_cum = k_score = 0.0
        for q in range(m):
            s += -vals[order[q]]
            cum = tau + s
            sec = path_seconds(t, r, b + 1 + q, level, kv, chunk)
            score = cum - lam * sec if lam else cum / sec
            if q == 0 or score > k_score:
                k, k_cum, k_score = q, cum, score
        if k_score <= best:
            break
        for q in range(k + 1):
            out[idx[order[q]]] += 1
        tau, b, best = k_cum, b + k + 1, k_score
        longest = level


@njit(cache=True)
def _forced(a, lo, r):
    """(B0, τ0) of the unconditional drafts (``prefix.forced`` with an integer window)."""
    if not lo:
        return r, float(r)
    return r + lo * r, float(r) + pairwise_sum(a[:lo].reshape(-1))


@njit(cache=True)
def _window(params, gamma, cap=0):
    minv, maxv = int(params[0]), int(params[1])
    if cap:
        maxv = min(cap, maxv) if maxv else cap
    top = gamma if maxv <= 0 else min(maxv, gamma)
    return min(minv, top), top


@njit(cache=True)
def _prefix(t, conf, params, kv, lam, argmax, chunk, padded, out):
    """``dspark`` / ``global_sync`` (policies/dspark.py) with the valid mask None; ``padded``:
    planned at the longest request (``policies/padded.py``)."""
    r, gamma = conf.shape
    lo, hi = _window(params, gamma)
    a = np.empty((gamma, r))
    survival(conf, a)
    end = np.empty(r, np.int64)
    n_all = _pool(a, lo, hi, params[2], end)
    out[:] = lo
    if not n_all:
        return
    if padded and not argmax:
        _levels(t, a, lo, hi, params[2], kv, chunk, lam, out)
        return
    b0, tau0 = _forced(a, lo, r)
    rows = np.empty(n_all, np.int64)
    if padded:
        n = _ranked(t, a, lo, end, n_all, r, b0, tau0, kv, chunk, lam, rows)[0]
    else:
        n = _count(t, a, lo, end, n_all, r, b0, tau0, kv, params[3] > 0, lam, argmax, rows,
                   chunk)  # fmt: skip
    for k in range(n):
        out[rows[k]] += 1


@njit(cache=True)
def _stale(conf, known, padded):
    """Survival of the stale confidences [γ, R]; a request not ``known`` gets 1 (``padded``:
    the known requests' mean per position, ``padded.fill_unknown``)."""
    r, gamma = conf.shape
    h = np.empty((gamma, r))
    survival(conf, h)
    nk = 0
    for i in range(r):
        nk += known[i]
    if nk == r:
        return h
    buf = np.empty(nk)
    for j in range(gamma):
        fill = 1.0
        if padded and nk:
            m = 0
            for i in range(r):
                if known[i]:
                    buf[m] = h[j, i]
                    m += 1
            fill = pairwise_sum(buf) / nk
        for i in range(r):
            if not known[i]:
                h[j, i] = fill
    return h


@njit(cache=True)
def _capped(t, h, lo, hi, eps, kv, chunk, lam):
    """``padded.capped_count``: the best (K, cap) over the caps L = max(lo, 1)..γ."""
    gamma, r = h.shape
    b0, tau0 = _forced(h, lo, r)
    end, rows = np.empty(r, np.int64), np.empty(gamma * r, np.int64)
    best, best_k, best_cap = -np.inf, 0, 0
    for cap in range(max(lo, 1), gamma + 1):
        n_h = _pool(h, lo, min(hi, cap), eps, end)
        if not n_h:
            continue
        k, longest, score = _ranked(t, h, lo, end, n_h, r, b0, tau0, kv, chunk, lam, rows)
        if score > best:
            best, best_k, best_cap = score, k, longest - 1
        if not hi > cap:
            break
    return best_k, best_cap


@njit(cache=True)
def _lagged(t, conf, params, kv, lam, stale, known, chunk, padded, out):
    """``dspark_lagged`` (policies/lagged.py): capacity K by the global argmax over the
    survival of ``stale`` [R, γ] (1 where not ``known``), then the top K current candidates;
    ``padded``: K and a per-request cap from the stale path at its longest request."""
    r, gamma = conf.shape
    lo, hi = _window(params, gamma)
    eps, step = params[2], params[3] > 0
    h = _stale(stale, known, padded)
    end = np.empty(r, np.int64)
    k = cap = 0
    if padded:
        k, cap = _capped(t, h, lo, hi, eps, kv, chunk, lam)
        lo, hi = _window(params, gamma, cap)
    else:
        n_h = _pool(h, lo, hi, eps, end)
        if n_h:
            b0, tau0 = _forced(h, lo, r)
            rows = np.empty(n_h, np.int64)
            k = _count(t, h, lo, end, n_h, r, b0, tau0, kv, step, lam, True, rows, chunk)
    out[:] = lo
    a = np.empty((gamma, r))
    survival(conf, a)
    n_all = _pool(a, lo, hi, eps, end)
    if k == 0 or n_all == 0:
        return
    if k >= n_all:
        for i in range(r):
            out[i] += end[i] - lo
        return
    heap, nxt = np.empty(r, np.int64), np.empty(r, np.int64)
    size = _merge_start(a, lo, end, heap, nxt)
    for _ in range(k):
        i, size = _merge_pop(a, end, heap, nxt, size)
        out[i] += 1


@njit(cache=True)
def decide(code, params, t, conf, kv, prefill, rate, stale, known, out):
    """The decision of kernel ``code`` for confidences ``conf`` [R, γ] into ``out`` [R].

    ``kv``: the step's attended KV tokens; ``prefill``: prompt tokens co-batched (fused into
    the verify forward where ``t.fused``); ``rate``: the server's running tokens per decode
    second (λ of the marginal rule); ``stale``/``known``: the confidences ``lag`` steps ago
    [R, γ] and whether each request had them (lagged only). ``t.longest``: the planner prices
    the longest request (``padded.prices_longest``) under the ``step`` objective."""
    r, gamma = conf.shape
    if code == 0:
        out[:] = 0
    elif code == 1:
        out[:] = min(int(params[0]), gamma)
    elif code == 2:
        m = (params.size - 1) // 2  # params: sizes..., ks..., default
        i = np.searchsorted(params[:m], r, side="left")
        out[:] = min(gamma, int(params[m + i]) if i < m else int(params[-1]))
    elif r == 0:
        return
    else:
        step = params[3] > 0
        lam = rate if step and prefill and rate > 0 else 0.0
        chunk = prefill if step and t.fused else 0
        padded = step and t.longest
        if code == 5:
            _lagged(t, conf, params, kv, lam, stale, known, chunk, padded, out)
        else:
            _prefix(t, conf, params, kv, lam, code == 4, chunk, padded, out)
