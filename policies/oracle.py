"""Oracles of the simulator (they read realized outcomes; never real policies).

- ``oracle``, the best response — the reference results report "share of oracle" against.
  Knowing each request's A (its accepted drafts were all γ verified), it picks ℓ[r] ≤ A[r] to
  maximise tokens per second under the *true* step cost (``CostModel.step_seconds``: draft,
  verify, context at the step's KV, padding to the longest request). Every admitted draft is
  then accepted, so a step of n verified drafts gains R + n tokens whichever requests they
  come from; for a given n the batch tokens B = R + n are fixed, and the water-fill (the
  lowest common cap) has the shortest longest request, hence the least padding ``R · longest
  − B``, the least context at the longest request's queries, and no ragged batch unless every
  allocation of n is ragged: it is the cheapest allocation of n within ℓ ≤ A on any cost whose
  price at fixed B does not fall as the longest request grows. n maximises ``(R + n) / T(n)``
  (the fixed point of Dinkelbach's iteration on one step) or, with a co-batched prefill chunk,
  the long-run rule ``(R + n) − λ·T(n)`` with λ the server's running tokens/s (as the DSpark
  family, policies/prefix.py). O(R·γ) per step.

  ℓ ≤ A is the definition, not a free lunch on every cost: where the engine charges ragged
  batches (the CPU default's ``ragged_s``, 0.36 ms a step, above the 0.04 ms per padded token
  and the few verify tokens saved), verifying c drafts of *every* request, rejected ones
  included, is cheaper than the water-fill at cap c on 10% of (step, cap) pairs (up to 5.5%;
  4,000 random steps, R ≤ 64) and would raise the step objective on 2.7% of random steps
  (median 1.1%, max 5.2%). The oracle does not verify past A; the property tests hold it to
  costs where verifying fewer drafts never costs more (no ragged or padding charge).
- ``twin``: policy ``of`` with each length cut to the realized ``min(A, ℓ_π)``: the same
  tokens as π at no more cost on monotone tables (what π would do if it wasted nothing). That
  holds step by step for every policy; along a run it holds where π's inputs do not depend on
  its own past cost or verify counts (a policy reading its verify history, as ``goodput``, or
  the marginal rule's running rate on co-batched prefill steps sees a different run).
- ``clairvoyant`` (ℓ = A), kept for old results, is *not* a reference:

It knows A[r], how many of request r's drafts the target would accept if all were verified, and
verifies exactly those: no rejected draft is ever verified, and every step ends with a bonus
token. It bounds accepted tokens per verified token, not throughput: it verifies every accepted
draft even where a long verify costs more than it gains (steep cost curves, engines that pad
attention to the batch's longest request), so tuned policies can beat it there. Real engines
cannot know A before verifying, so the live engine refuses it; its output distribution is not
even defined the same way (``lossless`` is None, "n/a").

Simulator contract (reads "realized"): ``ctx.accepted[r]`` is A[r] in 0..γ for the current step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from policies import padded, prefix
from policies.base import READS, Policy, StepContext, valid_lengths
from policies.registry import register


@register
@dataclass(frozen=True)
class Clairvoyant(Policy):
    """Verify exactly the drafts that will be accepted (knows the realized outcome)."""

    name = "clairvoyant"
    lossless = None
    reads = frozenset({"realized"})
    summary = "ℓ = A (simulator only; not a reference under padded or steep costs: see oracle)"

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        accepted = np.clip(np.asarray(ctx.accepted, dtype=np.int64), 0, gamma)
        return np.minimum(accepted, valid_lengths(valid, r, gamma))


@register
@dataclass(frozen=True)
class Oracle(Policy):
    """Best response: ℓ ≤ A maximising tokens per second under the true step cost."""

    name = "oracle"
    lossless = None
    reads = frozenset({"realized", "cost"})
    summary = "best-response oracle: ℓ ≤ A maximising tokens/s under the true step cost"

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        r, gamma = conf.shape
        accepted = np.clip(np.asarray(ctx.accepted, dtype=np.int64), 0, gamma)
        a = np.minimum(accepted, valid_lengths(valid, r, gamma))  # [R]
        if r == 0 or not a.any():
            return np.zeros(r, dtype=np.int64)
        level, n = water_levels(a)  # for n = 0..ΣA drafts: the common cap and the count
        chunk = ctx.prefill_tokens if getattr(ctx.cost, "prefill_fused", False) else 0
        seconds = true_seconds(ctx.cost, r, n, level, ctx.kv_tokens, chunk)  # [ΣA + 1]
        lam = prefix.marginal(ctx, "step")
        score = (r + n) - lam * seconds if lam else (r + n) / seconds
        return fill(a, int(n[int(score.argmax())]), conf)


def water_levels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every total n = 0..ΣA: the water-fill's longest ℓ (``level``) and n itself."""
    top = int(a.max())
    filled = np.minimum(a[None, :], np.arange(top + 1)[:, None]).sum(axis=1)  # Σ min(A, L)
    n = np.arange(int(a.sum()) + 1)
    return np.searchsorted(filled, n, side="left"), n


def true_seconds(
    cost, r: int, n: np.ndarray, level: np.ndarray, kv_tokens: int | None, chunk: int = 0
) -> np.ndarray:
    """Decode-step seconds for n = 0..N verified drafts water-filled to ``level``, priced as
    ``CostModel.step_seconds`` prices the step (context at the longest request, padding,
    ``chunk`` prefill tokens fused into the verify forward; ``padded.path_seconds``)."""
    return padded.path_seconds(cost, r, r, 1 + np.asarray(level)[np.asarray(n)], kv_tokens, chunk)


def fill(a: np.ndarray, n: int, conf: np.ndarray | None = None) -> np.ndarray:
    """Water-fill n drafts under caps ``a``: the lowest common cap, the remainder to the
    requests that reach it with the highest confidence product ``Π c[r, :cap]`` (``conf``
    [R, γ]; ties, or no ``conf``, by request index), so permuting requests permutes the result
    (int64 [R])."""
    if n <= 0:
        return np.zeros(a.size, dtype=np.int64)
    level, _ = water_levels(a)
    cap = int(level[n])
    out = np.minimum(a, cap - 1)
    extra = n - int(out.sum())
    room = np.flatnonzero(a >= cap)
    if conf is not None and extra < room.size:
        rank = np.prod(conf[room, :cap], axis=1)
        room = room[np.argsort(-rank, kind="stable")]
    out[room[:extra]] += 1
    return out.astype(np.int64)


@register
@dataclass(frozen=True)
class Twin(Policy):
    """Policy ``of`` with each verify length cut to the realized accepted count, min(A, ℓ_π)."""

    of: str = "dspark_lagged"  # the policy spec this twin shadows

    name = "twin"
    lossless = None
    reads = READS  # whatever ``of`` reads, plus the realized outcome
    summary = "min(A, ℓ_π) of policy `of`: the same tokens as π without its wasted drafts"

    def __post_init__(self) -> None:
        _ = self.inner  # an unknown or bad spec fails here (InputError)

    @cached_property
    def inner(self) -> Policy:
        from policies.registry import make_policy

        return make_policy(self.of)

    def draft_tokens(self, gamma: int) -> int:
        return self.inner.draft_tokens(gamma)

    @property
    def lag(self) -> int:
        return int(getattr(self.inner, "lag", 0)) if "lagged" in self.inner.reads else 0

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        ell = self.inner.decide(conf, valid, ctx)
        return np.minimum(ell, np.asarray(ctx.accepted, dtype=np.int64))
