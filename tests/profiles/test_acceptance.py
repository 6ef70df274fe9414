"""The parametric acceptance model reproduces its stated per-position conditional rates."""

from __future__ import annotations

import numpy as np
import pytest

from profiles import InputError
from profiles.acceptance import ParametricAcceptance
from profiles.builtin import PAPER_MODELS, paper_acceptance


def _conditional_rates(model, domain, requests=3000, steps=20, seed=1):
    """Round-weighted conditional acceptance, as an engine would measure it."""
    rng = np.random.default_rng(seed)
    accepted = []
    for _ in range(requests):
        latent = model.start(domain, rng)
        accepted.append(model.draw(latent, steps, rng)[1])
    a = np.concatenate(accepted)
    reach = np.array([(a >= k).sum() for k in range(model.gamma + 1)])
    return reach[1:] / reach[:-1]


def test_rates_reproduced_with_correlation():
    """α: Monte Carlo over 60,000 rounds (seed 1); tolerance 0.02 absolute per position.
    Requests of equal length, so the round weighting is uniform here."""
    model = ParametricAcceptance({"code": (0.9, 0.85, 0.8, 0.8, 0.75)}, request_sigma=0.8)
    got = _conditional_rates(model, "code")
    assert np.allclose(got, model.rates["code"], atol=0.02)


def test_confidences_are_informative():
    model = ParametricAcceptance({"chat": (0.7,) * 4}, token_sigma=1.5, conf_sigma=0.3)
    rng = np.random.default_rng(0)
    conf, acc = model.draw(model.start("chat", rng), 20000, rng)
    first_ok = acc >= 1
    assert conf[first_ok, 0].mean() > conf[~first_ok, 0].mean() + 0.1


def test_paper_models_match_table_one():
    for name in PAPER_MODELS:
        model = paper_acceptance(name)
        assert "read from paper" in model.source
        assert set(model.domains) == {"math", "code", "chat"}
    m = paper_acceptance("qwen3-4b-dspark")
    assert m.expected_accepted_len("math") == pytest.approx((6.11 + 5.70 + 4.89) / 3)
    assert m.expected_accepted_len("chat") == pytest.approx((3.64 + 3.54 + 3.29) / 3)
    assert m.rates["math"][0] == pytest.approx(0.93)


@pytest.mark.parametrize(
    "rates",
    [{}, {"a": ()}, {"a": (0.5, 1.0)}, {"a": (0.5,), "b": (0.5, 0.5)}, {"a": (float("nan"),)}],
)
def test_bad_rates_are_input_errors(rates):
    with pytest.raises(InputError):
        ParametricAcceptance(rates)


def test_unknown_domain_is_input_error():
    model = ParametricAcceptance({"code": (0.8, 0.8)})
    with pytest.raises(InputError, match="no domain 'chat'"):
        model.start("chat", np.random.default_rng(0))


def test_unknown_paper_model():
    with pytest.raises(InputError, match="known"):
        paper_acceptance("llama-9000-dspark")
