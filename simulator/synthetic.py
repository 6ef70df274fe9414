"""Synthetic load with ``vllm bench serve`` semantics, and the builtin workloads.

Arrivals: the first request at t = 0, then gamma inter-arrival times of shape ``burstiness`` and
scale ``1 / (request_rate * burstiness)`` (mean ``1 / request_rate``; burstiness 1 is a Poisson
process, < 1 burstier, > 1 more regular); ``request_rate = inf`` sends everything at t = 0. This
is the arrival process of ``vllm bench serve --request-rate R --burstiness B``.

Lengths: a ``Constant`` length (vLLM's ``random`` dataset with range ratio 0), a clamped
``LogNormal``, or an empirical ``QuantileTable`` sampled by inverse CDF with log-linear
interpolation between knots. Prompt and output lengths are drawn independently.

Builtin workloads ``azure-conv-like`` and ``azure-code-like`` are synthetic loads whose numbers
were fitted to the public Azure LLM inference traces 2023 (Patel et al., "Splitwise", ISCA 2024;
Azure/AzurePublicDataset, CC-BY 4.0) by ``bench/fit_builtin_workloads.py``; they are embedded
below so they run without the trace files. ``docs/workloads.md`` states the fit and its quality.

Everything is drawn from explicit generators spawned from one seed, in fixed blocks, so a given
seed gives the same requests whatever the request count (the first N are a prefix).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

BLOCK = 4096  # requests drawn per numpy call (fixed: it is part of what a seed means)


class LengthDist(Protocol):
    """A distribution of token counts."""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` token counts (int64, each >= 1)."""
        ...


@dataclass(frozen=True)
class Constant:
    """Every request has the same length."""

    tokens: int  # tokens per request, >= 1

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True)
class LogNormal:
    """exp(Normal(mu, sigma)), rounded and clamped to ``[lo, hi]``."""

    mu: float  # mean of log(tokens)
    sigma: float  # standard deviation of log(tokens)
    lo: int  # smallest length (the trace's minimum)
    hi: int  # largest length (the trace's maximum)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.lognormal(self.mu, self.sigma, n)
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)


