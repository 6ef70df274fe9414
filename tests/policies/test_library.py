"""Hand-computed cases for the rest of the library: dspark_lagged, threshold, batch_table,
goodput, tetris, dcut, clairvoyant — and their parameter validation."""

from __future__ import annotations

import numpy as np
import pytest

from policies import make_policy
from profiles.cost import CostModel
from profiles.errors import InputError

CONF = np.array([[0.9, 0.8, 0.5], [0.6, 0.5, 0.9]])  # survival [[.9,.72,.36],[.6,.3,.27]]
STEEP = CostModel.from_sps_table(
    [2, 3, 4, 5, 6, 7, 8], [1.0, 0.95, 0.9, 0.5, 0.45, 0.42, 0.4], source="hand"
)


# -- dspark_lagged --------------------------------------------------------------------------
# Current confidences: survival r0 = (.5, .45, .405), r1 = (.8, .56, .056).
NOW = np.array([[0.5, 0.9, 0.9], [0.8, 0.7, 0.1]])
# Two steps ago request 0 drafted (.9, .8, .5) and request 1 was not running;
# one step ago both drafted poorly.
LAGGED = np.array([[[0.9, 0.8, 0.5], [0.1, 0.1, 0.1]], [[0.1, 0.5, 0.5], [0.3, 0.2, 0.5]]])
KNOWN = np.array([[True, False], [True, True]])


def test_lagged_capacity_from_two_steps_ago():
    # lag 2: r1 is stale → survival 1,1,1; r0 → .9,.72,.36. Sorted 1,1,1,.9,.72,.36:
    # Θ0 = 2, Θ1 = 3·.95 = 2.85, Θ2 = 4·.9 = 3.6, Θ3 = 5·.5 = 2.5, Θ4 = 5.9·.45 = 2.655,
    # Θ5 = 6.62·.42 = 2.78, Θ6 = 6.98·.4 = 2.792 → K = 2; the top 2 now are (1,1), (1,2).
    policy = make_policy("dspark_lagged")
    ctx = dict(cost=STEEP, lagged=LAGGED, lagged_known=KNOWN)
    assert policy.capacity(NOW, None, _ctx(**ctx)) == 2
    assert policy(NOW, **ctx).tolist() == [0, 2]


def test_lagged_capacity_from_one_step_ago():
    # lag 1: survivals r0 .1,.05,.025 and r1 .3,.06,.03; sorted .3,.1,.06,...:
    # Θ1 = 2.3·.95 = 2.185 > Θ2 = 2.4·.9 = 2.16, later ones lower → K = 1: only (1,1).
    policy = make_policy("dspark_lagged", lag=1)
    assert policy(NOW, cost=STEEP, lagged=LAGGED, lagged_known=KNOWN).tolist() == [0, 1]


def test_lagged_without_history_treats_everyone_as_stale():
    # All survival 1: Θ = (2+n)·SPS(2+n) = 2, 2.85, 3.6, 2.5, 2.7, 2.94, 3.2 → K = 2.
    assert make_policy("dspark_lagged")(NOW, cost=STEEP).tolist() == [0, 2]
    # Only one lagged row: not enough for lag 2, stale again; enough for lag 1.
    one = LAGGED[1:]
    assert make_policy("dspark_lagged")(NOW, cost=STEEP, lagged=one).tolist() == [0, 2]
    assert make_policy("dspark_lagged", lag=1)(NOW, cost=STEEP, lagged=one).tolist() == [0, 1]


def test_lagged_min_and_max_len():
    policy = make_policy("dspark_lagged", min_verify_len=1, max_verify_len=2)
    # Forced one draft each; capacity over window j=2 only: r0 (.72), r1 stale (1).
    # B0 = 4, τ0 = 2 + .9 + 1 = 3.9: Θ0 = 3.51, Θ1 = 4.9·.5 = 2.45, Θ2 = 5.62·.45 → K = 0.
    out = policy(NOW, cost=STEEP, lagged=LAGGED, lagged_known=KNOWN)
    assert out.tolist() == [1, 1]


def test_lagged_validation():
    with pytest.raises(InputError, match="lag must be 1 or 2"):
        make_policy("dspark_lagged", lag=3)
    with pytest.raises(InputError, match="lagged confidences must be"):
        make_policy("dspark_lagged")(NOW, cost=STEEP, lagged=np.ones((2, 3, 3)))


def _ctx(**kwargs):
    from policies import StepContext

    return StepContext(**kwargs)


# -- threshold, batch_table, tetris, dcut, clairvoyant ------------------------------------------


