"""Exact losslessness auditor: does a policy leave the target's output distribution intact?

For one scenario (policies/scenarios.py) the auditor enumerates every outcome of one decode
step — each request's sampled drafts ``x[1..γ]`` (which fix its confidences, the Markov head
reading the previous draft token) and, for oracles, the accepted count A — asks the policy for
its verify lengths ℓ on each outcome, and computes the exact joint distribution of the first
``tokens`` output tokens of every request under standard speculative sampling:

- drafts 1..ℓ are checked left to right; draft k is accepted with ``min(1, p_t(x_k)/p_d(x_k))``;
- on the first rejection the token is drawn from the residual ``norm(max(0, p_t - p_d))``;
- if all ℓ verified drafts are accepted, a bonus token is drawn from ``p_t`` after them;
- output tokens beyond what the step produced are drawn from the target (any lossless
  continuation gives the same law), so a step that is lossless matches the target exactly.

Requests are independent given the policy's decisions, so each outcome contributes the outer
product of per-request laws. The result is compared with the target's law by total variation
(float64 arithmetic; lossless means ``TV ≤ 1e-9``). Enumeration is exhaustive, so there is no
statistical error: a lossy policy shows a strictly positive TV on a scenario that exposes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np

from policies.base import Policy
from policies.scenarios import SCENARIOS, Scenario, ScenarioRequest, scenario
from profiles.errors import InputError

TOLERANCE = 1e-9  # total variation below which two laws count as equal (float64 round-off)


@dataclass(frozen=True)
class AuditResult:
    """One policy on one scenario. Distributions are keyed by token labels, requests by ``|``."""

    policy: str  # the policy's spec
    scenario: str
    claims: bool | None  # what the policy declares (None: not applicable)
    lossless: bool  # total_variation <= TOLERANCE
    total_variation: float  # TV between the joint laws of the first `tokens` tokens
    first_token_tv: float  # TV between the joint laws of each request's first token
    target_distribution: dict[str, float]  # first output token of each request, target law
    output_distribution: dict[str, float]  # the same under the policy
    target_sequences: dict[str, float] = field(default_factory=dict)
    output_sequences: dict[str, float] = field(default_factory=dict)
    mean_verified: tuple[float, ...] = ()  # E[ℓ[r]]: shows the scenario exercises the policy

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict; probabilities rounded to 12 decimals (far below TOLERANCE)."""
        return {
            "policy": self.policy,
            "scenario": self.scenario,
            "claims_lossless": self.claims,
            "lossless": self.lossless,
            "total_variation": _r(self.total_variation),
            "first_token_total_variation": _r(self.first_token_tv),
            "target_distribution": _rd(self.target_distribution),
            "output_distribution": _rd(self.output_distribution),
            "target_sequences": _rd(self.target_sequences),
            "output_sequences": _rd(self.output_sequences),
            "mean_verified": [_r(x) for x in self.mean_verified],
        }


def _r(x: float) -> float:
    return round(x, 12) + 0.0  # + 0.0 turns -0.0 into 0.0


def _rd(d: dict[str, float]) -> dict[str, float]:
    return {k: _r(v) for k, v in d.items()}


@dataclass(frozen=True, eq=False)
class _Tables:
    """Everything about one request's step that does not depend on the policy."""

    prob: np.ndarray  # [D] probability of each draft sequence (only those with P > 0)
    conf: np.ndarray  # [D, γ] confidences the head emits along it
    accept: np.ndarray  # [D, γ+1] P(A = a | drafts)
    out: np.ndarray  # [D, γ+1 (A), γ+1 (ℓ), V^m] law of the first m output tokens
    target: np.ndarray  # [V^m] the target's law of the first m tokens


def audit(policy: Policy, scen: Scenario | str) -> AuditResult:
    """Exact output law of ``policy`` on one scenario, compared with the target's."""
    scen = scenario(scen) if isinstance(scen, str) else scen
    v, m, n_req = len(scen.vocab), scen.tokens, len(scen.requests)
    tables = [_tables(req, v, m) for req in scen.requests]
    realized = "realized" in policy.reads
    options = [_options(t, realized) for t in tables]
    law = np.zeros((v**m,) * n_req)
    mean_len = np.zeros(n_req)
    for combo in itertools.product(*options):
        conf = np.stack([tables[r].conf[d] for r, (d, _, _) in enumerate(combo)])
        accepted = np.array([a for _, a, _ in combo]) if realized else None
        lengths = _decide(policy, scen, conf, accepted)
        weight = float(np.prod([w for _, _, w in combo]))
        parts = []
        for r, (d, a, _) in enumerate(combo):
            t = tables[r]
            if realized:
                parts.append(t.out[d, a, lengths[r]])
            else:
                parts.append(t.accept[d] @ t.out[d, :, lengths[r]])
        law += weight * reduce(np.multiply.outer, parts)
        mean_len += weight * lengths
    target = reduce(np.multiply.outer, [t.target for t in tables])
    tv = 0.5 * float(np.abs(law - target).sum())
    first_out, first_target = _first_tokens(law, v, m, n_req), _first_tokens(target, v, m, n_req)
    return AuditResult(
        policy=policy.spec,
        scenario=scen.name,
        claims=policy.lossless,
        lossless=tv <= TOLERANCE,
        total_variation=tv,
        first_token_tv=0.5 * float(np.abs(first_out - first_target).sum()),
        target_distribution=_label(first_target, scen.vocab, 1, n_req),
        output_distribution=_label(first_out, scen.vocab, 1, n_req),
        target_sequences=_label(target, scen.vocab, m, n_req),
        output_sequences=_label(law, scen.vocab, m, n_req),
        mean_verified=tuple(float(x) for x in mean_len),
    )


