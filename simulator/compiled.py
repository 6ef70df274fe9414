"""The compiled step path (numba): the decode steps between two events in one call.

``simulator/server.py`` stays the reference: SimPy runs arrivals and wake-ups, Python admits,
schedules prefill chunks, starts and retires requests. Between two such events the running batch
only decodes, so :class:`FastPath` hands those steps to :func:`run` — per step the policy's
compiled decision (``policies/kernels.py``), acceptance read from the backend's ring of drawn
rows, the step's price, the batch's bookkeeping and the recorder's totals — until a request
finishes, a prompt chunk was co-batched or a request's KV arrived (disaggregated; the step
after it needs Python again), or the next SimPy event or KV transfer is due. With
``ParametricAcceptance`` the rows are drawn in compiled code too (``simulator/streams.py``:
numpy's SeedSequence, PCG64 and ziggurat bit for bit, so each request's stream is the
reference's numbers): a joining request's stream is seeded and its first block drawn in one
call, and :func:`run` draws a request's next block at the step its rows run out, in the
reference's block sizes. Any other acceptance model draws with numpy: the backend draws ahead
before each call and the loop also stops when a request's drawn rows run out.

Where it applies is ``simulator/eligibility.py``'s one rule (a policy with a kernel, a profiled
backend drawn ahead, ``CostModel``\\ s within their dense tables); otherwise the server runs its
reference step and says why (``Server.fast_declined``). Same seed, same results: every float is
computed with the reference's operations in the reference's order (tests/simulator/
test_compiled.py compares whole summaries). Compiled functions are cached on disk
(``cache=True``, in ``__pycache__``), so only the first run on a machine pays the compile;
``policies/jitcache.py`` stamps each cached function with this file, ``policies/kernels.py`` and
``simulator/streams.py`` together, so an edit to any of them recompiles :func:`run`, which inlines
them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from policies import jitcache, kernels  # noqa: F401 (jitcache first: it stamps this file too)
from policies.kernels import curve_at
from profiles.acceptance import ParametricAcceptance
from profiles.errors import InputError
from simulator import streams
from simulator.backend import _ACCEPT_STREAM, _BLOCK

_DENSE = 1 << 16  # profiles.cost._DENSE_LIMIT


class CostTables(NamedTuple):
    """A ``CostModel``'s dense tables and terms, as the compiled code reads them."""

    verify: np.ndarray  # seconds of the verify forward at B = index (bias included)
    alpha: np.ndarray  # additive alpha(bs) at bs = index (zeros for a 1D table)
    draft: np.ndarray  # drafter seconds at R = index
    ctx_x: np.ndarray  # context curve (monotone) probes
    ctx_y: np.ndarray
    one_x: np.ndarray  # context curve with one query token per request (monotone)
    one_y: np.ndarray
    has_context: bool
    context_base: float
    context_queries: float
    padding_s: float
    ragged_s: float
    hi_tokens: float  # measured envelope: verify tokens, requests, attended KV tokens
    hi_requests: float
    ctx_lo: float
    ctx_hi: float
    fused: bool  # prefill_fused: a co-batched prompt chunk runs inside the verify forward
    longest: bool  # padded.prices_longest: a step is charged by its longest request


class Kernel(NamedTuple):
    """The policy's compiled decision and what the step path needs of it."""

    code: int  # policies.kernels.KERNELS[name]
    params: np.ndarray  # float64 hyperparameters, as the policy's ``kernel`` returns them
    lag: int  # steps of confidence history the server keeps (0: none)
    draft_scale: float  # CostModel.draft_scale of the policy's drafts per request


class Clock(NamedTuple):
    """Scalars the loop advances (in and out)."""

    now: float  # the engine's clock, simulated seconds
    busy: float  # engine busy seconds
    col: int  # the backend's decode step count (ring column = col % width)
    step: int  # the policy context's step index
    kv: int  # Σ KV tokens over the running batch (the total basis)
    tokens: int  # decode tokens generated (the running rate's numerator)
    decode: float  # busy seconds of decode work, prefill excluded (the running rate's denominator)


