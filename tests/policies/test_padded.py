"""Planning with the true step cost on an engine that pads to the longest request (issue #13):
the ranked path is priced as the simulator charges it, and the capped capacity of
``dspark_lagged`` plans at least as well as every static ``fixed:k`` on the same step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import make_policy, padded, prefix
from policies.base import StepContext
from profiles.builtin import load_cost

CPU = load_cost("builtin:cpu-tiny-additive")  # measured; pads to the longest request
GAMMA = 7


def _expected_value(cost, ell, conf, kv):
    """Planned tokens per second of one step: expected τ (anchors + survival of the verified
    drafts) over the true step cost."""
    r = ell.size
    a = np.cumprod(conf, axis=1)
    tau = r + sum(float(a[i, :k].sum()) for i, k in enumerate(ell))
    t = cost.step_seconds(r, r + int(ell.sum()), kv_tokens=kv, longest=int(ell.max()) + 1)
    return tau / t


def test_the_cpu_default_prices_the_longest_request_and_h100_does_not():
    assert padded.prices_longest(CPU)
    assert not padded.prices_longest(load_cost("builtin:h100-8b"))
    flat = replace(CPU, padding_s=0.0, ragged_s=0.0, context_queries=0.0)
    assert not padded.prices_longest(flat)


def test_path_seconds_is_what_the_simulator_charges():
    r, b0, kv = 5, 7, 5 * 600
    longest = np.array([3, 3, 4, 4, 6, 8])
    got = padded.path_seconds(CPU, r, b0, longest, kv)
    for i, lg in enumerate(longest):
        want = CPU.step_seconds(r, b0 + i, kv_tokens=kv, longest=int(lg))
        assert got[i] == pytest.approx(want, rel=1e-12)


def test_ranked_longest_follows_the_deepest_admitted_draft():
    # R = 2, γ = 3, position-major flat indices j·R + r; ranked: (0,0) (1,0) (0,1) (0,2) (1,1)
    order = np.array([0, 1, 2, 4, 3])
    assert padded.ranked_longest(order, None, 2, 0).tolist() == [1, 2, 2, 3, 4, 4]
    assert padded.ranked_longest(order, None, 2, 2).tolist() == [3, 3, 3, 3, 4, 4]


def test_unknown_stale_rows_take_the_known_rows_mean():
    h = np.array([[0.8, 0.4, 0.1], [0.6, 0.2, 0.1]])  # [γ=2, R=3]
    out = padded.fill_unknown(h.copy(), np.array([True, True, False]))
    assert out[:, 2].tolist() == pytest.approx([0.6, 0.4])
    assert (padded.fill_unknown(h.copy(), np.zeros(3, dtype=bool)) == 1.0).all()


@settings(max_examples=30, deadline=None)
@given(r=st.integers(1, 32), seed=st.integers(0, 2**16), per_request=st.integers(128, 1000))
def test_capped_capacity_plans_at_least_every_static_k(r, seed, per_request):
    """With the stale confidences equal to the current ones, the capacity's step is planned
    at least as well as verifying k drafts of every request, for every k (each cap's ranked
    path ends at the even allocation)."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.05, 1.0, size=(r, GAMMA))
    kv = r * per_request
    ell = make_policy("dspark_lagged")(conf, cost=CPU, lagged=np.stack([conf, conf]), kv_tokens=kv)
    ours = _expected_value(CPU, ell, conf, kv)
    for k in range(GAMMA + 1):
        even = np.full(r, k)
        assert ours >= _expected_value(CPU, even, conf, kv) * (1 - 1e-9), k


@settings(max_examples=30, deadline=None)
@given(r=st.integers(1, 32), seed=st.integers(0, 2**16), per_request=st.integers(128, 1000))
def test_dspark_level_by_level_plans_at_least_none_and_mtp1(r, seed, per_request):
    """Each opened level raised Θ, and a whole level is one of its prefixes: dspark's planned
    step is at least verifying nothing and at least fixed:k=1 (level 1 filled)."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.05, 1.0, size=(r, GAMMA))
    kv = r * per_request
    ell = make_policy("dspark")(conf, cost=CPU, kv_tokens=kv)
    ours = _expected_value(CPU, ell, conf, kv)
    for k in (0, 1):
        assert ours >= _expected_value(CPU, np.full(r, k), conf, kv) * (1 - 1e-9), k


def test_dspark_opens_a_level_the_candidate_by_candidate_stop_would_not():
    """The first draft of a level pays the batch's padding; the rest of the level repays it."""
    r = 32  # on the 2026-12-03 profile (16 requests opened a level on the 2026-11-24 one)
    conf = np.full((r, GAMMA), 0.8)
    kv = r * 700
    ell = make_policy("dspark")(conf, cost=CPU, kv_tokens=kv)
    ctx = StepContext(cost=CPU, kv_tokens=kv)
    plan = prefix.planner(ctx, "step")
    a_t = prefix.survival_t(conf)
    flat, vals = prefix.pool(a_t, 0, GAMMA)
    n, _, _, _ = padded.ranked_count(plan, r, r, float(r), vals, flat, 0, early_stop=True)
    assert n == 0  # one candidate at a time: the jump to a second query token never pays
    assert ell.min() >= 1 and len(set(ell.tolist())) == 1  # whole levels: no ragged batch
