"""Acceptance models: per request and step, a confidence vector and the accepted count A.

Every model exposes the same two calls the simulator needs (DESIGN §2, acceptance model):

- ``start(domain, rng) -> latent``: a new request's hidden state (its difficulty, or its record
  stream), drawn once so that easy and hard requests stay easy and hard across steps;
- ``draw(latent, n, rng) -> (conf [n, γ], accepted [n])``: the next ``n`` decode steps of that
  request: confidences ``c[k]`` (estimates of P(draft k accepted | 1..k-1 accepted)) and the
  number of drafts A that rejection sampling would accept if all γ were verified.

``ParametricAcceptance`` generates both from per-domain, per-position *conditional* acceptance
rates (what vLLM's and the paper's Figure 2 per-position curves report) and a noise model:

    q[k]   = σ(μ[k] + δ + η[k])        true acceptance probability of draft k this step
    Z[k]   ~ Bernoulli(q[k]),  A = number of leading successes
    c[k]   = σ(logit q[k] + ε[k])      the confidence head's estimate

with δ ~ N(0, request_sigma²) per request (difficulty), η ~ N(0, token_sigma²) per draft token
(what makes confidences informative), ε ~ N(0, conf_sigma²) confidence noise. The offsets μ are
solved (Gauss-Hermite quadrature + scipy brentq) so the conditional acceptance at every position
equals the stated rate exactly, correlation included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from profiles.errors import InputError

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)  # probabilists' Hermite
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class ParametricAcceptance:
    """Per-domain conditional acceptance rates plus a confidence-noise model."""

    rates: Mapping[str, Sequence[float]]  # domain -> conditional acceptance at positions 1..γ
    request_sigma: float = 0.6  # logit sd of per-request difficulty (within-request correlation)
    token_sigma: float = 1.2  # logit sd of per-token acceptance probability (informativeness)
    conf_sigma: float = 0.5  # logit sd of confidence-head noise around the true probability
    source: str = "unlabelled"  # provenance, e.g. "read from paper: DSpark Table 1 ..."
    offsets: dict = field(init=False, repr=False, compare=False)  # domain -> μ [γ]
    calibration = None  # no StsCalibration: the modelled confidences are not temperature-scaled

    def __post_init__(self) -> None:
        if not self.rates:
            raise InputError("acceptance model needs at least one domain")
        lengths = {len(v) for v in self.rates.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise InputError("every domain needs the same number (>=1) of per-position rates")
        for name in ("request_sigma", "token_sigma", "conf_sigma"):
            if not (0.0 <= getattr(self, name) < 10.0):
                raise InputError(f"acceptance model: {name} must be in [0, 10)")
        offsets = {}
        for domain, rates in self.rates.items():
            r = np.asarray(rates, dtype=float)
            if not np.isfinite(r).all() or r.min() <= 0.0 or r.max() >= 1.0:
                raise InputError(f"acceptance rates of domain {domain!r} must lie in (0, 1)")
            offsets[domain] = self._solve_offsets(r)
        object.__setattr__(self, "rates", {d: tuple(map(float, v)) for d, v in self.rates.items()})
        object.__setattr__(self, "offsets", offsets)

    @property
    def gamma(self) -> int:
        return len(next(iter(self.rates.values())))

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.rates)

    # -- calibration of the offsets ------------------------------------------------------------
    def _mean_q(self, mu: float) -> np.ndarray:
        """E_η[σ(mu + δ + η)] at each difficulty node δ, shape [nodes]."""
        delta = self.request_sigma * _NODES[:, None]
        eta = self.token_sigma * _NODES[None, :]
        return expit(mu + delta + eta) @ _WEIGHTS

    def _solve_offsets(self, rates: np.ndarray) -> np.ndarray:
        """μ[k] such that the round-weighted P(Z_k | Z_1..Z_{k-1}) equals rates[k].

        Rates measured on an engine are averages over decode rounds, and a hard request takes
        more rounds for the same output; so each difficulty node is weighted by its share of
        rounds, ∝ 1/τ(δ). That weight depends on μ, hence a few fixed-point passes.
        """
        weights = _WEIGHTS
        for _ in range(6):
            prefix = np.ones_like(_NODES)  # P(all earlier accepted | δ) at each node
            mus, tau = [], np.ones_like(_NODES)
            for rate in rates:
                base = float(weights @ prefix)

                def gap(mu: float, prefix=prefix, base=base, rate=rate, w=weights) -> float:
                    return float(w @ (prefix * self._mean_q(mu))) / base - rate

                mu = brentq(gap, -30.0, 30.0, xtol=1e-10)
                mus.append(mu)
                prefix = prefix * self._mean_q(mu)
                tau = tau + prefix
            weights = _WEIGHTS / tau / float(_WEIGHTS @ (1.0 / tau))
        return np.asarray(mus)

    # -- sampling ------------------------------------------------------------------------------
    def start(self, domain: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        mu = self.offsets.get(domain)
        if mu is None:
            raise InputError(
                f"acceptance model has no domain {domain!r} (domains: {', '.join(self.rates)})"
            )
        return mu, float(rng.normal(0.0, self.request_sigma)) if self.request_sigma else 0.0

    def draw(
        self, latent: tuple[np.ndarray, float], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        mu, delta = latent
        gamma = mu.size
        noise = rng.standard_normal((n, gamma, 2))  # [n, γ, (η, ε)]
        logit_q = mu + delta + self.token_sigma * noise[:, :, 0]  # [n, γ]
        conf = expit(logit_q + self.conf_sigma * noise[:, :, 1])  # [n, γ]
        hit = rng.random((n, gamma)) < expit(logit_q)  # [n, γ]
        accepted = np.cumprod(hit, axis=1).sum(axis=1)  # [n] leading successes
        return conf, accepted

    def expected_accepted_len(self, domain: str, k: int | None = None) -> float:
        """Mean tokens per step (bonus included) when verifying ``k`` drafts (default γ)."""
        rates = np.asarray(self.rates[domain][: self.gamma if k is None else k])
        return float(1.0 + np.cumprod(rates).sum())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "parametric",
            "source": self.source,
            "gamma": self.gamma,
            "rates": {d: list(v) for d, v in self.rates.items()},
            "request_sigma": self.request_sigma,
            "token_sigma": self.token_sigma,
            "conf_sigma": self.conf_sigma,
        }