class Limit(NamedTuple):
    """When the loop must hand back to Python, and the first step's prefill."""

    until: float  # the next SimPy event (or KV transfer): stop once the clock reaches it
    horizon: int  # steps every running request has drawn rows for
    prefill_tokens: int  # prompt tokens co-batched into the first step (then stop)
    prefill_s: float  # their own forward's price (0 when fused into the verify forward)
    fused: int  # of them, tokens fused into the verify forward (0 or prefill_tokens)
    prefill_decode_s: float  # their prefill time, excluded from the decode seconds (λ)
    prefill_outside: bool  # their price reads beyond the prefill probes


class Totals(NamedTuple):
    """What the recorder and the backend count over the loop's steps."""

    steps: int
    request_steps: int
    batch_tokens: int
    verified: int
    gained: int
    extrapolated: int


def tables(cost: Any) -> CostTables:
    """The compiled view of a ``profiles.cost.CostModel`` (``eligibility.dense`` holds)."""
    from policies.padded import prices_longest

    additive = cost.kind == "additive"
    f = np.asarray
    return CostTables(
        f(cost._verify_dense, float), f(cost._alpha_dense if additive else
        np.zeros(_DENSE), float), f(cost._draft_dense, float),
        f(cost._context_m.x, float), f(cost._context_m.y, float),
        f(cost._context_one_m.x, float), f(cost._context_one_m.y, float),
        bool(cost._has_context), float(cost.context_base), float(cost.context_queries),
        float(cost.padding_s), float(cost.ragged_s), float(cost._hi[0]), float(cost._hi[1]),
        float(cost.context.lo), float(cost.context.hi), bool(cost.prefill_fused),
        prices_longest(cost),
    )  # fmt: skip


@njit(cache=True)
def step_seconds(t, r, tokens, kv, longest, prefill_s, fused, scale):
    """``CostModel.step_time`` of a decode step (a separate prefill forward priced by the
    caller, ``fused`` prompt tokens inside the verify forward)."""
    s = prefill_s
    s += t.verify[tokens + fused] + t.alpha[r] + scale * t.draft[r]
    if t.has_context:
        if not t.context_base:
            s += max(curve_at(t.ctx_x, t.ctx_y, kv), 0.0)
        else:
            base = r * t.context_base
            extra = curve_at(t.ctx_x, t.ctx_y, kv) - curve_at(t.ctx_x, t.ctx_y, base)
            if t.context_queries and tokens:
                one = curve_at(t.one_x, t.one_y, kv) - curve_at(t.one_x, t.one_y, base)
                q = float(longest) if longest else tokens / r
                extra = one + (q - 1.0) / (t.context_queries - 1.0) * (extra - one)
            s += extra
    if longest and r * longest > tokens:
        s += t.padding_s * (r * longest - tokens) + t.ragged_s
    return max(s, 0.0)


@njit(cache=True)
def outside(t, r, tokens, kv):
    """``CostModel.outside`` of a decode step without its prefill term (``tokens``: of the
    verify forward, a fused chunk included)."""
    if tokens > t.hi_tokens or 0 < t.hi_requests < r:
        return True
    if t.has_context:
        base = r * t.context_base
        return not (t.ctx_lo <= kv <= t.ctx_hi) or (base > 0 and base > t.ctx_hi)
    return False


