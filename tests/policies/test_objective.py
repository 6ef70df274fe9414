"""What the DSpark family plans with: the whole decode step by default (draft + verify + context),
the verify forward with ``objective=verify``, and the long-run marginal rule when a prefill chunk
shares the step."""

from __future__ import annotations

import numpy as np
import pytest

from policies import make_policy, prefix
from policies.base import StepContext
from profiles import CostModel, InputError
from profiles.curve import Curve

# Verify forward: 10 ms flat to B = 8, then +1 ms per token. Drafter: 10 ms for any batch.
# Context: 1 µs per attended KV token.
COST = CostModel.from_sps_table(
    [1, 8, 64],
    [100.0, 100.0, 1.0 / 0.066],
    source="hand",
    draft=Curve((1.0, 64.0), (0.010, 0.010)),
    context=Curve((0.0, 1e6), (0.0, 1.0)),
)
CONF = np.full((4, 7), 0.6)  # survival 0.6, 0.36, 0.216, ...


def test_plan_sps_is_one_over_the_whole_decode_step():
    sps = COST.plan_sps(4, 4, 40, kv_tokens=5000)
    for b in (4, 9, 39):
        step = COST.step_seconds(4, b, kv_tokens=5000)
        assert sps[b - 4] == pytest.approx(1.0 / step)
        assert step == pytest.approx(COST.verify_time(4, b) + 0.010 + 0.005)


def test_step_objective_verifies_more_than_verify_only():
    """The draft and context in the denominator lower the bar (D + C + V)/V: more verified."""
    step = make_policy("dspark")(CONF, cost=COST, kv_tokens=20000).sum()
    verify = make_policy("dspark", objective="verify")(CONF, cost=COST, kv_tokens=20000).sum()
    assert step > verify
    old = np.stack([CONF, CONF])  # [lag, R, γ]: the same confidences two steps ago
    lag_step = make_policy("dspark_lagged")(CONF, cost=COST, lagged=old, kv_tokens=2e4).sum()
    lag_verify = make_policy("dspark_lagged", objective="verify")(CONF, cost=COST, lagged=old)
    assert lag_step > lag_verify.sum()


def test_step_objective_by_hand():
    """R = 4 anchors; B = 4..8 costs 10 ms, then +1 ms per token; + 10 ms draft (no context).
    Ranked survivals: four 0.6, four 0.36, four 0.216, ...
    verify-only: τ·SPS: B=8 (τ 6.4) -> 640; B=9: (6.4+.36)/.011 = 614.5 < 640: stop at 4.
    whole step: B=8: 6.4/.020 = 320; B=9 6.76/.021 = 321.9 (rises), B=12: 7.84/.024 = 326.7,
    B=13 (8.056/.025 = 322.2): stop at 8 (two drafts each)."""
    assert make_policy("dspark", objective="verify")(CONF, cost=COST).tolist() == [1] * 4
    assert make_policy("dspark")(CONF, cost=COST).tolist() == [2] * 4


def test_marginal_rule_with_prefill_uses_the_running_rate():
    """With a prefill chunk the bar is λ·ΔT, λ the running tokens/s: a low λ admits more."""
    ctx = StepContext(cost=COST, kv_tokens=0, prefill_tokens=512, rate=10.0)
    plan = prefix.planner(ctx, "step")
    assert prefix.marginal(ctx, "step") == 10.0
    assert prefix.marginal(ctx, "verify") == 0.0
    # ΔT = 1 ms beyond B = 8, so every survival > 0.01 is admitted at λ = 10 tok/s.
    low = make_policy("dspark")(CONF, cost=COST, prefill_tokens=512, rate=10.0)
    assert low.tolist() == [7] * 4  # 0.6^7 = 0.028 > 0.01
    high = make_policy("dspark")(CONF, cost=COST, prefill_tokens=512, rate=500.0)
    assert high.tolist() == [1] * 4  # 0.36 < 500 · 0.001
    n, _ = prefix.marginal_count(plan, 4, 8, np.array([0.6, 0.5, 0.004]), 10.0, True)
    assert n == 2
    # Without prefill the step's own ratio decides (Algorithm 1), whatever the rate.
    same = make_policy("dspark")(CONF, cost=COST, rate=10.0)
    assert same.tolist() == make_policy("dspark")(CONF, cost=COST).tolist()


