"""Honest baselines (issue #13 item 6): a policy pays only for the drafts it needs. ``none`` pays
no draft pass; ``fixed:k`` a k-token draft where the drafter allows it (autoregressive: k/γ of
the measured pass; parallel, as DSpark's backbone: the whole pass for any k >= 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from policies import make_policy
from profiles import InputError
from profiles.builtin import load_acceptance, load_cost
from profiles.store import cost_from_dict, cost_to_dict
from simulator.request import Request
from simulator.run import simulate
from simulator.server import ServerConfig

CPU = load_cost("builtin:cpu-tiny-additive")
AR = replace(CPU, drafter="autoregressive", draft_positions=7)


@pytest.mark.parametrize(
    ("spec", "needs"),
    [("none", 0), ("fixed:k=1", 1), ("fixed:k=3", 3), ("fixed:k=9", 7), ("dspark", 7),
     ("dspark_lagged", 7), ("twin:of=fixed:k=2", 2)],
)  # fmt: skip
def test_each_policy_says_how_many_drafts_it_needs(spec, needs):
    assert make_policy(spec).draft_tokens(7) == needs


def test_draft_scale_per_drafter_kind():
    assert [CPU.draft_scale(k) for k in (None, 0, 1, 3, 7)] == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert [AR.draft_scale(k) for k in (None, 0, 1, 7, 9)] == [1.0, 0.0, 1 / 7, 1.0, 1.0]
    r = 8
    full = CPU.step_seconds(r, 2 * r)
    assert CPU.step_seconds(r, 2 * r, drafts=0) == pytest.approx(full - CPU.draft_time(r))
    assert AR.step_seconds(r, 2 * r, drafts=1) == pytest.approx(full - CPU.draft_time(r) * 6 / 7)


def _busy(spec, cost):
    reqs = [Request(i, 0.0, 64, 40, "chat") for i in range(8)]
    cfg = ServerConfig(max_concurrency=8, gamma=7)
    acc = load_acceptance("builtin:cpu-tiny-dspark")
    return simulate(reqs, make_policy(spec), cost, acc, cfg, seed=1).recorder.busy_s


def test_the_simulator_charges_none_no_draft_and_fixed_k_its_share():
    """Same policy, same steps: only the draft term differs between drafter kinds."""
    assert _busy("none", CPU) == pytest.approx(_busy("none", AR))  # no draft either way
    assert _busy("fixed:k=2", AR) < _busy("fixed:k=2", CPU)  # 2/7 of the pass vs all of it
    assert _busy("dspark", AR) == pytest.approx(_busy("dspark", CPU))  # γ drafts: the same


def test_the_drafter_kind_round_trips_through_a_profile_and_is_checked():
    doc = cost_to_dict(AR)
    assert doc["draft"]["drafter"] == "autoregressive" and doc["draft"]["positions"] == 7
    back = cost_from_dict(yaml.safe_load(yaml.safe_dump(doc)))
    assert back.drafter == "autoregressive" and back.draft_scale(2) == pytest.approx(2 / 7)
    for bad in ({"drafter": "eagle"}, {"positions": 0}, {"positions": True}):
        broken = {**doc, "draft": {**doc["draft"], **bad}}
        with pytest.raises(InputError, match="drafter|positions"):
            cost_from_dict(broken)
