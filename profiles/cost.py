"""What one engine step costs (DESIGN §2, cost model).

Two production forms of the verify cost, both as in SGLang:

- ``sps``: a 1D table of steps per second over verify batch tokens B (``SpsCostTable``:
  ``sample_batch_tokens``, ``sample_steps_per_sec``, ``max_batch_tokens``);
- ``additive``: ``T(bs, M) = bias + alpha(bs) + theta(M)`` with bs = requests in the batch and
  M = verify batch tokens (``SpsAdditiveCostTable``: ``bias_seconds``, ``bs_probes``,
  ``alpha_seconds``, ``m_probes``, ``theta_seconds``).

Plus draft time over requests, prefill time over prompt tokens and an optional context term over
the KV tokens attention reads in the step. ``context_basis`` says how an engine's attention reads
them: ``total`` (paged attention reads each request's own cache, Σ KV tokens) or ``padded``
(every request's keys are padded to the longest context in the batch, requests × longest, as in
the tiny CPU engine's batched attention). The verify terms are measured at ``context_base`` KV
tokens per request, so the context term prices the difference from ``requests × context_base``
(shorter contexts than the measured base make the step cheaper).

Between probes every curve is piecewise linear, so measured jags (padding buckets, CUDA-graph
sizes) stay as measured; beyond the last probe it extrapolates along the last segment and counts
the lookup in ``extrapolated`` so results can flag it. Every cost model carries a ``source``
label saying where its numbers come from (measured, imported, analytic).

Lookups on the simulator's hot path go through dense per-integer tables built once.

**Monotone for planning and pricing.** Measured tables dip within the profiler's spread (a
larger batch timed faster than a smaller one); Algorithm 1 would stop on such noise and pricing
would reward verifying more. So every lookup (verify, alpha, draft, prefill, context) reads the
*running maximum* of its curve over its axis — dips are lifted to the level before them, real
steps up (padding buckets, CUDA-graph sizes) are kept — as vLLM forces its tables monotone. The
raw probes stay in the fields (and in the profile files); :meth:`CostModel.repaired` counts the
probes the repair lifted, per term; ``monotone=False`` reads the raw curves (an engine that
plans on its table as measured, e.g. to replay records made before the repair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from profiles.curve import Curve, zero
from profiles.envelope import Envelope
from profiles.errors import InputError

__all__ = ["CONTEXT_BASES", "DRAFTERS", "CostModel", "Curve"]

_DENSE_LIMIT = 1 << 16  # integer B / bs covered by the dense lookup tables
CONTEXT_BASES = ("total", "padded")  # how an engine's attention reads the batch's KV tokens
DRAFTERS = ("parallel", "autoregressive")  # how draft cost scales with drafts per request


def _rising(seconds: np.ndarray) -> np.ndarray:
    """A dense table made non-negative and non-decreasing from index 1 on (running maximum)."""
    out = np.maximum(seconds, 0.0)
    out[1:] = np.maximum.accumulate(out[1:])
    return out


@dataclass(frozen=True)
class CostModel(Envelope):
    """Per-step cost of an engine. Build with :meth:`from_sps_table` or :meth:`additive`."""

    kind: str  # "sps" (1D table over verify tokens) or "additive" (bias + alpha(bs) + theta(M))
    verify: Curve  # sps: seconds per verify step over B; additive: theta(M) over B
    alpha: Curve = field(default_factory=zero)  # additive only: seconds over requests in batch
    bias_s: float = 0.0  # additive only: constant seconds per step
    draft: Curve = field(default_factory=zero)  # drafter seconds over requests in batch
    prefill: Curve = field(default_factory=zero)  # prefill seconds over prompt tokens in a step
    context: Curve = field(default_factory=zero)  # extra seconds over attended KV tokens
    context_basis: str = "total"  # attended KV tokens: "total" (Σ per request) or "padded"
    context_base: float = 0.0  # KV tokens per request at which the verify terms were measured
    # Optional query dependence: ``context`` measured with ``context_queries`` verify tokens in
    # every request, ``context_one`` with one; a batch's longest request (its attention is padded
    # to it), or without that its mean B/R, interpolates (linear, extended).
    context_one: Curve = field(default_factory=zero)
    context_queries: float = 0.0  # 0: no query dependence
    # Seconds per padded query token, R · longest − B (engines that pad each request's verify
    # tokens to the longest; paged engines have none). With it the verify terms price an
    # unpadded batch, so SPS(B) planning sees the cost without padding.
    padding_s: float = 0.0
    ragged_s: float = 0.0  # seconds a ragged batch (some request shorter than the longest) adds
    max_batch_tokens: int = 0  # largest B the engine accepts (0 = unbounded)
    monotone: bool = True  # plan and price with running-maximum tables (False: raw, as measured)
    max_context: int = 0  # longest sequence (prompt + output) one request may hold; 0 = unknown
    # How the draft term scales when a policy drafts fewer than the measured ``draft_positions``
    # per request (see :meth:`draft_scale`): "parallel" (DSpark/DFlash-style backbone: one pass
    # yields every position, so any k >= 1 pays the measured pass) or "autoregressive" (k
    # sequential passes: k / draft_positions of it). Drafting nothing costs nothing either way.
    drafter: str = "parallel"
    draft_positions: int = 7  # drafts per request the draft curve was measured (generated) at
    # Co-located prefill: True when the engine runs a step's prefill chunk and its verify tokens
    # as one fused forward (vLLM V1, SGLang mixed chunks: verify over B + chunk tokens), False
    # when it runs the chunk as a forward of its own (the tiny CPU engine: prefill(chunk) + ...).
    prefill_fused: bool = False
    source: str = "unlabelled"  # provenance: "measured: ...", "imported: ...", "analytic: ..."

    def __post_init__(self) -> None:
        if self.kind not in ("sps", "additive"):
            raise InputError(f"cost model kind must be 'sps' or 'additive', not {self.kind!r}")
        if self.context_basis not in CONTEXT_BASES:
            raise InputError(
                f"context basis must be 'total' or 'padded', not {self.context_basis!r}"
            )
        if not (self.context_base >= 0 and np.isfinite(self.context_base)):
            raise InputError(f"context base must be >= 0 tokens, got {self.context_base}")
        if not all(x >= 0 and np.isfinite(x) for x in (self.padding_s, self.ragged_s)):
            raise InputError("padding seconds must be finite numbers >= 0")
        if isinstance(self.max_context, bool) or not (
            isinstance(self.max_context, int) and self.max_context >= 0
        ):
            raise InputError(f"max context must be a whole number >= 0, got {self.max_context!r}")
        if self.drafter not in DRAFTERS or not self.draft_positions >= 1:
            raise InputError(f"drafter must be one of {DRAFTERS} with draft_positions >= 1")
        if self.context_queries and not (1 < self.context_queries < np.inf):
            raise InputError(f"context queries per request must be > 1, got {self.context_queries}")
        grid = np.arange(_DENSE_LIMIT, dtype=float)
        rising = _rising if self.monotone else (lambda t: np.maximum(t, 0.0))
        verify = rising(self.verify(grid))
        if self.kind == "additive":
            verify = verify + self.bias_s
        object.__setattr__(self, "_verify_dense", verify)  # seconds at B = index (plus bias)
        object.__setattr__(self, "_alpha_dense", rising(self.alpha(grid)))
        object.__setattr__(self, "_draft_dense", rising(self.draft(grid)))
        for name in ("prefill", "context", "context_one"):  # monotone copies for scalar lookups
            curve = getattr(self, name)
            object.__setattr__(self, f"_{name}_m", curve.monotone() if self.monotone else curve)
        # Python-list copies for the simulator's scalar per-step lookups (faster than numpy items).
        bias_alpha = self._alpha_dense if self.kind == "additive" else np.zeros_like(grid)
        object.__setattr__(self, "_step_lists", (verify.tolist(), bias_alpha.tolist(),
                                                 self._draft_dense.tolist()))  # fmt: skip
        hi_requests = max(self.draft.hi, self.alpha.hi if self.kind == "additive" else 0.0)
        object.__setattr__(self, "_hi", (self.verify.hi, hi_requests))  # measured range limits
        object.__setattr__(self, "_has_context", self.context.y != (0.0,))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_sps_table(
        cls,
        batch_tokens: Sequence[float],
        steps_per_sec: Sequence[float],
        *,
        max_batch_tokens: int = 0,
        source: str = "unlabelled",
        **extra,
    ) -> CostModel:
        """A 1D cost model from SGLang-style (batch tokens, steps/s) samples."""
        sps = np.asarray(steps_per_sec, float)
        if sps.size and (not np.isfinite(sps).all() or np.any(sps <= 0)):
            raise InputError("steps_per_sec must be positive finite numbers")
        verify = Curve(tuple(map(float, batch_tokens)), tuple(map(float, 1.0 / sps)))
        return cls("sps", verify, max_batch_tokens=max_batch_tokens, source=source, **extra)

    @classmethod
    def additive(
        cls,
        bias_seconds: float,
        bs_probes: Sequence[float],
        alpha_seconds: Sequence[float],
        m_probes: Sequence[float],
        theta_seconds: Sequence[float],
        *,
        max_batch_tokens: int = 0,
        source: str = "unlabelled",
        **extra,
    ) -> CostModel:
        """An additive model T(bs, M) = bias + alpha(bs) + theta(M) (SGLang field names)."""
        alpha = Curve(tuple(map(float, bs_probes)), tuple(map(float, alpha_seconds)))
        theta = Curve(tuple(map(float, m_probes)), tuple(map(float, theta_seconds)))
        return cls(
            "additive",
            theta,
            alpha=alpha,
            bias_s=float(bias_seconds),
            max_batch_tokens=max_batch_tokens,
            source=source,
            **extra,
        )

    # -- lookups --------------------------------------------------------------------------------
    def verify_time(self, requests: int, tokens: int) -> float:
        """Seconds of one target forward: ``tokens`` verify tokens from ``requests`` requests."""
        if tokens < _DENSE_LIMIT and requests < _DENSE_LIMIT:
            t = self._verify_dense[tokens]
            return float(t + self._alpha_dense[requests]) if self.kind == "additive" else float(t)
        t = float(self.verify(float(tokens))) + (self.bias_s if self.kind == "additive" else 0.0)
        return t + (float(self.alpha(float(requests))) if self.kind == "additive" else 0.0)

    def draft_scale(self, drafts: int | None) -> float:
        """Share of the measured draft pass a policy drafting ``drafts`` per request pays
        (None: the measured ``draft_positions``): 0 for none, else 1 (parallel drafter) or
        ``min(drafts, draft_positions) / draft_positions`` (autoregressive)."""
        if drafts is None:
            return 1.0
        if drafts <= 0:
            return 0.0
        if self.drafter == "parallel":
            return 1.0
        return min(drafts, self.draft_positions) / self.draft_positions

    def step_time(
        self,
        requests: int,
        tokens: int,
        kv_tokens: int,
        prefill_tokens: int,
        longest: int = 0,
        drafts: int | None = None,
    ) -> float:
        """Seconds of one engine step: draft + verify + context (+ prefill chunk: its own forward,
        or with ``prefill_fused`` the verify forward over B + chunk tokens); ``kv_tokens``
        counted on the model's ``context_basis``, ``longest`` the most verify tokens of one
        request (0: unknown), ``drafts`` per request drafted (None: all measured positions)."""
        fused = self.prefill_fused and requests and prefill_tokens
        t = self.prefill_time(prefill_tokens) if prefill_tokens and not fused else 0.0
        if not requests:
            return t
        scale = 1.0 if drafts is None else self.draft_scale(drafts)
        forward = tokens + prefill_tokens if fused else tokens  # tokens of the target forward
        if forward < _DENSE_LIMIT and requests < _DENSE_LIMIT:
            verify, alpha, draft = self._step_lists
            t += verify[forward] + alpha[requests] + scale * draft[requests]
        else:
            t += self.verify_time(requests, forward) + scale * self.draft_time(requests)
        if self._has_context:
            t += self.context_time(kv_tokens, requests, tokens, longest)
        if longest and requests * longest > tokens:  # ragged: padded to the longest
            t += self.padding_s * (requests * longest - tokens) + self.ragged_s
        return max(t, 0.0)

    def step_seconds(
        self,
        requests: int,
        batch_tokens: int,
        *,
        kv_tokens: int = 0,
        longest: int = 0,
        prefill_tokens: int = 0,
        drafts: int | None = None,
    ) -> float:
        """Seconds of one whole engine step as the simulator prices it: draft(R) + verify(R, B)
        + context at ``kv_tokens`` (on ``context_basis``) + padding to ``longest`` (+ prefill);
        ``drafts`` per request drafted (None: the measured positions; see :meth:`draft_scale`).
        The public name of :meth:`step_time` for exports and plans (keyword arguments)."""
        return self.step_time(requests, batch_tokens, kv_tokens, prefill_tokens, longest, drafts)

    def decode_seconds(
        self, requests: int, start: int, stop: int, kv_tokens: int | None = None
    ) -> np.ndarray:
        """Seconds of a whole decode step (draft + verify + context, no prefill, no padding)
        for each verify batch size B = start..stop-1 of ``requests`` requests at ``kv_tokens``
        attended KV tokens (on ``context_basis``; None: unknown, priced at the measured base
        and without a base-less context term): what a candidate batch costs the engine.
        Float array ``[stop - start]``."""
        if start < 0 or stop > _DENSE_LIMIT:
            b = np.arange(start, stop, dtype=float)
            t = np.maximum(self.verify(b), 0.0) + (self.bias_s if self.kind == "additive" else 0.0)
        else:
            t = self._verify_dense[start:stop].copy()
        n = min(requests, _DENSE_LIMIT - 1)
        if self.kind == "additive":
            t += self._alpha_dense[n]
        t += self._draft_dense[n]
        if self._has_context and requests and kv_tokens is not None:
            t += self.context_seconds(kv_tokens, requests, np.arange(start, stop) / requests)
        return np.maximum(t, 1e-12, out=t)

    def plan_sps(
        self, requests: int, start: int, stop: int, kv_tokens: int | None = None
    ) -> np.ndarray:
        """Whole decode steps per second for B = start..stop-1: ``1 / decode_seconds`` (the
        SPS(B) DSpark-family policies plan with by default, paper Eq. 1)."""
        return 1.0 / self.decode_seconds(requests, start, stop, kv_tokens)

    def context_seconds(self, kv_tokens: int, requests: int, queries: np.ndarray) -> np.ndarray:
        """:meth:`context_time` for each ``queries`` (verify tokens per request, or the longest
        request's where attention pads to it) at ``kv_tokens``; float array like ``queries``."""
        queries = np.asarray(queries, float)
        ctx, ctx_one = self._context_m, self._context_one_m
        if not self.context_base:
            return np.full(queries.shape, max(ctx.at(kv_tokens), 0.0))
        base = requests * self.context_base
        extra = ctx.at(kv_tokens) - ctx.at(base)
        if not self.context_queries:
            return np.full(queries.shape, extra)
        one = ctx_one.at(kv_tokens) - ctx_one.at(base)
        return one + (queries - 1.0) / (self.context_queries - 1.0) * (extra - one)

    def sps(self, requests: int, tokens: np.ndarray) -> np.ndarray:
        """Steps per second for each verify batch size in ``tokens`` (int array) at ``requests``.

        This is the ``SPS(B)`` of Algorithm 1; with the additive form it also depends on the
        number of requests in the batch.
        """
        tokens = np.asarray(tokens)
        if tokens.size and tokens.max() >= _DENSE_LIMIT:
            t = np.maximum(self.verify(tokens.astype(float)), 0.0)
            t = t + (self.bias_s if self.kind == "additive" else 0.0)
        else:
            t = self._verify_dense[tokens]
        if self.kind == "additive":
            t = t + self._alpha_dense[min(requests, _DENSE_LIMIT - 1)]
        return 1.0 / np.maximum(t, 1e-12)

    def sps_range(self, requests: int, start: int, stop: int) -> np.ndarray:
        """``sps(requests, np.arange(start, stop))`` from a slice of the dense table: no index
        array, no gather (the hot path of the survival-ranked policies). For the 1D form the
        result is a read-only view of a steps/s table built on first use."""
        if start < 0 or stop > _DENSE_LIMIT:
            return self.sps(requests, np.arange(start, stop))
        if self.kind == "sps":
            dense = self.__dict__.get("_sps_dense")
            if dense is None:
                dense = 1.0 / np.maximum(self._verify_dense, 1e-12)
                dense.flags.writeable = False
                object.__setattr__(self, "_sps_dense", dense)
            return dense[start:stop]
        t = self._verify_dense[start:stop]
        if self.kind == "additive":
            t = t + self._alpha_dense[min(requests, _DENSE_LIMIT - 1)]
        return 1.0 / np.maximum(t, 1e-12)

    def draft_time(self, requests: int) -> float:
        """Seconds of one drafter pass for ``requests`` requests."""
        return float(self._draft_dense[min(requests, _DENSE_LIMIT - 1)])

    def prefill_time(self, tokens: int) -> float:
        """Seconds to prefill ``tokens`` prompt tokens admitted in one step."""
        return max(self._prefill_m.at(tokens), 0.0) if tokens > 0 else 0.0

    def context_time(
        self, kv_tokens: int, requests: int = 0, tokens: int = 0, longest: int = 0
    ) -> float:
        """Extra seconds for attention over ``kv_tokens`` (on ``context_basis``) in a batch of
        ``requests`` verifying ``tokens`` (at most ``longest`` per request), relative to the
        ``requests × context_base`` the verify terms include (negative below it)."""
        if not self._has_context:
            return 0.0
        ctx, ctx_one = self._context_m, self._context_one_m
        if not self.context_base:
            return max(ctx.at(kv_tokens), 0.0)
        base = requests * self.context_base
        extra = ctx.at(kv_tokens) - ctx.at(base)
        if self.context_queries and requests and tokens:
            one = ctx_one.at(kv_tokens) - ctx_one.at(base)
            q = longest or tokens / requests
            w = (q - 1.0) / (self.context_queries - 1.0)
            extra = one + w * (extra - one)
        return extra

    def recalibrated(
        self,
        verify: tuple[float, float],
        draft: tuple[float, float],
        prefill: tuple[float, float],
        source: str,
    ) -> CostModel:
        """This model with each call's seconds mapped ``t -> offset + scale · t``; the arguments
        are ``(offset_s, scale)`` of a target forward (every verify term: bias or table, alpha,
        context, padding), a drafter pass and a prefill (the same shape on a machine running at
        another speed, engine/companion.py)."""
        (av, bv), (ad, bd), (ap, bp) = verify, draft, prefill

        def lin(c: Curve, scale: float, offset: float = 0.0) -> Curve:
            return Curve(c.x, tuple(offset + scale * y for y in c.y))

        additive = self.kind == "additive"
        return replace(
            self,
            verify=lin(self.verify, bv, 0.0 if additive else av),
            alpha=lin(self.alpha, bv),
            bias_s=av + bv * self.bias_s if additive else 0.0,
            context=lin(self.context, bv),
            context_one=lin(self.context_one, bv),
            padding_s=max(bv * self.padding_s, 0.0),
            ragged_s=max(bv * self.ragged_s, 0.0),
            draft=lin(self.draft, bd, ad),
            prefill=lin(self.prefill, bp, ap),
            source=source,
        )

    def describe(self) -> str:
        return f"{self.kind} cost model ({self.source})"