def audit_many(policy: Policy, names: list[str] | None = None) -> list[AuditResult]:
    """``policy`` on each named scenario (all builtin ones by default)."""
    return [audit(policy, scenario(n)) for n in (names or list(SCENARIOS))]


def _decide(
    policy: Policy, scen: Scenario, conf: np.ndarray, accepted: np.ndarray | None
) -> np.ndarray:
    lengths = policy(
        conf,
        cost=scen.cost,
        valid=scen.valid,
        lagged=scen.lagged,
        lagged_known=scen.lagged_known,
        accepted=accepted,
        accepted_total=scen.accepted_total,
        verified_total=scen.verified_total,
    )
    gamma = conf.shape[1]
    limit = gamma if scen.valid is None else np.cumprod(scen.valid, axis=1).sum(axis=1)
    if lengths.shape != (conf.shape[0],) or np.any(lengths < 0) or np.any(lengths > limit):
        raise InputError(
            f"policy {policy.name!r} returned verify lengths {lengths.tolist()} outside "
            f"0..{np.broadcast_to(limit, lengths.shape).tolist()} on scenario {scen.name!r}"
        )
    return lengths


def _options(t: _Tables, realized: bool) -> list[tuple[int, int, float]]:
    """Per-request outcomes to enumerate: ``(draft index, A or 0, probability)``."""
    if not realized:
        return [(d, 0, float(p)) for d, p in enumerate(t.prob)]
    return [
        (d, a, float(t.prob[d] * t.accept[d, a]))
        for d in range(t.prob.size)
        for a in range(t.accept.shape[1])
        if t.accept[d, a] > 0
    ]


def _tables(req: ScenarioRequest, v: int, m: int) -> _Tables:
    gamma = req.draft.shape[0]
    start = v  # row index of "no previous token"
    probs, confs, accepts, outs = [], [], [], []
    for x in itertools.product(range(v), repeat=gamma):
        prev = (start,) + x[:-1]
        p = float(np.prod([req.draft[k, prev[k], x[k]] for k in range(gamma)]))
        if p <= 0.0:
            continue
        rate = [
            min(1.0, req.target[k, prev[k], x[k]] / req.draft[k, prev[k], x[k]])
            for k in range(gamma)
        ]
        accept = np.array(
            [np.prod(rate[:a]) * (1.0 - rate[a]) for a in range(gamma)] + [np.prod(rate)]
        )
        out = np.zeros((gamma + 1, gamma + 1, v**m))
        for a in range(gamma + 1):
            for ell in range(gamma + 1):
                n = min(a, ell)
                before = x[n - 1] if n else start
                if a < ell:  # draft n+1 is verified and rejected: residual
                    nxt = np.maximum(req.target[n, before] - req.draft[n, before], 0.0)
                    total = nxt.sum()
                    nxt = nxt / total if total > 0 else req.target[n, before]
                else:  # every verified draft accepted: bonus token from the target
                    nxt = req.target[n, before]
                out[a, ell] = _sequences(req.target, x[:n], nxt, v, m)
        probs.append(p)
        confs.append([req.conf[k, prev[k]] for k in range(gamma)])
        accepts.append(accept)
        outs.append(out)
    target = _sequences(req.target, (), req.target[0, start], v, m)
    return _Tables(np.array(probs), np.array(confs), np.array(accepts), np.array(outs), target)


def _sequences(target: np.ndarray, emitted: tuple, nxt: np.ndarray, v: int, m: int) -> np.ndarray:
    """Law ``[V^m]`` of the first m tokens: ``emitted``, then a token from ``nxt``, then the
    target's own continuation (first token is the most significant base-V digit)."""
    law = {tuple(emitted[:m]): 1.0}
    if len(emitted) < m:
        law = {tuple(emitted) + (y,): float(nxt[y]) for y in range(v)}
    for pos in range(len(emitted) + 1, m):
        law = {
            seq + (y,): p * float(target[pos, seq[-1], y])
            for seq, p in law.items()
            for y in range(v)
        }
    out = np.zeros(v**m)
    for seq, p in law.items():
        out[int(np.ravel_multi_index(seq, (v,) * m))] += p
    return out


def _first_tokens(law: np.ndarray, v: int, m: int, n_req: int) -> np.ndarray:
    """Joint law of each request's first token ``[V]*R`` from the joint law of m tokens."""
    full = law.reshape((v,) * (m * n_req))
    rest = tuple(r * m + k for r in range(n_req) for k in range(1, m))
    return full.sum(axis=rest) if rest else full


def _label(law: np.ndarray, vocab: tuple[str, ...], m: int, n_req: int) -> dict[str, float]:
    """``{"AB|BA": p}``: per request the m tokens, requests separated by ``|``."""
    flat = law.reshape(-1)
    seqs = ["".join(s) for s in itertools.product(vocab, repeat=m)]
    keys = ["|".join(k) for k in itertools.product(seqs, repeat=n_req)]
    return {k: float(p) for k, p in zip(keys, flat, strict=True)}
