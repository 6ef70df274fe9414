"""Prefill as engines run it (issue #13 item 4): co-located chunks fused into the verify forward
where the engine fuses them, and disaggregated decode-only instances that receive each request
after its prefill time with its KV ready."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from policies import make_policy
from profiles import InputError
from profiles.builtin import load_acceptance, load_cost
from simulator.request import Request
from simulator.run import simulate
from simulator.server import ServerConfig

H100 = load_cost("builtin:h100-8b")
CPU = load_cost("builtin:cpu-tiny-additive")
ACC = load_acceptance("paper:qwen3-8b-dspark")


def _run(cost, mode, reqs, n=4, spec="fixed:k=2"):
    cfg = ServerConfig(max_concurrency=n, gamma=7, prefill=mode)
    return simulate(reqs, make_policy(spec), cost, ACC, cfg, seed=2)


def test_a_fused_chunk_is_one_forward_over_verify_and_prompt_tokens():
    assert H100.prefill_fused and not CPU.prefill_fused  # the CPU engine prefills on its own
    r, b, chunk = 8, 24, 512
    fused = H100.step_seconds(r, b, prefill_tokens=chunk)
    assert fused == pytest.approx(H100.verify_time(r, b + chunk) + H100.draft_time(r))
    apart = replace(H100, prefill_fused=False).step_seconds(r, b, prefill_tokens=chunk)
    assert apart == pytest.approx(H100.verify_time(r, b) + H100.draft_time(r)
                                  + H100.prefill_time(chunk))  # fmt: skip
    assert fused < apart  # the weights are read once, not twice
    assert H100.step_seconds(0, 0, prefill_tokens=chunk) == H100.prefill_time(chunk)


def test_disaggregated_requests_decode_after_their_prefill_time_with_no_prefill_here():
    reqs = [Request(i, 0.0, 300 + 100 * i, 20, "chat") for i in range(3)]
    run = _run(H100, "disaggregated", reqs, n=8)
    rec = run.recorder.arrays()
    assert run.summary["requests_completed"] == 3
    ttft = np.asarray(rec["first_token"]) - np.asarray(rec["arrival"])
    want = [H100.prefill_time(r.prompt_tokens) for r in reqs]
    assert np.sort(ttft).tolist() == pytest.approx(sorted(want))


def test_disaggregated_decode_steps_carry_no_prefill_and_cost_less():
    reqs = [Request(i, 0.05 * i, 1500, 60, "code") for i in range(12)]
    seen = []

    class Watch:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def decide(self, conf, valid, ctx):
            seen.append(ctx.prefill_tokens)
            return self.inner.decide(conf, valid, ctx)

    cfg = ServerConfig(max_concurrency=4, gamma=7, prefill="disaggregated")
    run = simulate(reqs, Watch(make_policy("fixed:k=2")), H100, ACC, cfg, seed=2)
    assert run.summary["requests_completed"] == 12 and seen and max(seen) == 0
    colo = _run(H100, "colocated", reqs)
    assert run.recorder.busy_s < colo.recorder.busy_s  # the prompts ran elsewhere


def test_an_unknown_prefill_mode_is_refused():
    with pytest.raises(InputError, match="prefill must be one of colocated, disaggregated"):
        ServerConfig(prefill="split")
