"""Cost models: both SGLang forms, kept jags, flagged extrapolation, YAML round trip, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from profiles import CostModel, InputError
from profiles.analytic import analytic_cost
from profiles.curve import Curve
from profiles.store import cost_from_dict, cost_to_dict, read_cost, write_yaml


def test_sps_table_interpolates_and_keeps_jags():
    cost = CostModel.from_sps_table([1, 8, 9, 16], [100.0, 90.0, 60.0, 55.0])
    assert cost.verify_time(1, 8) == pytest.approx(1 / 90)
    assert cost.verify_time(1, 9) == pytest.approx(1 / 60)  # the cliff between 8 and 9 is kept
    mid = cost.verify_time(1, 4)
    assert 1 / 100 < mid < 1 / 90  # linear in time between probes
    sps = cost.sps(3, np.array([8, 9]))
    assert sps[0] == pytest.approx(90.0) and sps[1] == pytest.approx(60.0)


def test_extrapolation_is_linear_and_flagged():
    cost = CostModel.from_sps_table([1, 10], [100.0, 50.0])
    slope = (1 / 50 - 1 / 100) / 9
    assert cost.verify_time(1, 20) == pytest.approx(1 / 50 + 10 * slope)
    assert cost.extrapolates(1, 20) and not cost.extrapolates(1, 10)


def test_additive_form_depends_on_requests_and_tokens():
    cost = CostModel.additive(0.001, [1, 64], [0.0, 0.004], [1, 512], [0.002, 0.010])
    assert cost.verify_time(1, 1) == pytest.approx(0.003)
    assert cost.verify_time(64, 512) == pytest.approx(0.015)
    assert cost.sps(64, np.array([512]))[0] == pytest.approx(1 / 0.015)
    assert cost.sps(1, np.array([512]))[0] > cost.sps(64, np.array([512]))[0]


@pytest.mark.parametrize(
    "bad",
    [
        dict(batch_tokens=[1, 2], steps_per_sec=[1.0]),
        dict(batch_tokens=[2, 1], steps_per_sec=[1.0, 2.0]),
        dict(batch_tokens=[1, 2], steps_per_sec=[1.0, -2.0]),
        dict(batch_tokens=[1, 2], steps_per_sec=[1.0, float("nan")]),
        dict(batch_tokens=[], steps_per_sec=[]),
    ],
)
def test_bad_tables_are_input_errors(bad):
    with pytest.raises(InputError):
        CostModel.from_sps_table(**bad)


def test_analytic_is_labelled_and_jagged():
    cost = analytic_cost()
    assert "analytic" in cost.source and "not measured" in cost.source
    b = np.arange(1, 4097)
    t = 1 / cost.sps(1, b)
    assert np.all(np.diff(t) >= -1e-15)  # more tokens never cheaper
    steps = np.flatnonzero(np.diff(t) > 1e-9)
    assert steps.size > 10  # padding buckets make a staircase, not a smooth line
    flat = t[300:319]
    assert np.ptp(flat) == 0.0  # inside a bucket (257..320) the time is constant


@pytest.mark.parametrize("form", ["sps", "additive"])
def test_yaml_round_trip(tmp_path, form):
    if form == "sps":  # prefill as a forward of its own (fused: tests/simulator/test_prefill.py)
        cost = replace(analytic_cost(), prefill_fused=False)
    else:
        cost = CostModel.additive(0.001, [1, 64], [0.0, 0.004], [1, 512], [0.002, 0.010],
                                  source="test")  # fmt: skip
    path = tmp_path / "c.yaml"
    write_yaml(path, cost_to_dict(cost, {"device": "test"}))
    back = read_cost(path)
    assert back.kind == cost.kind and back.source == cost.source
    for r, b in [(1, 1), (7, 50), (64, 300), (100, 5000)]:
        assert back.verify_time(r, b) == pytest.approx(cost.verify_time(r, b))
        assert back.draft_time(r) == pytest.approx(cost.draft_time(r))
    assert back.context_time(123456) == pytest.approx(cost.context_time(123456))


@pytest.mark.parametrize(
    "text, match",
    [
        ("form: sps\n", "missing field 'sps'"),
        ("form: sps\nsps: {sample_batch_tokens: [1, 2]}\n", "sample_steps_per_sec"),
        (
            "form: sps\nsps: {sample_batch_tokens: [1, x], sample_steps_per_sec: [1, 2]}\n",
            "numbers",
        ),
        ("form: cubic\n", "unknown cost form"),
        ("- 1\n- 2\n", "mapping"),
        ("form: [unclosed\n", "invalid YAML"),
        ("schema: other/v1\n", "schema"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_cost(path)
    assert str(path) in str(info.value)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_cost(tmp_path / "nope.yaml")


def test_cost_from_dict_additive_missing_field():
    with pytest.raises(InputError, match="theta_seconds"):
        cost_from_dict({"form": "additive", "additive": {"bias_seconds": 0.0, "bs_probes": [1],
                        "alpha_seconds": [0.0], "m_probes": [1]}})  # fmt: skip


@pytest.mark.parametrize("form", ["sps", "additive"])
def test_step_time_is_the_sum_of_its_parts(form):
    if form == "sps":  # prefill as a forward of its own (fused: tests/simulator/test_prefill.py)
        cost = replace(analytic_cost(), prefill_fused=False)
    else:
        cost = CostModel.additive(0.001, [1, 64], [0.0, 0.004], [1, 512], [0.002, 0.010])
    for r, b, kv, pre in [(1, 1, 100, 0), (8, 40, 9000, 512), (300, 70000, 10**6, 4096)]:
        parts = (cost.draft_time(r) + cost.verify_time(r, b) + cost.context_time(kv)
                 + cost.prefill_time(pre))  # fmt: skip
        assert cost.step_time(r, b, kv, pre) == pytest.approx(parts)
    assert cost.step_time(0, 0, 0, 256) == pytest.approx(cost.prefill_time(256))


def _context_cost(basis: str, base: float) -> CostModel:
    ctx = Curve((1024.0, 2048.0), (0.0, 0.004))  # 4 ms per 1,024 attended tokens beyond 1,024
    return CostModel.additive(0.001, [1, 8], [0.0, 0.002], [1, 64], [0.0, 0.006], context=ctx,
                              context_basis=basis, context_base=base)  # fmt: skip


def test_context_is_priced_relative_to_each_batch_base():
    """Verify terms were measured at ``context_base`` tokens per request: the context term is the
    difference from ``requests × base``, whatever the batch size, and negative below it."""
    cost = _context_cost("padded", 128)
    slope = 0.004 / 1024
    assert cost.context_time(8 * 128, 8) == pytest.approx(0.0)
    assert cost.context_time(1 * 128, 1) == pytest.approx(0.0)  # not priced as 896 tokens short
    assert cost.context_time(2 * 200, 2) == pytest.approx(2 * 72 * slope)
    assert cost.context_time(4 * 64, 4) == pytest.approx(-4 * 64 * slope)  # shorter: cheaper
    r, b = 4, 20
    plain = cost.draft_time(r) + cost.verify_time(r, b)
    assert cost.step_time(r, b, 4 * 64, 0) == pytest.approx(plain - 4 * 64 * slope)


def test_context_without_base_keeps_the_absolute_curve():
    cost = _context_cost("total", 0)
    assert cost.context_time(512, 8) == 0.0  # clamped at zero below the curve's zero
    assert cost.context_time(2048, 1) == pytest.approx(0.004)


@pytest.mark.parametrize("basis, base", [("padded", 128.0), ("total", 0.0)])
def test_context_options_round_trip(tmp_path, basis, base):
    cost = _context_cost(basis, base)
    path = tmp_path / "c.yaml"
    write_yaml(path, cost_to_dict(cost))
    back = read_cost(path)
    assert (back.context_basis, back.context_base) == (basis, base)
    assert back.step_time(3, 9, 700, 0) == pytest.approx(cost.step_time(3, 9, 700, 0))


@pytest.mark.parametrize(
    "block, match",
    [
        ("{kv_tokens: [0, 1], seconds: [0, 1], basis: paged}", "basis"),
        ("{kv_tokens: [0, 1], seconds: [0, 1], base_tokens_per_request: -3}", "base_tokens"),
        ("{kv_tokens: [0, 1], seconds: [0, 1], base_tokens_per_request: lots}", "base_tokens"),
    ],
)
def test_bad_context_options_name_the_field(tmp_path, block, match):
    path = tmp_path / "bad.yaml"
    path.write_text(f"form: sps\nsps: {{sample_batch_tokens: [1], sample_steps_per_sec: [9]}}\n"
                    f"context: {block}\n")  # fmt: skip
    with pytest.raises(InputError, match=match) as info:
        read_cost(path)
    assert str(path) in str(info.value) and "context" in str(info.value)


def test_context_interpolates_between_query_counts():
    """Attention grows with query tokens per request: measured at 4 and at 1 per request, a
    batch's mean B/R interpolates between the two (and extends beyond 4)."""
    ctx4 = Curve((1024.0, 2048.0), (0.0, 0.004))
    ctx1 = Curve((1024.0, 2048.0), (0.0, 0.001))
    cost = CostModel.additive(0.001, [1, 8], [0.0, 0.002], [1, 64], [0.0, 0.006], context=ctx4,
                              context_basis="padded", context_base=128, context_one=ctx1,
                              context_queries=4)  # fmt: skip
    kv = 8 * 256  # 8 requests, 128 tokens each beyond the base
    assert cost.context_time(kv, 8, 8) == pytest.approx(0.001)  # one query token each
    assert cost.context_time(kv, 8, 32) == pytest.approx(0.004)
    assert cost.context_time(kv, 8, 20) == pytest.approx(0.0025)
    assert cost.context_time(kv, 8, 64) == pytest.approx(0.001 + 7 / 3 * 0.003)
    # attention is padded to the longest request: it decides when known
    assert cost.context_time(kv, 8, 11, longest=4) == pytest.approx(0.004)
    assert cost.step_time(8, 11, kv, 0, 4) - cost.step_time(8, 11, kv, 0, 1) == pytest.approx(0.003)
    back = cost_from_dict(cost_to_dict(cost))
    assert back.context_time(kv, 8, 20) == pytest.approx(0.0025)
    bad = cost_to_dict(cost)
    bad["context"]["queries_per_request"] = 1
    with pytest.raises(InputError, match="queries_per_request"):
        cost_from_dict(bad)
    bad["context"]["queries_per_request"] = 4
    bad["context"]["seconds_one_query"] = [0.0]
    with pytest.raises(InputError, match="context"):
        cost_from_dict(bad)


