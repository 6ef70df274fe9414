"""The cost profiler: grids, the additive least-squares fit, and a measurement of a tiny random
engine end to end (the profile it writes loads in both forms and drives the simulator).
Timings of a tiny model on a shared machine are noise: only structure is checked."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine import costfit, profiler, provenance  # noqa: E402
from engine.engine import Engine  # noqa: E402
from policies import make_policy  # noqa: E402
from profiles.store import read_cost, write_yaml  # noqa: E402
from simulator.run import simulate  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402
from tests.conftest import make_requests  # noqa: E402
from tests.engine.conftest import tiny_drafter, tiny_target  # noqa: E402


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("max_b", [1, 7, 64, 200])
def test_batch_grid_dense_then_sparse(quick, max_b):
    g = profiler.batch_grid(max_b, quick)
    assert g[0] == 1 and g[-1] == max_b and np.all(np.diff(g) > 0)
    if not quick:
        assert g[: min(max_b, 16)] == list(range(1, min(max_b, 16) + 1))


def test_split_tokens_sums_within_bounds():
    rng = np.random.default_rng(0)
    for b, r in [(1, 1), (8, 1), (9, 3), (64, 8), (10, 10)]:
        q = profiler.split_tokens(b, r, 8, rng)
        assert len(q) == r and sum(q) == b and min(q) >= 1 and max(q) <= 8


def test_verify_points_cover_sps_composition():
    pts = profiler.verify_points(8, 7, False)
    assert len(set(pts)) == len(pts) and pts == sorted(pts, key=lambda p: (p[1], p[0]))
    for b in profiler.batch_grid(64, False):
        assert (min(8, max(1, -(-b // profiler.Q_TYPICAL))), b) in pts
    assert all(1 <= r <= 8 and r <= b <= 8 * r for r, b in pts)


def test_hat_weights_interpolate():
    probes = np.array([1.0, 2.0, 4.0, 8.0])
    w = costfit.hat(np.array([1, 3, 8, 20]), probes)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w @ probes, [1, 3, 8, 8])  # clamped at the last probe


def test_fit_additive_recovers_an_additive_function():
    bs_p, m_p = [1, 2, 4, 8], [1, 2, 4, 8, 16, 32, 64]
    alpha = dict(zip(bs_p, [0.0, 1e-4, 3e-4, 9e-4], strict=True))
    theta = dict(zip(m_p, [0.0, 2e-4, 5e-4, 5e-4, 2e-3, 2.5e-3, 6e-3], strict=True))  # a jag
    pts = [(r, m) for r in bs_p for m in m_p if r <= m <= 8 * r]
    bs, m = (np.array(x, float) for x in zip(*pts, strict=True))
    t = 4e-3 + np.array([alpha[r] + theta[mm] for r, mm in pts])
    fit = costfit.fit_additive(bs, m, t, bs_p, m_p)
    assert fit.rms_rel_error < 1e-9 and fit.points == len(pts)
    assert fit.bias_s == pytest.approx(4e-3)
    np.testing.assert_allclose(fit.alpha_s, list(alpha.values()), atol=1e-10)
    np.testing.assert_allclose(fit.theta_s, list(theta.values()), atol=1e-10)


@pytest.fixture(scope="module")
def measured():
    torch.set_num_threads(1)
    target = tiny_target(vocab=256)
    engine = Engine(target, tiny_drafter(target, "dspark"), slots=3, max_len=64)
    cfg = profiler.ProfileConfig(quick=True, repeats=1, warmup=0, base_context=16)
    calls = []
    ms = profiler.measure(engine, cfg, on_total=calls.append, tick=calls.append)
    return engine, ms, calls


def test_measure_counts_calls_and_leaves_the_engine_empty(measured):
    engine, ms, calls = measured
    assert calls[0] == len(calls) - 1  # on_total announced exactly the ticks that followed
    assert engine.slots == {} and len(engine.free_slots()) == 3
    assert ms.slots == 3 and ms.gamma == 4 and ms.base_context == 16
    assert all(t > 0 for t in ms.verify.median + ms.draft.median + ms.prefill.median)
    assert all(t > 0 for t in ms.verify.mean + ms.draft.mean + ms.prefill.mean)
    assert max(p[1] for p in ms.verify.points) == 3 * 5  # slots * (gamma + 1)
    assert ms.prefill.points[-1] == 2 * (64 - 4 - 2)  # two prompts of the longest length


def test_profile_document_loads_in_both_forms(measured, tmp_path):
    _, ms, _ = measured
    sps, add, fit = costfit.cost_models(ms, "measured: test", quick=True)
    meta = {**provenance.environment(torch.device("cpu")), "command": "test"}
    path = tmp_path / "p.yaml"
    write_yaml(path, costfit.document(ms, sps, add, fit, meta))
    a, b = read_cost(path), read_cost(path, form="additive")
    assert (a.kind, b.kind) == ("sps", "additive")
    assert a.max_batch_tokens == b.max_batch_tokens == 15
    assert a.max_context == b.max_context == 64  # the engine's context, for the envelope
    assert a.verify.x == tuple(float(x) for x in profiler.batch_grid(15, True))
    assert a.draft.x == b.draft.x and a.prefill.y == b.prefill.y and a.context.x == b.context.x
    # extra seconds relative to one request at the base context, from one short request (base/8)
    # to every slot at the longest context
    assert a.context.at(16.0) == 0.0 and (a.context.lo, a.context.hi) == (2.0, 3 * 58.0)
    # the engine pads keys to the longest context; verify points were measured at the base
    assert (a.context_basis, a.context_base) == (b.context_basis, b.context_base) == ("padded", 16)
    assert a.draft.y == tuple(ms.draft.mean)  # models use means (a run's time is their sum)
    assert a.context_queries == ms.gamma + 1 and a.context_one.x == a.context.x
    from profiles.store import load_yaml

    doc = load_yaml(path)
    m = doc["metadata"]
    for key in ("device", "threads", "torch", "date", "commit", "slots", "additive_fit"):
        assert key in m
    v = m["samples"]["verify"]
    assert len(v["mean_s"]) == len(v["median_s"]) == len(v["iqr_s"]) == len(ms.verify.points)
    res = simulate(
        make_requests(30, 50.0),
        make_policy("dspark"),
        b,
        _acceptance(),
        ServerConfig(max_concurrency=8, clamp_to_context=True),
    )  # the engine holds 64
    assert res.summary["requests_completed"] == 30


def _acceptance():
    from profiles.builtin import load_acceptance

    return load_acceptance("paper:qwen3-8b-dspark")


def test_additive_fit_recovers_a_padding_cost():
    rng = np.random.default_rng(0)
    r = rng.integers(1, 9, 200).astype(float)
    b = r * rng.integers(1, 5, 200)
    pad = rng.uniform(0, 10, 200)
    ragged = rng.uniform(0, 1, 200)
    t = 0.004 + 0.0005 * (r - 1) + 0.0002 * (b - 1) + 0.0003 * pad + 0.001 * ragged
    fit = costfit.fit_additive(r, b, t, [1, 4, 8], [1, 8, 16, 32], pad, ragged)
    assert fit.padding_s == pytest.approx(0.0003, rel=1e-3) and fit.rms_rel_error < 1e-6
    assert fit.ragged_s == pytest.approx(0.001, rel=1e-3)
    assert costfit.fit_additive(r, b, t, [1, 4, 8], [1, 8, 16, 32]).padding_s == 0.0


def _synthetic(ms):
    """``ms`` with its timings replaced by smooth made-up ones (seconds) on the same points, so
    that a test of the fitting logic cannot depend on how busy the machine was."""
    from dataclasses import replace

    def timed(m, f):
        t = [f(p) for p in m.points]
        return replace(m, mean=t, median=t, iqr=[0.0] * len(t))

    return replace(
        ms,
        verify=timed(ms.verify, lambda p: 2e-3 + 1e-4 * p[0] + 2e-5 * p[1]),
        draft=timed(ms.draft, lambda n: 1e-3 + 2e-4 * n),
        prefill=timed(ms.prefill, lambda n: 1.5e-3 + 1e-6 * n),
        context=timed(
            ms.context, lambda p: 2e-3 + 1e-4 * p[0] + 2e-5 * 5 * p[0] + 1e-7 * p[0] * p[1]
        ),
        context_one=ms.context_one
        and timed(ms.context_one, lambda p: 2e-3 + 1e-4 * p[0] + 2e-5 * p[0] + 5e-8 * p[0] * p[1]),
    )


def test_recalibration_recovers_an_affine_speed_change(measured):
    """The companion's recalibration: per call kind, the affine map from a profile's price of
    each measured point to its mean; exact when the machine changed by exactly such a map."""
    from dataclasses import replace

    ms = _synthetic(measured[1])  # the measured grid, timings made up: no dependence on load
    _, add, _ = costfit.cost_models(ms, "measured: test", quick=True)
    add = replace(add, monotone=False)  # the curves as fitted (the repair lifts noisy dips)
    prices = costfit.point_prices(ms, add)
    np.testing.assert_allclose(prices["draft"], ms.draft.mean)  # curves through the means
    np.testing.assert_allclose(prices["prefill"], ms.prefill.mean)
    maps = {"verify": (2e-4, 1.2), "draft": (-1e-4, 1.1), "prefill": (3e-4, 0.9)}

    def moved(kind: str, m):  # the same points on a machine changed by the kind's map
        a, b = maps[next(k for k, kinds in costfit.RECALIBRATED.items() if kind in kinds)]
        return replace(m, mean=(a + b * prices[kind]).tolist())

    fast = replace(ms, **{k: moved(k, getattr(ms, k)) for k in prices})
    fit = costfit.recalibration(fast, add)
    for kind, (a, b) in maps.items():
        assert fit[kind][:2] == pytest.approx((a, b), rel=1e-6, abs=1e-9)
        assert fit[kind][2] < 1e-9


def test_recalibration_falls_back_to_a_scale_when_the_affine_map_is_implausible(measured):
    """Measurements that fall as the profile's price rises fit an affine map with a negative
    scale; a machine cannot do that, so the map is the scale alone."""
    from dataclasses import replace

    _, ms, _ = measured
    _, add, _ = costfit.cost_models(ms, "measured: test", quick=True)
    p = costfit.point_prices(ms, add)["prefill"]
    backwards = replace(ms, prefill=replace(ms.prefill, mean=(2 * p.max() - p).tolist()))
    offset, scale, rms = costfit.recalibration(backwards, add)["prefill"]
    assert offset == 0.0 and scale > 0 and rms > 0


def test_fit_additive_keeps_padding_terms_non_negative_on_noise_that_runs_against_them():
    """Timings that fall as padding rises (noise on a busy machine) fit φ = ρ = 0, never below:
    a profile with a negative padding price would be refused by the loader."""
    rng = np.random.default_rng(3)
    bs_p, m_p = [1, 2, 4, 8], [1, 2, 4, 8, 16, 32]
    pts = [(r, m) for r in bs_p for m in m_p if r <= m <= 8 * r]
    bs, m = (np.array(x, float) for x in zip(*pts, strict=True))
    pad = rng.uniform(0, 8, bs.size)
    ragged = rng.uniform(0, 1, bs.size)
    t = 2e-3 + 1e-5 * m - 5e-5 * pad - 1e-4 * ragged + rng.normal(0, 2e-5, bs.size)
    fit = costfit.fit_additive(bs, m, t, bs_p, m_p, pad, ragged)
    assert fit.padding_s == 0.0 and fit.ragged_s >= 0.0
    assert all(np.isfinite(x) and x >= 0 for x in [fit.bias_s, *fit.alpha_s, *fit.theta_s])


def test_context_points_span_one_short_request_to_every_slot():
    assert profiler.context_requests(256) == [1, 4, 16, 64, 256]
    assert profiler.context_requests(32) == [1, 4, 16, 32]
    assert profiler.context_requests(256, 8) == [1, 4, 8] and profiler.context_requests(3) == [1, 3]
    pts = profiler.context_points(256, 128, 1015, quick=False)
    kv = [r * n for r, n in pts]
    assert min(kv) == 16 and max(kv) == 256 * 1015  # base/8 at R = 1 .. the longest at every slot
    assert {n for _, n in pts} >= {16, 128, 1015}
    assert profiler.draft_requests(256, False)[:32] == list(range(1, 33))
    assert {48, 64, 96, 128, 192, 256} <= set(profiler.draft_requests(256, False))
    assert {96, 128, 192} <= set(profiler.request_probes(256, False))
    assert 2048 in profiler.prefill_grid(1015, False, 256)
    assert 2048 not in profiler.prefill_grid(58, False, 3)  # 36 prompts do not fit 3 slots


def test_context_curve_chains_the_request_counts_into_one_kv_curve():
    """Points made from one KV cost function C: the chained curve recovers C (up to a constant)
    over the whole KV range, from the smallest count's short length to the largest's longest."""
    from dataclasses import replace

    def c(kv):  # a convex made-up KV cost (seconds)
        return 1e-6 * kv + 1e-11 * kv**2

    pts = profiler.context_points(256, 128, 1015, quick=False)
    t = [3e-3 * r + c(r * n) for r, n in pts]  # each count has its own fixed cost
    m = profiler.Measured(pts, t, t, [0.0] * len(t))
    ms = profiler.Measurements(m, m, m, m, 256, 7, 128, 0.0)  # only context and base are read
    curve = costfit.context_curve(ms, replace(m))
    assert curve.lo == 16 and curve.hi == 256 * 1015
    assert np.all(np.diff(curve.x) > 0)
    want = np.array([c(x) - c(128) for x in curve.x])
    # exact but for each anchor, read off the curve so far by linear interpolation
    np.testing.assert_allclose(curve.y, want, rtol=2e-3, atol=1e-9)