@pytest.mark.parametrize("name", ["dspark", "dspark_lagged", "global_sync"])
def test_bad_objective_is_an_input_error(name):
    with pytest.raises(InputError, match="objective"):
        make_policy(name, objective="draft")


def test_baselines_pay_only_the_draft_they_need():
    """``none`` drafts nothing; ``fixed:k`` pays the whole pass of a parallel drafter and k/γ
    of an autoregressive one's."""
    from dataclasses import replace

    from profiles.builtin import load_acceptance
    from simulator.request import Request
    from simulator.run import simulate
    from simulator.server import ServerConfig

    assert make_policy("none").draft_tokens(7) == 0
    assert make_policy("fixed:k=3").draft_tokens(7) == 3
    assert make_policy("dspark").draft_tokens(7) == 7
    assert make_policy("twin:of=fixed:k=2").draft_tokens(7) == 2
    full = COST.step_time(4, 8, 0, 0)
    assert COST.step_time(4, 8, 0, 0, drafts=0) == pytest.approx(full - 0.010)
    assert COST.step_time(4, 8, 0, 0, drafts=1) == pytest.approx(full)
    ar = replace(COST, drafter="autoregressive")
    assert ar.step_time(4, 8, 0, 0, drafts=2) == pytest.approx(full - 0.010 * 5 / 7)
    with pytest.raises(InputError, match="drafter"):
        replace(COST, drafter="tree")
    acc = load_acceptance("paper:qwen3-8b-dspark")
    reqs = [Request(i, 0.0, 10, 30) for i in range(8)]
    cfg = ServerConfig(max_concurrency=8)
    paid = simulate(reqs, make_policy("none"), COST, acc, cfg).recorder.busy_s
    free = replace(COST, draft=Curve((0.0,), (0.0,)))  # the same engine without a drafter
    assert paid == pytest.approx(
        simulate(reqs, make_policy("none"), free, acc, cfg).recorder.busy_s
    )
    one = simulate(reqs, make_policy("fixed:k=1"), COST, acc, cfg).recorder
    assert one.busy_s > simulate(reqs, make_policy("fixed:k=1"), free, acc, cfg).recorder.busy_s


def test_the_running_rate_counts_decode_seconds_only():
    """λ is tokens per second of decode work: a slow prefill does not lower it."""
    from dataclasses import dataclass, replace

    from policies.baseline import Fixed
    from profiles.builtin import load_acceptance
    from simulator.request import Request
    from simulator.run import simulate
    from simulator.server import ServerConfig

    seen = []

    @dataclass(frozen=True)
    class Watch(Fixed):
        def decide(self, conf, valid, ctx):
            seen.append(ctx.rate)
            return super().decide(conf, valid, ctx)

    slow = replace(COST, prefill=Curve((0.0, 1000.0), (1.0, 2.0)))  # ≥ 1 s per prefill chunk
    reqs = [Request(i, 0.1 * i, 40, 30, "chat") for i in range(6)]
    cfg = ServerConfig(max_concurrency=2, gamma=7)
    run = simulate(reqs, Watch(k=1), slow, load_acceptance("paper:qwen3-8b-dspark"), cfg)
    per_busy = run.summary["output_tokens"] / run.recorder.busy_s
    decode = [r for r in seen if r > 0]
    # A decode step costs ≈ 20 ms here and gains ≥ 2 tokens per request: ≥ 100 tok/s of decode,
    # while prefill seconds dominate the busy time (6 s of prefill for 180 tokens).
    assert decode and min(decode[5:]) > 50.0
    assert per_busy < 50.0
