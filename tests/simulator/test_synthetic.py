"""Synthetic load: vLLM arrival semantics checked statistically, lengths, builtins, determinism.

Statistical tests use fixed seeds (listed in each parametrisation) and α = 0.001: a correct
generator fails one of them with probability about 0.001 per seed, so a failure is a real bug.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from simulator.synthetic import (
    BUILTIN,
    FITS,
    QUANTILE_LEVELS,
    Constant,
    DomainSampler,
    LogNormal,
    QuantileTable,
    Streams,
    SyntheticLoad,
    request_rows,
)

ALPHA = 0.001
SEEDS = [0, 1, 2]
ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT.parent / "shared" / "traces"


def load(rate: float = 10.0, burstiness: float = 1.0, n: int = 20_000) -> SyntheticLoad:
    return SyntheticLoad(
        "synthetic", rate, burstiness, n, Constant(10), Constant(5), (("chat", 1),), ""
    )


def arrivals(rate: float, burstiness: float, seed: int, n: int = 20_000) -> np.ndarray:
    rows = request_rows(load(rate, burstiness, n), Streams.from_seed(seed))
    return np.array([r[0] for r in rows])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gaps_are_gamma_with_vllm_shape_and_scale(seed, burstiness):
    """Inter-arrival times ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)) (KS, α)."""
    rate = 7.0
    t = arrivals(rate, burstiness, seed)
    assert t[0] == 0.0  # vLLM sends the first request at once
    gaps = np.diff(t)
    p = stats.kstest(gaps, stats.gamma(burstiness, scale=1 / (rate * burstiness)).cdf).pvalue
    assert p > ALPHA
    # mean gap = 1/rate: z-test with the gamma's standard deviation 1/(rate*sqrt(shape))
    z = (gaps.mean() - 1 / rate) / (1 / (rate * math.sqrt(burstiness)) / math.sqrt(len(gaps)))
    assert abs(z) < stats.norm.ppf(1 - ALPHA / 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_ks_has_power_to_tell_bursty_from_poisson(seed):
    gaps = np.diff(arrivals(7.0, 0.25, seed))
    assert stats.kstest(gaps, stats.expon(scale=1 / 7.0).cdf).pvalue < ALPHA


def test_infinite_rate_sends_everything_at_zero():
    assert set(arrivals(math.inf, 1.0, 0, n=5000)) == {0.0}


@pytest.mark.parametrize("seed", SEEDS)
def test_quantile_table_reproduces_its_knots(seed):
    table = QuantileTable(QUANTILE_LEVELS, FITS["azure-conv-like"]["prompt"])
    x = table.sample(np.random.default_rng(seed), 200_000)
    for q in (0.1, 0.5, 0.9, 0.99):
        want = table.quantile(q)
        assert np.quantile(x, q) == pytest.approx(want, rel=0.02, abs=1)
    assert x.min() >= table.tokens[0] and x.max() <= table.tokens[-1]


def test_lognormal_is_clamped_and_fixed_is_fixed():
    x = LogNormal(5.0, 2.0, 3, 500).sample(np.random.default_rng(0), 10_000)
    assert x.min() == 3 and x.max() == 500 and x.dtype == np.int64
    assert set(Constant(7).sample(np.random.default_rng(0), 10).tolist()) == {7}


@pytest.mark.parametrize(
    "levels, tokens",
    [((0.0, 1.0), (5,)), ((0.1, 1.0), (1, 2)), ((0.0, 0.6, 0.5, 1.0), (1, 2, 3, 4)),
     ((0.0, 1.0), (0, 2)), ((0.0, 0.5, 1.0), (1, 3, 2))],
)  # fmt: skip
def test_quantile_table_rejects_bad_tables(levels, tokens):
    with pytest.raises(ValueError):
        QuantileTable(levels, tokens)


@pytest.mark.parametrize("seed", SEEDS)
def test_domain_mix_proportions(seed):
    """Chi-square goodness of fit of drawn domains against the mix (α)."""
    mix = (("chat", 0.6), ("code", 0.3), ("math", 0.1))
    draw = DomainSampler(mix, np.random.default_rng(seed)).draw
    names = [draw() for _ in range(30_000)]
    counts = [names.count(n) for n, _ in mix]
    expected = [w * len(names) for _, w in mix]
    assert stats.chisquare(counts, expected).pvalue > ALPHA


def test_zero_weight_domain_is_never_drawn():
    draw = DomainSampler((("a", 0.5), ("never", 0.0), ("b", 0.5)), np.random.default_rng(0)).draw
    assert {draw() for _ in range(20_000)} == {"a", "b"}


@settings(max_examples=30, deadline=None)  # up to 18,000 requests an example
@given(st.integers(0, 2**32), st.integers(1, 9000), st.integers(1, 9000))
def test_same_seed_gives_a_prefix_whatever_the_count(seed, n, m):
    base = BUILTIN["azure-code-like"]
    a = list(request_rows(replace(base, num_requests=n), Streams.from_seed(seed)))
    b = list(request_rows(replace(base, num_requests=m), Streams.from_seed(seed)))
    assert len(a) == n and len(b) == m
    assert a[: min(n, m)] == b[: min(n, m)]


def test_different_seeds_differ():
    base = BUILTIN["azure-conv-like"]
    a = list(request_rows(base, Streams.from_seed(1)))
    b = list(request_rows(base, Streams.from_seed(2)))
    assert a != b


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_lengths_match_fitted_percentiles(name):
    """Drawn lengths reproduce the trace's p50/p90/p99 (embedded constants) within 3%."""
    load = BUILTIN[name]
    for dist, key in ((load.prompt, "prompt"), (load.output, "output")):
        x = dist.sample(np.random.default_rng(0), 200_000)
        for q in (0.5, 0.9, 0.99):
            want = FITS[name][key][QUANTILE_LEVELS.index(q)]
            assert np.quantile(x, q) == pytest.approx(want, rel=0.03, abs=1)


@pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/traces not present")
def test_embedded_constants_are_what_the_fit_script_computes():
    spec = importlib.util.spec_from_file_location(
        "fit", ROOT / "bench" / "fit_builtin_workloads.py"
    )
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    for name, file in fit.NAMES.items():
        assert fit.fit(TRACES / file) == FITS[name]
