"""Conformance suite: every registered policy — builtins and plugins — obeys the interface.

Like scikit-learn's ``check_estimator``: parametrised over ``available()`` (which includes the
demo plugin that tests/policies/conftest.py puts on the entry-point path), each property is a
hypothesis test with ``derandomize=True`` (fixed seed) and the settings stated below.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies import available, make_policy, valid_lengths
from policies.audit import audit_many
from profiles.errors import InputError
from tests.policies.conftest import jagged_additive, jagged_sps

NAMES = list(available())
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # fixed seed: the same examples on every run
    suppress_health_check=[HealthCheck.too_slow],
)
COSTS = [jagged_sps(), jagged_additive()]
PROBS = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, allow_nan=False, width=64))


def test_the_plugin_is_part_of_the_suite():
    assert "demo_plugin" in NAMES


@st.composite
def step_inputs(draw, max_r: int = 10, max_gamma: int = 8) -> dict:
    """Everything a policy may be called with, ties and extreme values included."""
    r = draw(st.integers(0, max_r))
    gamma = draw(st.integers(1, max_gamma))
    conf = draw(arrays(np.float64, (r, gamma), elements=PROBS))
    kwargs = {
        "cost": COSTS[draw(st.integers(0, 1))],
        "lagged": draw(arrays(np.float64, (2, r, gamma), elements=PROBS)),
        "lagged_known": draw(arrays(np.bool_, (2, r))),
        "accepted": draw(arrays(np.int64, (r,), elements=st.integers(0, gamma))),
        "accepted_total": draw(arrays(np.int64, (r,), elements=st.integers(0, 50))),
        "step": draw(st.integers(0, 1000)),
    }
    kwargs["verified_total"] = kwargs["accepted_total"] + draw(
        arrays(np.int64, (r,), elements=st.integers(0, 50))
    )
    if draw(st.booleans()):
        kwargs["valid"] = draw(arrays(np.bool_, (r, gamma)))
    return {"conf": conf, **kwargs}


def random_inputs(seed: int, r: int, gamma: int) -> dict:
    """Continuous random inputs (no ties between requests almost surely), full history."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(4, 1.5, size=(r, gamma))
    acc = rng.permutation(10 * r + 10)[:r]
    return {
        "conf": conf,
        "cost": COSTS[seed % 2],
        "valid": rng.random((r, gamma)) < 0.9 if seed % 3 == 0 else None,
        "lagged": rng.beta(4, 1.5, size=(2, r, gamma)),
        "lagged_known": rng.random((2, r)) < 0.7,
        "accepted": rng.integers(0, gamma + 1, r),
        "accepted_total": acc,
        "verified_total": acc + rng.permutation(10 * r + 10)[:r],
    }


def permuted(inputs: dict, perm: np.ndarray) -> dict:
    out = dict(inputs)
    for key in ("conf", "accepted", "accepted_total", "verified_total", "valid"):
        if out.get(key) is not None:
            out[key] = out[key][perm]
    out["lagged"] = inputs["lagged"][:, perm]
    out["lagged_known"] = inputs["lagged_known"][:, perm]
    return out


def call(name: str, inputs: dict) -> np.ndarray:
    inputs = dict(inputs)
    conf = inputs.pop("conf")
    return make_policy(name)(conf, **inputs)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(inputs=step_inputs())
def test_shape_dtype_and_range(name, inputs):
    out = call(name, inputs)
    r, gamma = inputs["conf"].shape
    assert out.shape == (r,) and out.dtype == np.int64
    assert np.all(out >= 0) and np.all(out <= gamma)
    assert np.all(out <= valid_lengths(inputs.get("valid"), r, gamma))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(inputs=step_inputs())
def test_deterministic_and_inputs_not_mutated(name, inputs):
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    first = call(name, inputs)
    second = call(name, inputs)
    np.testing.assert_array_equal(first, second)
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(inputs[key], value, err_msg=f"{key} was mutated")


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    r=st.integers(1, 24),
    gamma=st.integers(1, 8),
    data=st.data(),
)
def test_permuting_requests_permutes_the_output(name, seed, r, gamma, data):
    """Holds whenever no two requests tie (ties are broken by request index, by design)."""
    inputs = random_inputs(seed, r, gamma)
    perm = np.array(data.draw(st.permutations(range(r))))
    np.testing.assert_array_equal(call(name, permuted(inputs, perm)), call(name, inputs)[perm])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r, gamma", [(0, 1), (0, 5), (3, 0)])
def test_empty_batch_or_no_drafts(name, r, gamma):
    out = call(name, random_inputs(0, r, gamma))
    assert out.shape == (r,) and out.dtype == np.int64 and not out.any()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "bad, message",
    [(np.nan, "NaN"), (np.inf, "NaN or infinity"), (1.5, "[0, 1]"), (-0.1, "[0, 1]")],
)
def test_bad_confidences_rejected(name, bad, message):
    inputs = random_inputs(1, 3, 4)
    inputs["conf"][1, 2] = bad
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(name, inputs)
    inputs = random_inputs(1, 3, 4)
    inputs["lagged"][0, 1, 2] = bad
    with pytest.raises(InputError, match="lagged"):
        call(name, inputs)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_rejected(name):
    with pytest.raises(InputError, match="2-D"):
        call(name, {**random_inputs(1, 3, 4), "conf": np.full(4, 0.5)})
    with pytest.raises(InputError, match="valid mask"):
        call(name, {**random_inputs(1, 3, 4), "valid": np.ones((3, 5), bool)})


@pytest.mark.parametrize("name", NAMES)
def test_declarations_and_spec_round_trip(name):
    policy = make_policy(name)
    assert policy.summary and "\n" not in policy.summary
    assert policy.lossless in (True, False, None)
    if policy.lossless:
        assert "realized" not in policy.reads, "a lossless policy cannot read realized outcomes"
    assert make_policy(policy.spec) == policy


@pytest.mark.parametrize("name", NAMES)
def test_cost_forms(name):
    """Both cost forms work; a cost-aware policy without a cost is refused clearly."""
    inputs = random_inputs(2, 16, 7)
    for cost in COSTS:
        assert call(name, {**inputs, "cost": cost}).shape == (16,)
    if "cost" in make_policy(name).reads:
        with pytest.raises(InputError, match="cost model"):
            call(name, {**inputs, "cost": None})


@pytest.mark.parametrize("name", NAMES)
def test_auditor_agrees_with_the_lossless_claim(name):
    """A policy that claims to be lossless passes every builtin scenario of the auditor."""
    policy = make_policy(name)
    results = audit_many(policy)
    if policy.lossless:
        assert all(r.lossless for r in results), [(r.scenario, r.total_variation) for r in results]
    elif policy.lossless is False:
        assert not all(r.lossless for r in results), "the scenarios do not expose it"