@njit(cache=True)
def run(static, clock, limit, slots, left, ver, gain, size):
    """Decode steps of the running batch ``slots`` [R] until a :class:`Limit`; the batch
    columns ``left, ver, gain, size`` [R] are updated in place. Returns a :class:`Clock`,
    :class:`Totals` and whether a request finished, as one plain tuple (``static``, ``clock``
    and ``limit`` come as plain tuples too: numba unboxes and boxes those several times faster
    than named ones, which at light load, a few steps per call, is a share of the run).
    ``static``: :meth:`FastPath._static`; its ``inline``: draw each request's next block of
    rows (``streams.fill``) at the step its rows run out, as the backend's ``_tick`` does (else
    the backend has drawn ahead)."""
    plan, price, pol = CostTables(*static[0]), CostTables(*static[1]), Kernel(*static[2])
    conf_ring, acc_ring, hist, hist_step, padded = static[3:8]
    rows, inline = streams.Rows(*static[8]), static[9]
    limit = Limit(*limit)
    r, gamma = slots.size, conf_ring.shape[2]
    width = conf_ring.shape[1]
    conf, out = np.empty((r, gamma)), np.empty(r, np.int64)
    stale, known = np.empty((r, gamma)), np.ones(r, np.bool_)
    now, busy, col, step, kv_run, tokens, decode = clock
    n = req_steps = batch_tok = verified = gained = extra = 0
    lag = pol.lag
    while True:
        c = col % width
        if inline:
            for i in range(r):
                if rows.due[slots[i]] == col:
                    streams.fill(rows, slots[i], _BLOCK, col, conf_ring, acc_ring)
        for i in range(r):
            conf[i] = conf_ring[slots[i], c]
        kv = kv_run
        if padded:
            kv = 0
            for i in range(r):
                kv = max(kv, size[i] - left[i])
            kv *= r
        step += 1
        if lag:
            ring, past = step % lag, step - lag
            for i in range(r):
                stale[i] = hist[ring, slots[i]]
                known[i] = hist_step[ring, slots[i]] == past
                hist[ring, slots[i]] = conf[i]
                hist_step[ring, slots[i]] = step
        pf = limit.prefill_tokens if n == 0 else 0
        rate = tokens / decode if decode > 0 else 0.0
        kernels.decide(pol.code, pol.params, plan, conf, kv, pf, rate, stale, known, out)
        ver_step = gain_step = take_step = longest = 0
        for i in range(r):
            g = min(acc_ring[slots[i], c], out[i]) + 1
            take = min(g, left[i])
            left[i] -= take
            ver[i] += out[i]
            gain[i] += g
            ver_step += out[i]
            gain_step += g
            take_step += take
            longest = max(longest, out[i])
        col += 1
        fused = limit.fused if n == 0 else 0
        dt = step_seconds(price, r, r + ver_step, kv, longest + 1,
                          limit.prefill_s if n == 0 else 0.0, fused, pol.draft_scale)  # fmt: skip
        if outside(price, r, r + ver_step + fused, kv) or (n == 0 and limit.prefill_outside):
            extra += 1
        n += 1
        req_steps += r
        batch_tok += r + ver_step
        verified += ver_step
        gained += gain_step
        kv_run += take_step
        tokens += take_step
        now += dt
        busy += dt
        decode += dt - (limit.prefill_decode_s if pf else 0.0)
        finished = left.min() == 0
        if pf or n >= limit.horizon or now >= limit.until or finished:  # pf: step 1 only
            break
    return (now, busy, col, step, kv_run, tokens, decode,
            n, req_steps, batch_tok, verified, gained, extra, finished)  # fmt: skip