def test_threshold():
    conf = np.array([[0.9, 0.4, 0.9], [0.9, 0.8, 0.9], [0.3, 0.9, 0.9]])
    assert make_policy("threshold")(conf).tolist() == [1, 3, 0]
    # survival .9,.72,.648 / .9,.36,.324 / .3,...: t = 0.7 → 2, 1, 0
    assert make_policy("threshold:t=0.7,on=survival")(conf).tolist() == [1, 2, 0]
    valid = np.array([[True] * 3, [True, False, True], [True] * 3])
    assert make_policy("threshold")(conf, valid=valid).tolist() == [1, 1, 0]
    with pytest.raises(InputError, match="on must be"):
        make_policy("threshold", on="entropy")


def test_batch_table():
    policy = make_policy("batch_table:sizes=2;4,ks=3;1,default=0")
    assert policy(np.full((2, 5), 0.5)).tolist() == [3, 3]
    assert policy(np.full((3, 5), 0.5)).tolist() == [1, 1, 1]
    assert policy(np.full((5, 5), 0.5)).tolist() == [0] * 5
    assert policy(np.full((2, 2), 0.5)).tolist() == [2, 2]  # clamped to γ
    with pytest.raises(InputError, match="strictly increasing"):
        make_policy("batch_table:sizes=4;2,ks=1;1")
    with pytest.raises(InputError, match="differ in length"):
        make_policy("batch_table:sizes=4,ks=1;1")


def test_tetris_and_dcut():
    assert make_policy("tetris", capacity=3)(CONF).tolist() == [2, 1]  # .9, .72, .6
    assert make_policy("tetris", capacity=0)(CONF).tolist() == [0, 0]
    assert make_policy("tetris", capacity=99, max_verify_len=2)(CONF).tolist() == [2, 2]
    # dcut: first drafts always; of the R·(γ-1) = 4 others keep ⌊0.5·4⌋ = 2: .72, .36.
    assert make_policy("dcut")(CONF).tolist() == [3, 1]
    assert make_policy("dcut", fraction=0.0)(CONF).tolist() == [1, 1]
    assert make_policy("dcut", fraction=1.0)(CONF).tolist() == [3, 3]


def test_clairvoyant_verifies_exactly_the_accepted():
    policy = make_policy("clairvoyant")
    assert policy(CONF, accepted=[2, 0]).tolist() == [2, 0]
    valid = np.array([[True, False, True], [True, True, True]])
    assert policy(CONF, accepted=[3, 3], valid=valid).tolist() == [1, 3]
    with pytest.raises(InputError, match="realized"):
        policy(CONF)


# -- goodput ----------------------------------------------------------------------------------


def test_goodput_follows_the_history():
    flat = CostModel.from_sps_table([1, 100], [10.0, 10.0])  # extra tokens are free
    steep = CostModel.from_sps_table([2, 3], [1.0, 0.5])  # the first extra token halves SPS
    policy = make_policy("goodput")
    assert policy(CONF, cost=flat).tolist() == [3, 3]
    assert policy(CONF, cost=steep).tolist() == [0, 0]
    # α = (acc + 4·0.7)/(ver + 4): r0 (36+2.8)/44 = 0.88, r1 (0+2.8)/44 = 0.064.
    # Ranked .88, .77, .68, .064: Θ0 = 2, Θ1 = 2.88·.9 = 2.592, Θ2 = 3.65·.85 = 3.10,
    # Θ3 = 4.33·.8 = 3.46, Θ4 = 4.40·.75 = 3.30 → r0 gets all three, r1 none.
    mid = CostModel.from_sps_table([2, 3, 4, 5, 6], [1.0, 0.9, 0.85, 0.8, 0.75])
    out = policy(CONF, cost=mid, accepted_total=[36, 0], verified_total=[40, 40])
    assert out.tolist() == [3, 0]
    assert np.allclose(
        policy.rates(2, _ctx(accepted_total=[36, 0], verified_total=[40, 40])),
        [38.8 / 44, 2.8 / 44],
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dspark:min_verify_len=-1", ">= 0"),
        ("dspark:min_verify_len=3,max_verify_len=2", "exceeds"),
        ("dspark:survival_eps=1.5", "survival_eps"),
        ("goodput:prior_rate=2", "prior_rate"),
        ("goodput:prior_weight=0", "prior_weight"),
        ("tetris:capacity=-1", ">= 0"),
        ("dcut:fraction=2", "fraction"),
        ("threshold:t=-1", "t must"),
        ("fixed:k=-1", "k must"),
    ],
)
def test_bad_parameters_are_input_errors(spec, message):
    with pytest.raises(InputError, match=message):
        make_policy(spec)
