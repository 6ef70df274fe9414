"""STS calibration: metric definitions, recovery of a known temperature in both variants, the
held-out improvement on over-confident SYNTHETIC records, and the two output formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from profiles import InputError
from profiles.builtin import paper_acceptance
from profiles.calibration import (
    SCHEMA,
    auc,
    brier,
    calibrate,
    ece,
    fit_sts,
    metrics,
    read_temperatures,
)
from profiles.records import split_by_request, synthesize
from profiles.store import write_yaml


def test_ece_hand_cases():
    assert ece(np.full(10, 0.9), np.r_[np.ones(9), 0]) == pytest.approx(0.0)
    assert ece(np.full(4, 0.9), np.zeros(4)) == pytest.approx(0.9)
    # two bins, each off by 0.25 in opposite directions: |gap| per bin, not netted
    assert ece(np.array([0.25, 0.25, 0.75, 0.75]), np.array([0, 1, 1, 1])) == pytest.approx(0.25)
    assert ece(np.array([1.0]), np.array([1])) == pytest.approx(0.0)  # p = 1 in the last bin
    assert np.isnan(ece(np.array([]), np.array([])))


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.4
    pairs = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
    assert auc(s, y) == pytest.approx(pairs.mean())
    assert auc([0.1, 0.9], [0, 1]) == 1.0 and auc([0.9, 0.1], [0, 1]) == 0.0
    assert np.isnan(auc([0.2, 0.3], [1, 1]))
    assert brier([0.0, 1.0], [0, 0]) == pytest.approx(0.5)


def _tempered_rounds(t_true: float, n: int = 40000, gamma: int = 5, seed: int = 0):
    """Rounds whose true conditional acceptance is σ(logit / t_true) (a known answer)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(1.5, 2.0, (n, gamma))
    hit = rng.random((n, gamma)) < expit(logits / t_true)
    return logits, np.cumprod(hit, axis=1).sum(axis=1)


@pytest.mark.parametrize("variant", ["cumulative", "conditional"])
def test_recovers_a_known_temperature(variant):
    """α: one seed, 40,000 rounds; tolerance 15% on each T_k (grid step is 5%)."""
    logits, accepted = _tempered_rounds(2.0)
    temps = fit_sts(logits, accepted, variant)
    assert np.allclose(temps, 2.0, rtol=0.15), temps


def test_calibrated_input_keeps_temperature_near_one():
    """Late positions' survival is small, so its ECE barely depends on T_k: 20% tolerance."""
    logits, accepted = _tempered_rounds(1.0)
    assert np.allclose(fit_sts(logits, accepted, "cumulative"), 1.0, rtol=0.2)
    assert np.allclose(fit_sts(logits, accepted, "conditional"), 1.0, rtol=0.1)


def test_conditional_view_auc_is_order_preserved():
    logits, accepted = _tempered_rounds(3.0, n=5000)
    temps = fit_sts(logits, accepted, "conditional")
    before, after = metrics(logits, accepted, None), metrics(logits, accepted, temps)
    assert np.allclose(before["conditional"]["auc"], after["conditional"]["auc"])


def test_unreached_positions_keep_unit_temperature():
    logits = np.zeros((50, 3))
    temps = fit_sts(logits, np.zeros(50, dtype=int), "conditional")
    assert temps[1] == temps[2] == 1.0
    with pytest.raises(InputError, match="unknown STS variant"):
        fit_sts(logits, np.zeros(50, dtype=int), "joint")


@pytest.fixture(scope="module")
def overconfident():
    """SYNTHETIC records: paper-derived Qwen3-4B DSpark chat model, logits scaled by 1.6."""
    model = paper_acceptance("qwen3-4b-dspark")
    return synthesize(model, requests=200, steps=50, seed=2, logit_scale=1.6, domains=("chat",))


@pytest.mark.parametrize("variant", ["cumulative", "conditional"])
def test_sts_lowers_held_out_ece_at_most_positions(overconfident, variant):
    fit, report = split_by_request(overconfident, 0.5, seed=0)
    cal = calibrate(fit, report, variant, dataset="synthetic")
    before, after = cal.before["cumulative"]["ece"], cal.after["cumulative"]["ece"]
    assert sum(a < b for a, b in zip(after, before, strict=True)) >= 6
    assert np.mean(after) < 0.5 * np.mean(before)
    assert sum(t > 1.0 for t in cal.temperatures) >= 5  # undoes the over-confidence


def test_outputs_and_reading_temperatures_back(overconfident, tmp_path):
    fit, report = split_by_request(overconfident, 0.5, seed=1)
    cal = calibrate(fit, report, "cumulative", dataset="syn.npz", records_sha256="ab", split_seed=1)
    doc = cal.to_dict()
    assert doc["schema"] == SCHEMA and doc["split"]["seed"] == 1 and doc["ece_bins"] == 15
    assert set(doc["metrics"]["report_split"]["after"]) == {"cumulative", "conditional"}
    sg = cal.to_sglang()
    assert list(sg) == ["temperatures", "dataset", "num_samples", "ece_before", "ece_after"]
    assert sg["num_samples"] == fit.rounds and len(sg["ece_after"]) == 7
    write_yaml(tmp_path / "c.yaml", doc)
    (tmp_path / "c.json").write_text(json.dumps(sg))
    for name in ("c.yaml", "c.json"):
        temps, variant = read_temperatures(tmp_path / name)
        assert temps == pytest.approx(cal.temperatures) and variant == "cumulative"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.json", "{not json", "invalid JSON"),
        ("b.json", '{"temperatures": [1.0, -2.0]}', "positive"),
        ("c.json", '{"temperatures": "hot"}', "list of numbers"),
        ("d.yaml", "schema: spectune.cost/v1\ntemperatures: [1]\n", "expected 'spectune.calib"),
        ("e.yaml", "variant: cumulative\n", "list of numbers"),
    ],
)
def test_bad_calibration_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_temperatures(tmp_path / name)