class FastPath:
    """The server's dispatch to :func:`run`: built once per server where
    ``simulator/eligibility.py`` finds it applies."""

    def __init__(self, kernel: Kernel, plan: CostTables, price: CostTables, inline) -> None:
        self.kernel, self.plan, self.price = kernel, plan, price
        self.inline = inline  # _Inline: the loop draws the rows (None: the backend draws ahead)
        self.rows = inline.rows if inline else _NO_ROWS
        self.static = None  # run()'s first argument, built at the first call (see static)

    def _static(self, server: Any) -> tuple:
        """What :func:`run` reads that stays put for the server's life: the planning and the
        pricing tables, the kernel, the backend's rings, the history's rings, whether the
        context is padded, the streams (plain tuples)."""
        b, h = server.backend, server.history
        return (tuple(self.plan), tuple(self.price), tuple(self.kernel), b.conf_ring,
                b.acc_ring, h.conf, h.step, server._padded, tuple(self.rows),
                self.inline is not None)  # fmt: skip

    @classmethod
    def build(cls, policy: Any, backend: Any, cost: Any, gamma: int, lag: int) -> FastPath:
        """The fast path of a server that ``eligibility.declined`` accepts."""
        name, params = policy.kernel(gamma)
        scale = backend.cost.draft_scale(backend.drafts)
        params = np.asarray(params, dtype=float)
        inline = type(backend.acceptance) is ParametricAcceptance
        if inline:
            backend.inline = _Inline(backend)
        kernel = Kernel(kernels.KERNELS[name], params, lag, scale)
        return cls(kernel, tables(cost), tables(backend.cost), backend.inline)

    def steps(self, server: Any, chunk: int, until: float, joining: bool) -> np.ndarray:
        """Run decode steps on ``server``'s batch (the first co-batching ``chunk`` prompt
        tokens; one step only if requests join the batch after it, ``joining``); returns the
        batch's tokens left (aligned with its running slots), or None when no request has
        finished."""
        backend, rec, b = server.backend, server.recorder, server.batch
        slots, left = b.slots, b.left
        cost = backend.cost
        horizon = backend.prefetch(slots, left) if self.inline is None else 1 << 62
        if joining:  # disaggregated: a request whose KV arrived decodes from the next step
            horizon = min(horizon, 1)
        if server._transfers:  # disaggregated: the next KV to arrive is an event too
            until = min(until, server._transfers[0][0])
        fused = chunk if chunk and cost.prefill_fused else 0
        own = cost.prefill_time(chunk) if chunk and not fused else 0.0
        # a Limit and a Clock, as plain tuples; the policy's running rate λ is tokens per decode
        # second (prefill excluded, as in Server._decode_step)
        limit = (until, horizon, chunk, own, fused, server._prefill_time(chunk) if chunk else 0.0,
                 bool(chunk) and cost.outside(0, 0, 0, chunk))  # fmt: skip
        clock = (server.now, rec.busy_s, backend.step_count, server.ctx.step,
                 server._kv_running, server._tokens, server._decode_s)  # fmt: skip
        if self.static is None:
            self.static = self._static(server)
        (server.now, rec.busy_s, _, server.ctx.step, server._kv_running, server._tokens,
         server._decode_s, steps, req_steps, batch_tok, verified, gained, extra, finished) = run(
            self.static, clock, limit, slots, left, b.verified, b.gained, b.size)  # fmt: skip
        backend.advance(steps, extra)
        rec.decode_steps += steps
        rec.request_steps += req_steps
        rec.batch_tokens += batch_tok
        rec.verified += verified
        rec.tokens_gained += gained
        return left if finished else None  # None: no request finished (Server._complete)


class _Inline:
    """``ParametricAcceptance``'s streams compiled (``simulator/streams.py``): a joining request's
    generator seeded and its first rows drawn in one call, the later rows by :func:`run` (the
    backend's ``inline``; the same numbers as its numpy generators)."""

    def __init__(self, backend: Any) -> None:
        acc = backend.acceptance
        self.offsets, self.sigma = acc.offsets, float(acc.request_sigma)
        self.conf, self.acc = backend.conf_ring, backend.acc_ring
        cap, gamma = self.conf.shape[0], self.conf.shape[2]
        model = max(np.asarray(mu).size for mu in acc.offsets.values())
        self.rows = streams.Rows(np.zeros((cap, 4), np.uint64), np.zeros((cap, model)),
                                 np.zeros(cap), backend._due_at, np.empty((_BLOCK, gamma)),
                                 float(acc.token_sigma), float(acc.conf_sigma))  # fmt: skip
        self.entropy = streams.run_entropy(backend.seed)
        self.plain = tuple(self.rows)

    def join(self, slot: int, request: Any, step: int) -> None:
        mu = self.offsets.get(request.domain)
        if mu is None:  # ParametricAcceptance.start's error
            raise InputError(f"acceptance model has no domain {request.domain!r} "
                             f"(domains: {', '.join(self.offsets)})")  # fmt: skip
        self.rows.mu[slot] = mu
        n = min(_BLOCK, max(request.output_tokens - 1, 1))  # as ProfiledBackend.join
        streams.join(self.plain, self.entropy, _ACCEPT_STREAM, request.id, self.sigma, slot, n,
                     step, self.conf, self.acc)  # fmt: skip


_NO_ROWS = streams.Rows(np.zeros((1, 4), np.uint64), np.zeros((1, 1)), np.zeros(1),
                        np.zeros(1, np.int64), np.empty((1, 1)), 0.0, 0.0)  # fmt: skip
