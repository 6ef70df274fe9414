"""The exact auditor: the paper's counterexample, exactness checks, and deliberately lossy
policies it must catch (the scenario set must discriminate, not just pass everything)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from policies import Policy, StepContext, make_policy, prefix, valid_lengths
from policies.audit import TOLERANCE, audit, audit_many
from policies.scenarios import SCENARIOS, request, scenario
from profiles.errors import InputError


def test_paper_appendix_a_global_sync_outputs_085_015():
    result = audit(make_policy("global_sync"), "paper-appendix-a")
    assert not result.lossless
    assert result.output_distribution == pytest.approx({"A": 0.85, "B": 0.15}, abs=1e-12)
    assert result.target_distribution == pytest.approx({"A": 0.7, "B": 0.3}, abs=1e-12)
    assert result.total_variation == pytest.approx(0.15, abs=1e-12)


def test_paper_appendix_a_dspark_is_exact():
    result = audit(make_policy("dspark"), "paper-appendix-a")
    assert result.lossless and result.total_variation < TOLERANCE
    assert result.output_distribution == pytest.approx(result.target_distribution, abs=1e-12)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_catches_global_sync(name):
    assert audit(make_policy("global_sync"), name).total_variation > 0.01


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_laws_are_distributions(name):
    for spec in ("none", "dspark", "global_sync", "clairvoyant"):
        result = audit(make_policy(spec), name)
        for law in (result.output_distribution, result.output_sequences):
            assert all(p >= -1e-15 for p in law.values())
            assert sum(law.values()) == pytest.approx(1.0, abs=1e-12)


def test_scenarios_exercise_the_policies():
    """dspark and dspark_lagged verify something somewhere (not a vacuous pass)."""
    for spec in ("dspark", "dspark_lagged", "dspark_lagged:lag=1", "goodput", "tetris:capacity=2"):
        verified = [sum(r.mean_verified) for r in audit_many(make_policy(spec))]
        assert max(verified) > 0.5, spec


@pytest.mark.parametrize(
    "spec",
    [
        "dspark:min_verify_len=1",
        "dspark:max_verify_len=1,survival_eps=0.3",
        "dspark_lagged:lag=1",
        "dspark_lagged:min_verify_len=1,survival_eps=0.3",
        "threshold:t=0.7,on=survival",
        "tetris:capacity=1",
        "dcut:fraction=0.3",
        "goodput:prior_rate=0.95",
        "batch_table:sizes=1;2,ks=3;1",
    ],
)
def test_parameter_variants_stay_lossless(spec):
    assert all(r.lossless for r in audit_many(make_policy(spec)))


# -- deliberately lossy policies ---------------------------------------------------------------


@dataclass(frozen=True)
class LookAhead(Policy):
    """Verify draft j only if the *next* confidence c[j+1] is high: peeks at x[j]."""

    name = "test_lookahead"
    lossless = True  # a false claim the auditor must refute

    def decide(self, conf, valid, ctx):
        nxt = np.concatenate([conf[:, 1:], np.ones((conf.shape[0], 1))], axis=1)
        out = np.cumprod(nxt >= 0.5, axis=1).sum(axis=1)
        return np.minimum(out, valid_lengths(valid, *conf.shape))


@dataclass(frozen=True)
class HalfConfident(Policy):
    """⌈n/2⌉ of the n leading drafts with c ≥ 0.6: draft 2's admission depends on c[3]."""

    name = "test_half"

    def decide(self, conf, valid, ctx):
        n = np.cumprod(conf >= 0.6, axis=1).sum(axis=1)
        return np.minimum((n + 1) // 2, valid_lengths(valid, *conf.shape))


@dataclass(frozen=True)
class LagZero(Policy):
    """dspark_lagged with the capacity computed from the *current* confidences."""

    name = "test_lag0"
    reads = frozenset({"conf", "cost"})

    def decide(self, conf, valid, ctx):
        r, gamma = conf.shape
        a_t = prefix.survival_t(conf)
        lo, hi = prefix.window(r, gamma, valid)
        ranked = prefix.rank(a_t, lo, hi)
        k = int(prefix.throughput(ctx.cost, r, r, float(r), ranked.vals).argmax())
        return prefix.lengths(0, ranked.rows(k), r)


@pytest.mark.parametrize("policy", [LookAhead(), HalfConfident(), LagZero()])
def test_lossy_rules_are_caught(policy):
    assert not all(r.lossless for r in audit_many(policy)), policy.name


def test_clairvoyant_enumerates_realized_outcomes():
    # Knowing A and verifying exactly the accepted drafts replaces the residual draw by a bonus
    # draw. Appendix A: x1 = A (p .5) is always accepted; x1 = B (p .5) is accepted with
    # .3/.5 = .6, else (p .2) ℓ = 0 and the bonus comes from p_t = (.7, .3). So the first token
    # is A with .5 + .2·.7 = .64 and B with .5·.6 + .2·.3 = .36, not (.7, .3).
    result = audit(make_policy("clairvoyant"), "paper-appendix-a")
    assert result.claims is None and not result.lossless
    assert result.output_distribution == pytest.approx({"A": 0.64, "B": 0.36}, abs=1e-12)


def test_a_custom_scenario_with_three_tokens():
    req = request(
        3,
        target=[(0.2, 0.5, 0.3)],
        draft=[(0.6, 0.2, 0.2), [(0.3, 0.3, 0.4)] * 3],
        conf=[0.6, (0.9, 0.1, 0.5)],
    )
    base = scenario("paper-appendix-a")
    from dataclasses import replace

    custom = replace(base, name="custom", vocab=("x", "y", "z"), requests=(req,))
    assert audit(make_policy("dspark"), custom).lossless
    assert set(audit(make_policy("fixed:k=2"), custom).output_sequences) == {
        a + b for a in "xyz" for b in "xyz"
    }


def test_bad_scenarios_and_bad_policies():
    with pytest.raises(InputError, match="unknown scenario 'nope'"):
        scenario("nope")
    with pytest.raises(InputError, match="not distributions"):
        request(2, target=[(0.7, 0.7)], draft=[(0.5, 0.5)], conf=[0.5])

    @dataclass(frozen=True)
    class TooLong(Policy):
        name = "test_too_long"

        def decide(self, conf, valid, ctx: StepContext):
            return np.full(conf.shape[0], conf.shape[1] + 1)

    with pytest.raises(InputError, match="outside"):
        audit(TooLong(), "paper-appendix-a")
