"""Invariants of the simulated server (issue #2): caps, causality, conservation, saturation."""

from __future__ import annotations

import numpy as np
import pytest

from policies import make_policy
from simulator.request import Request
from simulator.run import simulate
from simulator.server import Server, ServerConfig
from tests.conftest import make_requests


def run(reqs, policy="fixed:k=3", cost=None, acceptance=None, **cfg):
    config = ServerConfig(**{"max_concurrency": 16, **cfg})
    return simulate(reqs, make_policy(policy), cost, acceptance, config, seed=7)


@pytest.mark.parametrize("policy", ["none", "fixed:k=1", "fixed:k=7"])
def test_tokens_conserved_and_all_complete(policy, cost, acceptance):
    reqs = make_requests(300, rate=40.0)
    res = run(reqs, policy, cost, acceptance)
    r = res.recorder.per_request()
    assert res.summary["requests_completed"] == len(reqs)
    assert sorted(r["id"].astype(int)) == list(range(len(reqs)))
    by_id = {q.id: q.output_tokens for q in reqs}
    assert all(by_id[int(i)] == o for i, o in zip(r["id"], r["output_tokens"], strict=True))
    assert res.summary["output_tokens"] == sum(q.output_tokens for q in reqs)


def test_causality_and_throughput_identity(cost, acceptance):
    reqs = make_requests(400, rate=60.0, seed=3)
    res = run(reqs, "fixed:k=2", cost, acceptance)
    r = res.recorder.per_request()
    assert np.all(r["admitted"] >= r["arrival"])
    assert np.all(r["first_token"] > r["admitted"])
    assert np.all(r["finish"] >= r["first_token"])
    s = res.summary
    assert s["throughput_tok_s"] * s["duration_s"] == pytest.approx(s["output_tokens"], rel=1e-9)


@pytest.mark.parametrize("cap", [1, 3, 8])
def test_concurrency_never_above_cap(cap, cost, acceptance):
    res = run(make_requests(120, rate=500.0), "fixed:k=1", cost, acceptance, max_concurrency=cap)
    assert 1 <= res.summary["max_concurrency_seen"] <= cap
    assert res.summary["mean_batch_size"] <= cap


def test_saturated_queue_grows(cost, acceptance):
    """Arrivals far above capacity: later requests wait longer than earlier ones."""
    res = run(make_requests(600, rate=2000.0), "fixed:k=1", cost, acceptance, max_concurrency=4)
    r = res.recorder.per_request()
    queue = r["queue_s"][np.argsort(r["id"])]
    assert queue[-60:].mean() > 10 * max(queue[:60].mean(), 1e-3)
    assert np.corrcoef(np.arange(queue.size), queue)[0, 1] > 0.9


def test_plain_decoding_takes_one_token_per_step(cost, acceptance):
    reqs = make_requests(50, rate=5.0)
    res = run(reqs, "none", cost, acceptance)
    r = res.recorder.per_request()
    assert np.array_equal(r["decode_steps"], r["output_tokens"] - 1)
    assert res.summary["mean_accepted_len"] == 1.0
    assert res.summary["mean_verify_len"] == 0.0


def test_same_seed_same_result(cost, acceptance):
    reqs = make_requests(200, rate=80.0)
    a = run(reqs, "fixed:k=4", cost, acceptance).summary
    b = run(reqs, "fixed:k=4", cost, acceptance).summary
    for s in (a, b):
        assert set(s.pop("wall")) == {"wall_s", "decode_steps_per_wall_s"}
    assert a == b


def test_lookahead_matches_one_event_per_step(cost, acceptance):
    """The engine clock may run ahead of SimPy between arrivals; forcing a SimPy event every
    step (peek always due) must give the identical schedule."""
    reqs = make_requests(150, rate=100.0, seed=5)

    def simulate_with(force_sync: bool):
        config = ServerConfig(max_concurrency=8)
        from simulator.backend import ProfiledBackend

        backend = ProfiledBackend(cost, acceptance, 8, 7, config.gamma)
        server = Server(config, make_policy("fixed:k=3"), backend, cost=cost, seed=7)
        if force_sync:
            server.env.peek = lambda: -1.0
        return server.run(reqs).per_request()

    a, b = simulate_with(False), simulate_with(True)
    for key in ("first_token", "finish", "decode_steps", "accepted"):
        assert np.array_equal(a[key], b[key]), key


