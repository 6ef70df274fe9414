"""The validity envelope (issue #13): steps priced outside what the profile measured are counted
for every term, context included; requests longer than the engine's context are refused unless
clamped; tables are repaired monotone for planning and pricing, raw probes kept."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import make_policy
from profiles import CostModel
from profiles.curve import Curve
from simulator.request import Request
from simulator.run import context_warning, count_beyond_context, simulate
from simulator.server import ServerConfig

# Verify measured to B = 64, drafts to R = 16, context over 0..20,000 KV tokens, prefill to 2,048.
COST = CostModel.from_sps_table(
    [1, 16, 64],
    [200.0, 150.0, 60.0],
    source="hand",
    draft=Curve((1.0, 16.0), (0.001, 0.004)),
    prefill=Curve((1.0, 2048.0), (0.001, 0.05)),
    context=Curve((0.0, 20000.0), (0.0, 0.01)),
)


def _run(requests, cost=COST, on_request=None, **cfg):
    config = ServerConfig(max_concurrency=cfg.pop("cap", 4), **cfg)
    return simulate(requests, make_policy("fixed:k=1"), cost, _acceptance(), config, seed=1,
                    on_request=on_request)  # fmt: skip


def _acceptance():
    from profiles.builtin import load_acceptance

    return load_acceptance("paper:qwen3-8b-dspark")


def test_envelope_lists_each_terms_range():
    env = COST.envelope()
    assert env["requests"] == [1.0, 16.0] and env["batch_tokens"] == [1.0, 64.0]
    assert env["kv_tokens"] == [0.0, 20000.0] and env["prefill_tokens"] == [1.0, 2048.0]
    assert env["max_context"] == 0


def test_inside_the_envelope_nothing_is_extrapolated():
    reqs = [Request(i, 0.0, 200, 40) for i in range(8)]  # 4 × 240 KV tokens at most
    s = _run(reqs).summary
    assert s["extrapolated_steps"] == 0 and s["extrapolated_step_share"] == 0.0


def test_context_beyond_the_measured_range_is_counted():
    """Only the context leaves the envelope (4 requests × 6,000+ KV tokens > 20,000)."""
    reqs = [Request(i, 0.0, 6000, 40) for i in range(8)]
    s = _run(reqs, max_prefill_tokens=2048).summary
    assert 0 < s["extrapolated_step_share"] <= 1.0
    short = _run(reqs, cap=1).summary  # one request: at most 6,040 KV tokens
    assert short["extrapolated_steps"] == 0
    assert COST.outside(4, 8, kv_tokens=30000) and not COST.outside(4, 8, kv_tokens=3000)
    assert COST.outside(32, 40, kv_tokens=100)  # requests beyond the drafter's probes
    assert COST.outside(0, 0, prefill_tokens=4096)


def test_requests_longer_than_the_context_are_rejected_or_clamped():
    """As vLLM rejects a request beyond ``max_model_len`` and serves the rest: counted, stated."""
    cost = replace(COST, max_context=1024)
    reqs = [Request(0, 0.0, 100, 50), Request(1, 0.0, 1100, 60), Request(2, 0.0, 10, 2000)]
    seen = []
    s = _run(reqs, cost=cost, on_request=seen.append).summary
    assert (s["requests_rejected_context"], s["requests_completed"]) == (2, 1)
    assert s["requests_clamped_to_context"] == 0 and len(seen) == 3  # the bar counts all three
    assert context_warning(s).startswith("2 of 3 requests (67%) need more than the engine's "
                                         "1024-token context and were rejected")  # fmt: skip
    res = _run(reqs, cost=cost, clamp_to_context=True)
    s = res.summary
    assert s["requests_clamped_to_context"] == 2 and s["requests_completed"] == 3
    assert s["requests_rejected_context"] == 0 and context_warning(s) is None
    r = res.recorder.per_request()
    out = dict(zip(r["id"].astype(int).tolist(), r["output_tokens"].tolist(), strict=True))
    assert out == {0: 50, 1: 60, 2: 1023}  # outputs kept where they fit, prompts trimmed first


def test_cli_states_rejected_requests_and_clamps_on_request(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,20\n0.1,2000,20\n")
    cmd = [sys.executable, "-m", "runner.cli", "replay", "--trace", str(trace), "--quiet"]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectune: warning: 1 of 2 requests (50%)")
    assert '"requests_rejected_context": 1' in proc.stdout
    ok = subprocess.run([*cmd, "--clamp-to-context", "--json"], capture_output=True, text=True,
                        timeout=120)  # fmt: skip
    assert ok.returncode == 0 and "rejected" not in ok.stderr, ok.stderr
    assert '"requests_clamped_to_context": 1' in ok.stdout


def test_monotone_repair_keeps_steps_and_counts_dips():
    jagged = CostModel.from_sps_table([1, 2, 3, 4, 8], [100.0, 90.0, 95.0, 80.0, 50.0])
    t = [jagged.verify_time(1, b) for b in range(1, 9)]
    assert all(b >= a for a, b in zip(t, t[1:], strict=False))  # planning and pricing rise
    assert t[2] == pytest.approx(1 / 90.0)  # the dip at B = 3 lifted to B = 2's level
    assert t[3] == pytest.approx(1 / 80.0)  # the real step up kept
    assert jagged.repaired()["verify"] == 1
    assert jagged.verify.y[2] == pytest.approx(1 / 95.0)  # raw probes kept
    raw = replace(jagged, monotone=False)
    assert raw.verify_time(1, 3) == pytest.approx(1 / 95.0)
    np.testing.assert_array_less(0, jagged.plan_sps(1, 1, 9))


def test_count_beyond_context_looks_at_the_first_n_requests_only():
    reqs = [Request(0, 0.0, 100, 50), Request(1, 0.0, 1100, 60), Request(2, 0.0, 2000, 1)]
    assert count_beyond_context(iter(reqs), 1024, 2) == (1, 2)
    assert count_beyond_context(iter(reqs), 1024, 10) == (2, 3)


def _profiles() -> list:
    from profiles.store import read_cost

    return [COST, read_cost("profiles/data/cpu-tiny.yaml"),
            read_cost("docs/vllm/profile-served.yaml")]  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    which=st.integers(0, 2),
    requests=st.integers(0, 600),
    tokens=st.integers(0, 4000),
    kv=st.integers(0, 400_000),
    prefill=st.integers(0, 8000),
)
def test_outside_terms_name_a_term_exactly_when_outside(which, requests, tokens, kv, prefill):
    """The audit's reasons (``outside_terms``) and the hot path's verdict (``outside``) restate one
    set of conditions: they must agree on every step, on profiles with and without a context
    base and a fused prefill."""
    cost = _profiles()[which]
    terms = cost.outside_terms(requests, tokens, kv, prefill)
    assert bool(terms) == cost.outside(requests, tokens, kv, prefill), terms
