"""Algorithm 1 (``dspark``) and its negative control (``global_sync``): hand-computed cases on a
jagged table where the early stop and the global argmax differ, and a line-by-line
transcription of the paper's pseudocode as the reference for property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies import make_policy, prefix
from profiles.cost import CostModel
from tests.policies.conftest import jagged_additive, jagged_sps

# R=2, γ=3. Survival a = [[0.9, 0.72, 0.36], [0.6, 0.3, 0.27]]; ranked
# (0,1)=0.9, (0,2)=0.72, (1,1)=0.6, (0,3)=0.36, (1,2)=0.3, (1,3)=0.27 (1-based draft index).
CONF = np.array([[0.9, 0.8, 0.5], [0.6, 0.5, 0.9]])
# SPS over B = 2..8 with a cliff between B=4 and B=5, then a gentle slope.
JAGGED = CostModel.from_sps_table(
    [2, 3, 4, 5, 6, 7, 8], [1.0, 0.95, 0.9, 0.7, 0.69, 0.68, 0.67], source="hand"
)
# Θ(n) along the ranking:
#   Θ0 = 2.00·1.0 = 2.0     Θ1 = 2.90·0.95 = 2.755   Θ2 = 3.62·0.90 = 3.258
#   Θ3 = 4.22·0.70 = 2.954  (first drop: Algorithm 1 stops with n = 2)
#   Θ4 = 4.58·0.69 = 3.160  Θ5 = 4.88·0.68 = 3.318   Θ6 = 5.15·0.67 = 3.4505 (global max)


def test_throughput_path_by_hand():
    a_t = prefix.survival_t(CONF)
    rows, vals = prefix.candidates(a_t, 0, 3)
    np.testing.assert_allclose(vals, [0.9, 0.72, 0.6, 0.36, 0.3, 0.27])
    np.testing.assert_array_equal(rows, [0, 0, 1, 0, 1, 1])
    theta = prefix.throughput(JAGGED, 2, 2, 2.0, vals)
    np.testing.assert_allclose(theta, [2.0, 2.755, 3.258, 2.954, 3.1602, 3.3184, 3.4505])


def test_early_stop_and_global_argmax_differ_on_a_jagged_table():
    assert make_policy("dspark")(CONF, cost=JAGGED).tolist() == [2, 0]
    assert make_policy("global_sync")(CONF, cost=JAGGED).tolist() == [3, 3]


@pytest.mark.parametrize(
    "params, early, glob",
    [
        # forced (0,1),(1,1): B0 = 4, τ0 = 3.5, Θ0 = 3.15; then 0.72 → 4.22·0.7 = 2.954: stop.
        # Without the stop: 3.1602, 3.3184, 3.4505 → everything.
        ({"min_verify_len": 1}, [1, 1], [3, 3]),
        # Only first drafts: Θ1 = 2.755, Θ2 = 3.5·0.9 = 3.15.
        ({"max_verify_len": 1}, [1, 1], [1, 1]),
        # Candidates above 0.65: 0.9, 0.72 → Θ2 = 3.258.
        ({"survival_eps": 0.65}, [2, 0], [2, 0]),
        # Window 1..2 after one forced draft: 0.72, 0.3 → 4.22·0.7 = 2.954 < 3.15: stop.
        ({"min_verify_len": 1, "max_verify_len": 2}, [1, 1], [1, 1]),
    ],
)
def test_parameters_by_hand(params, early, glob):
    assert make_policy("dspark", **params)(CONF, cost=JAGGED).tolist() == early
    assert make_policy("global_sync", **params)(CONF, cost=JAGGED).tolist() == glob


def test_valid_mask_shortens_the_window():
    valid = np.array([[True, False, True], [True, True, True]])  # request 0 has one draft
    # Ranking 0.9, 0.6, 0.3, 0.27: Θ1 = 2.755, Θ2 = 3.5·0.9 = 3.15, Θ3 = 3.8·0.7 = 2.66 stop.
    assert make_policy("dspark")(CONF, cost=JAGGED, valid=valid).tolist() == [1, 1]


def test_additive_form_by_hand():
    # The same step times as JAGGED in additive form (bias 0, alpha 0) decide the same...
    same = CostModel.additive(
        0.0, [1, 100], [0.0, 0.0], [2, 3, 4, 5, 6, 7, 8], [1 / s for s in JAGGED_SPS]
    )
    assert make_policy("dspark")(CONF, cost=same).tolist() == [2, 0]
    assert make_policy("global_sync")(CONF, cost=same).tolist() == [3, 3]
    # ...and a large per-request term alpha(bs) makes extra tokens relatively cheap:
    # T = 10 + t(B), so Θ rises with every candidate and Algorithm 1 admits them all.
    heavy = CostModel.additive(
        0.0, [1, 100], [10.0, 10.0], [2, 3, 4, 5, 6, 7, 8], [1 / s for s in JAGGED_SPS]
    )
    assert make_policy("dspark")(CONF, cost=heavy).tolist() == [3, 3]


JAGGED_SPS = [1.0, 0.95, 0.9, 0.7, 0.69, 0.68, 0.67]


def test_ties_keep_prefixes_and_break_by_request():
    # c = 1 makes a[r, j+1] == a[r, j]; the tie-break must still rank (r, j) first.
    conf = np.array([[0.8, 1.0, 1.0], [0.8, 1.0, 0.5]])
    a_t = prefix.survival_t(conf)
    rows, vals = prefix.candidates(a_t, 0, 3)
    np.testing.assert_array_equal(rows, [0, 1, 0, 1, 0, 1])  # (0,1),(1,1),(0,2),(1,2),(0,3),(1,3)
    flat = np.flatnonzero(a_t.reshape(-1) > 0)
    order = prefix.descending(a_t.reshape(-1)[flat])
    positions = flat[order] // 2
    assert positions.tolist() == [0, 0, 1, 1, 2, 2]


def test_paper_appendix_a_decisions():
    cost = CostModel.from_sps_table([1, 2, 3], [1.0, 0.5, 0.45])
    high, low = np.array([[0.8, 0.9]]), np.array([[0.8, 0.0]])
    assert make_policy("dspark")(high, cost=cost).tolist() == [0]
    assert make_policy("dspark")(low, cost=cost).tolist() == [0]
    assert make_policy("global_sync")(high, cost=cost).tolist() == [2]  # Θ2 = 1.134
    assert make_policy("global_sync")(low, cost=cost).tolist() == [0]


# -- the paper's pseudocode, transcribed, as the reference -----------------------------------


def algorithm_1(conf, cost, early_stop=True, min_len=0, max_len=0, eps=0.0, valid=None):
    """Algorithm 1 line by line (plus min/max/eps/valid), Python loops, no vectorisation."""
    r, gamma = conf.shape
    top = gamma if max_len == 0 else min(max_len, gamma)
    hi = [top] * r if valid is None else [min(top, int(np.cumprod(v).sum())) for v in valid]
    a = np.cumprod(conf, axis=1)
    ell = [min(min_len, hi[q]) for q in range(r)]
    b = r + sum(ell)
    tau = r + sum(a[q, :j].sum() for q, j in enumerate(ell))
    cands = [(-a[q, j], j, q) for q in range(r) for j in range(ell[q], hi[q]) if a[q, j] > eps]
    best, chosen = tau * cost.sps(r, np.array([b]))[0], list(ell)
    for _, j, q in sorted(cands):
        ell[q] = j + 1
        b += 1
        tau += a[q, j]
        theta = tau * cost.sps(r, np.array([b]))[0]
        if theta > best:
            best, chosen = theta, list(ell)
        elif early_stop:
            break
    return chosen


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    conf=st.tuples(st.integers(1, 12), st.integers(1, 7)).flatmap(
        lambda shape: arrays(
            np.float64,
            shape,
            elements=st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]) | st.floats(0.0, 1.0),
        )
    ),
    form=st.sampled_from(["sps", "additive", "flat", "rising"]),
    min_len=st.integers(0, 2),
    max_len=st.integers(0, 5),
    eps=st.sampled_from([0.0, 0.1]),
    masked=st.booleans(),
)
def test_vectorised_equals_the_pseudocode(conf, form, min_len, max_len, eps, masked):
    if max_len and min_len > max_len:
        min_len = max_len
    cost = {
        "sps": jagged_sps,
        "additive": jagged_additive,
        "flat": lambda: CostModel.from_sps_table([1, 100], [5.0, 5.0]),  # Θ rises throughout
        "rising": lambda: CostModel.from_sps_table([1, 4, 9, 100], [5.0, 5.2, 4.0, 1.0]),
    }[form]()
    r, gamma = conf.shape
    valid = (np.arange(gamma)[None, :] < (np.arange(r) % 6)[:, None]) if masked else None
    params = {"min_verify_len": min_len, "max_verify_len": max_len, "survival_eps": eps}
    for name, early in (("dspark", True), ("global_sync", False)):
        got = make_policy(name, **params)(conf, cost=cost, valid=valid).tolist()
        want = algorithm_1(conf, cost, early, min_len, max_len, eps, valid)
        # The pseudocode's strict ">" also ends global_sync on the first of equal maxima.
        assert got == want, (name, got, want)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    vals=arrays(
        np.float64,
        st.integers(0, 2000),
        elements=st.sampled_from([0.0, 1e-9, 0.25, 0.5, 1.0]) | st.floats(0.0, 1.0),
    )
)
def test_two_pass_sort_is_exactly_a_stable_float_sort(vals):
    np.testing.assert_array_equal(prefix.descending(vals), np.argsort(-vals, kind="stable"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    vals=arrays(np.float64, st.integers(1, 300), elements=st.floats(1e-6, 1.0)),
    steps=arrays(np.float64, 301, elements=st.floats(0.5, 1.0)),
    tau0=st.floats(1.0, 2000.0),
)
def test_rises_throughout_is_a_sound_certificate(vals, steps, tau0):
    """When the certificate holds, the exact path over the ranked values never drops."""
    sps = 100.0 * np.cumprod(steps[: vals.size + 1] ** 1e-4)  # gently falling SPS
    if prefix.rises_throughout(vals, sps, tau0):
        ranked = np.sort(vals)[::-1]
        tau = np.cumsum(np.concatenate([[tau0], ranked]))
        assert prefix.first_drop(tau * sps) == vals.size


def test_sps_range_equals_sps():
    for cost in (jagged_sps(), jagged_additive()):
        for r, lo, hi in [(5, 3, 100), (300, 0, 70000), (64, 64, 129)]:
            np.testing.assert_array_equal(
                prefix.sps_range(cost, r, lo, hi), cost.sps(r, np.arange(lo, hi))
            )


@pytest.mark.parametrize("n", [1023, 1024, 5000])
def test_two_pass_sort_on_large_pools_with_ties(n):
    rng = np.random.default_rng(n)
    vals = rng.choice(np.concatenate([rng.random(n // 3), [0.0, 1.0, 0.5, 1e-9]]), n)
    np.testing.assert_array_equal(prefix.descending(vals), np.argsort(-vals, kind="stable"))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31),
    r=st.integers(30, 220),
    gamma=st.integers(3, 8),
    form=st.sampled_from(["sps", "flat", "late-cliff", "additive"]),
    min_len=st.integers(0, 1),
)
def test_large_pools_equal_the_pseudocode(seed, r, gamma, form, min_len):
    """Pools beyond one chunk: certificate, multi-chunk walk and two-pass sort all exact."""
    rng = np.random.default_rng(seed)
    conf = np.clip(rng.beta(6, 1.5, (r, 1)) * 0.97 ** np.arange(gamma), 0, 1)
    conf[rng.random((r, gamma)) < 0.05] = 1.0  # ties within rows
    cost = {
        "sps": jagged_sps,
        "flat": lambda: CostModel.from_sps_table([1, 5000], [5.0, 5.0]),
        "late-cliff": lambda: CostModel.from_sps_table(
            [1, r + 300, r + 301, 5000], [5.0, 4.9, 2.0, 1.0]
        ),
        "additive": jagged_additive,
    }[form]()
    for name, early in (("dspark", True), ("global_sync", False)):
        got = make_policy(name, min_verify_len=min_len)(conf, cost=cost).tolist()
        assert got == algorithm_1(conf, cost, early, min_len), name