def test_kv_capacity_rejects_what_can_never_fit(cost, acceptance):
    reqs = [Request(0, 0.0, 100, 10), Request(1, 0.1, 50_000, 10), Request(2, 0.2, 100, 10)]
    res = run(reqs, "fixed:k=1", cost, acceptance, kv_capacity_tokens=10_000)
    assert res.summary["requests_completed"] == 2
    assert res.summary["requests_rejected_too_long"] == 1


def test_kv_capacity_limits_admission(cost, acceptance):
    """Two requests that each need most of the cache run one after the other."""
    reqs = [Request(0, 0.0, 6000, 50), Request(1, 0.0, 6000, 50)]
    res = run(reqs, "fixed:k=1", cost, acceptance, kv_capacity_tokens=10_000)
    r = res.recorder.per_request()
    order = np.argsort(r["id"])
    assert r["admitted"][order][1] >= r["finish"][order][0]


def test_single_token_outputs_finish_at_prefill(cost, acceptance):
    res = run([Request(0, 1.0, 10, 1)], "fixed:k=3", cost, acceptance)
    r = res.recorder.per_request()
    assert r["finish"][0] == r["first_token"][0] > 1.0
    assert res.summary["decode_steps"] == 0


def test_gamma_beyond_acceptance_model_is_an_input_error(cost, acceptance):
    from profiles.errors import InputError

    with pytest.raises(InputError, match="gamma"):
        run(make_requests(3, 1.0), "fixed:k=1", cost, acceptance, gamma=acceptance.gamma + 1)


def test_more_drafts_raise_accepted_length(cost, acceptance):
    reqs = make_requests(200, rate=20.0)
    lens = [run(reqs, f"fixed:k={k}", cost, acceptance).summary["mean_accepted_len"]
            for k in (0, 1, 3, 7)]  # fmt: skip
    assert lens[0] == 1.0 and all(b > a for a, b in zip(lens, lens[1:], strict=False))


def test_request_stream_independent_of_slot_history(cost, acceptance):
    """A request's (confidence, A) rows depend on (seed, request id) only — not on which slot it
    gets or what ran there before (common random numbers across policies)."""
    from simulator.backend import ProfiledBackend

    def rows(backend, slot, req, steps=150):
        backend.join(slot, req)
        out = []
        for _ in range(steps):
            s = np.array([slot])
            out.append((backend.draft(s).copy(), backend.accepted(s).copy()))
            backend.verify(s, np.array([7]))
        backend.leave(slot)
        return out

    req = Request(42, 0.0, 10, 400)
    fresh = rows(ProfiledBackend(cost, acceptance, 4, 7, 7), 0, req)
    used = ProfiledBackend(cost, acceptance, 4, 7, 7)
    rows(used, 2, Request(1, 0.0, 10, 30), steps=20)  # an earlier, short occupant of slot 2
    for _ in range(13):
        used.verify(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    again = rows(used, 2, req)
    for (c1, a1), (c2, a2) in zip(fresh, again, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(a1, a2)


@pytest.mark.parametrize("basis", ["total", "padded"])
def test_attended_kv_follows_the_backend_context_basis(basis, cost, acceptance):
    """``kv_tokens`` is Σ KV over the batch, or requests × the longest KV for engines that pad
    every request to the longest context (profiles/cost.py)."""
    from simulator.backend import ProfiledBackend

    class Spy(ProfiledBackend):
        def step_time(self, step):
            seen.append((step.requests, step.kv_tokens, step.longest))
            return super().step_time(step)

    seen: list[tuple[int, int, int]] = []
    spy = Spy(cost, acceptance, 4, 7, 7)
    spy.context_basis = basis
    reqs = [Request(0, 0.0, 100, 3), Request(1, 0.0, 10, 3)]  # both prefill in the first step
    config = ServerConfig(max_concurrency=4, gamma=7)
    Server(config, make_policy("none"), spy).run(reqs)
    r, kv, longest = seen[1]  # the first decode step: both hold prompt + their first token
    assert r == 2 and longest == 1  # policy "none": one token per request
    assert kv == (101 + 11 if basis == "total" else 2 * 101)