def test_padding_term_prices_ragged_batches():
    """Engines that pad each request's verify tokens to the longest pay per padded token."""
    cost = CostModel.additive(0.001, [1, 8], [0.0, 0.002], [1, 64], [0.0, 0.006],
                              padding_s=0.0001, ragged_s=0.0005)  # fmt: skip
    uniform = cost.step_time(4, 8, 0, 0, 2)  # every request verifies 2 tokens: no padding
    assert uniform == pytest.approx(cost.draft_time(4) + cost.verify_time(4, 8))
    assert cost.step_time(4, 8, 0, 0, 5) - uniform == pytest.approx(0.0001 * 12 + 0.0005)
    assert cost.step_time(4, 8, 0, 0) == pytest.approx(uniform)  # longest unknown: none
    back = cost_from_dict(cost_to_dict(cost))
    assert (back.padding_s, back.ragged_s) == pytest.approx((0.0001, 0.0005))
    bad = cost_to_dict(cost)
    bad["additive"]["padding_seconds_per_token"] = -1
    with pytest.raises(InputError, match="padding_seconds_per_token"):
        cost_from_dict(bad)


@pytest.mark.parametrize("form", ["sps", "additive"])
def test_recalibrated_maps_each_call_affinely(form):
    """A profile carried to a machine at another speed: each call's seconds t -> a + b·t (target
    forward with its context and padding terms, drafter pass, prefill), the shape kept."""
    ctx4 = Curve((1024.0, 2048.0), (0.0, 0.004))
    ctx1 = Curve((1024.0, 2048.0), (0.0, 0.001))
    extra = dict(draft=Curve((1.0, 8.0), (0.001, 0.003)),
                 prefill=Curve((16.0, 512.0), (0.002, 0.03)), context=ctx4, context_one=ctx1,
                 context_queries=4, context_basis="padded", context_base=128, padding_s=0.0001,
                 ragged_s=0.0005)  # fmt: skip
    if form == "sps":
        cost = CostModel.from_sps_table([1, 64], [500.0, 100.0], **extra)
    else:
        cost = CostModel.additive(0.001, [1, 8], [0.0, 0.002], [1, 64], [0.0, 0.006], **extra)
    same = cost.recalibrated((0.0, 1.0), (0.0, 1.0), (0.0, 1.0), source="same")
    (av, bv), (ad, bd), (ap, bp) = (0.0004, 1.2), (-0.0002, 1.1), (0.001, 0.9)
    new = cost.recalibrated((av, bv), (ad, bd), (ap, bp), source="recalibrated")
    assert new.source == "recalibrated" and new.kind == cost.kind
    for r, b, kv, pre, longest in [
        (1, 2, 256, 0, 2),
        (8, 20, 8 * 256, 0, 4),
        (4, 9, 4 * 300, 64, 5),
    ]:
        assert same.step_time(r, b, kv, pre, longest) == pytest.approx(
            cost.step_time(r, b, kv, pre, longest))  # fmt: skip
        forward = cost.step_time(r, b, kv, 0, longest) - cost.draft_time(r)  # with context, padding
        want = av + bv * forward + ad + bd * cost.draft_time(r) + (ap + bp * cost.prefill_time(pre)
                                                                  if pre else 0.0)  # fmt: skip
        assert new.step_time(r, b, kv, pre, longest) == pytest.approx(want)
    assert new.verify_time(3, 10) == pytest.approx(av + bv * cost.verify_time(3, 10))
    assert new.prefill_time(0) == 0.0  # no prompt, no prefill call