@dataclass(frozen=True)
class QuantileTable:
    """An empirical distribution: lengths at cumulative probabilities, log-linear in between."""

    levels: tuple[float, ...]  # cumulative probabilities, increasing from 0.0 to 1.0
    tokens: tuple[int, ...]  # length at each level (non-decreasing; first = min, last = max)

    def __post_init__(self) -> None:
        if len(self.levels) != len(self.tokens) or len(self.levels) < 2:
            raise ValueError("levels and tokens must be equally long, at least 2")
        if self.levels[0] != 0.0 or self.levels[-1] != 1.0 or np.any(np.diff(self.levels) <= 0):
            raise ValueError("levels must increase from 0.0 to 1.0")
        if self.tokens[0] < 1 or np.any(np.diff(self.tokens) < 0):
            raise ValueError("tokens must be >= 1 and non-decreasing")

    def quantile(self, q: np.ndarray | float) -> np.ndarray:
        """The (unrounded) length at cumulative probability ``q``."""
        return np.exp(np.interp(q, self.levels, np.log(self.tokens)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.rint(self.quantile(rng.random(n))).astype(np.int64)


@dataclass(frozen=True)
class SyntheticLoad:
    """A synthetic workload: arrival process, length distributions, default size and domains."""

    name: str  # "synthetic" or "builtin:<name>"
    request_rate: float  # mean arrivals per second; inf = all at t = 0
    burstiness: float  # gamma shape of inter-arrival times (1 = Poisson)
    num_requests: int  # requests generated
    prompt: LengthDist  # prompt length distribution
    output: LengthDist  # output length distribution
    domain_mix: tuple[tuple[str, float], ...]  # default domains (normalised weights)
    source: str  # where the numbers come from (shown in labels and docs)


@dataclass(frozen=True)
class Streams:
    """Independent generators for each random quantity, spawned from one seed."""

    arrivals: np.random.Generator
    prompts: np.random.Generator
    outputs: np.random.Generator
    domains: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        return cls(*(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)))


def request_rows(load: SyntheticLoad, streams: Streams) -> Iterator[tuple[float, int, int, None]]:
    """Yield ``(arrival_s, prompt_tokens, output_tokens, None)`` for ``load.num_requests``."""
    rate, shape = load.request_rate, load.burstiness
    t, left = 0.0, load.num_requests
    while left > 0:
        if math.isinf(rate):
            gaps = [0.0] * BLOCK
        else:
            gaps = streams.arrivals.gamma(shape, 1.0 / (rate * shape), BLOCK).tolist()
        prompts = load.prompt.sample(streams.prompts, BLOCK).tolist()
        outputs = load.output.sample(streams.outputs, BLOCK).tolist()
        for gap, p, o in zip(gaps[:left], prompts, outputs, strict=False):
            yield t, p, o, None
            t += gap
        left -= BLOCK


class DomainSampler:
    """Draws domain labels from a mix, a block of uniforms at a time (cheap per request)."""

    def __init__(self, mix: tuple[tuple[str, float], ...], rng: np.random.Generator) -> None:
        self._names = [name for name, _ in mix]
        cum = np.cumsum([w for _, w in mix])
        cum[-1] = 1.0  # guard against rounding: every uniform in [0, 1) lands on a name
        self._cum = cum
        self._rng = rng
        self._buf: list[str] = []
        # draw() -> the next label; a single domain needs no random numbers at all
        self.draw = itertools.repeat(self._names[0]).__next__ if len(mix) == 1 else self._next

    def _next(self) -> str:
        if not self._buf:
            idx = np.searchsorted(self._cum, self._rng.random(BLOCK), side="right")
            self._buf = [self._names[i] for i in idx.tolist()[::-1]]
        return self._buf.pop()


# ---- builtin workloads ----------------------------------------------------------------------
# Fitted by `bench/fit_builtin_workloads.py` to ../shared/traces/azure_llm_2023_{conv,code}.csv
# (Azure LLM inference trace 2023, Splitwise, ISCA 2024). Rate = 1 / mean inter-arrival time;
# burstiness = gamma shape by maximum likelihood on inter-arrival times (loc 0); lengths =
# empirical quantile tables at QUANTILE_LEVELS (inverted-CDF quantiles of the trace).
# Re-run `python bench/fit_builtin_workloads.py --check` to verify these against the traces.

QUANTILE_LEVELS = (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
QUANTILE_LEVELS += (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999, 1.0)

DEFAULT_NUM_REQUESTS = 1000  # requests in a builtin or plain synthetic workload (as vLLM)
_AZURE = "Azure LLM inference trace 2023"

FITS: dict[str, dict] = {  # printed by `python bench/fit_builtin_workloads.py`
    "azure-conv-like": {  # azure_llm_2023_conv.csv: 19,366 requests over 3,502 s
        "rate": 5.53,  # req/s
        "burstiness": 0.871,  # gamma shape (inter-arrival CV 1.09)
        "prompt": (2, 29, 181, 207, 372, 387, 396, 403, 414, 703, 984, 1020, 1045, 1071, 1097,
                   1130, 1189, 1315, 1877, 2735, 4083, 4142, 6212, 14050),
        "output": (7, 16, 41, 54, 67, 77, 85, 91, 96, 103, 113, 129, 151, 177, 217, 384, 395,
                   400, 411, 424, 451, 601, 954, 1000),
    },
    "azure-code-like": {  # azure_llm_2023_code.csv: 8,819 requests over 3,436 s
        "rate": 2.566,  # req/s
        "burstiness": 0.2313,  # gamma shape (inter-arrival CV 13.2, from idle gaps up to 217 s)
        "prompt": (3, 17, 75, 147, 232, 385, 578, 770, 938, 1075, 1261, 1469, 1690, 1909, 2164,
                   2433, 2745, 3193, 3923, 5194, 7315, 7436, 7437, 7437),
        "output": (6, 6, 6, 7, 7, 8, 9, 9, 10, 11, 12, 13, 14, 16, 18, 20, 24, 29, 39, 55, 90,
                   252, 831, 1899),
    },
}  # fmt: skip


def _builtin(name: str, domain: str) -> SyntheticLoad:
    fit = FITS[name]
    return SyntheticLoad(
        name="builtin:" + name,
        request_rate=fit["rate"],
        burstiness=fit["burstiness"],
        num_requests=DEFAULT_NUM_REQUESTS,
        prompt=QuantileTable(QUANTILE_LEVELS, fit["prompt"]),
        output=QuantileTable(QUANTILE_LEVELS, fit["output"]),
        domain_mix=((domain, 1.0),),
        source=f"synthetic, fitted to {_AZURE} {name.split('-')[1]}",
    )


BUILTIN = {n: _builtin(n, d) for n, d in (("azure-conv-like", "chat"), ("azure-code-like", "code"))}

SYNTHETIC = SyntheticLoad(
    name="synthetic",
    request_rate=math.inf,  # vllm bench serve's default --request-rate
    burstiness=1.0,
    num_requests=DEFAULT_NUM_REQUESTS,
    prompt=Constant(1024),  # vllm bench serve --dataset-name random defaults
    output=Constant(128),
    domain_mix=(("chat", 1.0),),
    source="vllm bench serve random-dataset defaults (1024 in, 128 out)",
)
