"""open_workload and WorkloadSpec: validation, replay transforms, domains, labels, stats."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.errors import InputError
from simulator.request import Request
from simulator.workload import WorkloadSpec, open_workload, parse_domain_mix

DATA = Path(__file__).parent / "data"
GEN = "arrival_s,prompt_tokens,output_tokens\n"


def trace(tmp_path: Path, rows: list[tuple[float, int, int]], name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text(GEN + "".join(f"{t!r},{p},{o}\n" for t, p, o in rows), encoding="utf-8")
    return str(path)


def replay(source: str, **kw) -> list[Request]:
    return list(open_workload(WorkloadSpec(source, **kw)))


ROWS = [(0.0, 10, 5), (1.0, 20, 6), (2.0, 30, 7), (4.0, 40, 8), (8.0, 50, 9)]


# ---- replay transforms ----------------------------------------------------------------------


def test_rate_scale_compresses_time(tmp_path):
    got = replay(trace(tmp_path, ROWS), rate_scale=2.0)
    assert [r.arrival_s for r in got] == [0.0, 0.5, 1.0, 2.0, 4.0]
    slow = replay(trace(tmp_path, ROWS), rate_scale=0.5)
    assert [r.arrival_s for r in slow] == [0.0, 2.0, 4.0, 8.0, 16.0]


def test_window_is_half_open_in_trace_seconds_and_rebased(tmp_path):
    got = replay(trace(tmp_path, ROWS), start_s=1.0, duration_s=3.0, rate_scale=2.0)
    assert [(r.id, r.arrival_s, r.prompt_tokens) for r in got] == [(0, 0.0, 20), (1, 0.5, 30)]
    assert [r.prompt_tokens for r in replay(trace(tmp_path, ROWS), start_s=3.0)] == [40, 50]


def test_limit_counts_after_the_window(tmp_path):
    got = replay(trace(tmp_path, ROWS), start_s=1.0, limit=2)
    assert [r.prompt_tokens for r in got] == [20, 30]


def test_clamps_are_applied_and_counted(tmp_path):
    w = open_workload(
        WorkloadSpec(trace(tmp_path, ROWS), max_prompt_tokens=25, max_output_tokens=7)
    )
    got = list(w)
    assert [r.prompt_tokens for r in got] == [10, 20, 25, 25, 25]
    assert [r.output_tokens for r in got] == [5, 6, 7, 7, 7]
    assert (w.stats.prompts_clamped, w.stats.outputs_clamped, w.stats.requests) == (3, 2, 5)


def test_stats_reset_on_each_pass(tmp_path):
    w = open_workload(WorkloadSpec(trace(tmp_path, ROWS), max_prompt_tokens=25))
    first, second = list(w), list(w)
    assert first == second
    assert (w.stats.rows_read, w.stats.prompts_clamped, w.stats.requests) == (5, 3, 5)


# deadline=None: each example writes a file, and the machine is shared (timings vary)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    gaps=st.lists(st.floats(0, 50), min_size=1, max_size=40),
    scale=st.floats(0.1, 100),
    start=st.none() | st.floats(0, 500),
    duration=st.none() | st.floats(0.01, 500),
    limit=st.none() | st.integers(1, 50),
    max_p=st.none() | st.integers(1, 100),
)
def test_replay_invariants(tmp_path, gaps, scale, start, duration, limit, max_p):
    """Whatever the options: ids 0..n-1, arrivals non-decreasing from 0, rows kept in order."""
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    rows = [(t, 1 + i % 120, 1 + i) for i, t in enumerate(times)]
    spec = dict(rate_scale=scale, start_s=start, duration_s=duration, limit=limit)
    w = open_workload(WorkloadSpec(trace(tmp_path, rows), max_prompt_tokens=max_p, **spec))
    got = list(w)
    lo, hi = start or 0.0, (start or 0.0) + (duration if duration is not None else math.inf)
    kept = [r for r in rows if lo <= r[0] < hi][: limit or len(rows)]
    assert [r.id for r in got] == list(range(len(got)))
    assert [r.output_tokens for r in got] == [r[2] for r in kept]
    assert all(0 <= a.arrival_s <= b.arrival_s for a, b in zip(got, got[1:], strict=False))
    for r, (t, p, _) in zip(got, kept, strict=True):
        assert r.arrival_s == pytest.approx((t - lo) / scale)
        assert r.prompt_tokens == min(p, max_p or p)
    assert w.stats.prompts_clamped == sum(p > (max_p or p) for _, p, _ in kept)
    assert w.stats.requests == len(got)


@settings(deadline=None)
@given(st.sampled_from(["synthetic", "builtin:azure-conv-like", "builtin:azure-code-like"]),
       st.integers(0, 2**32), st.integers(1, 300), st.floats(0.05, 10))  # fmt: skip
def test_synthetic_replays_in_order_and_deterministically(source, seed, n, burstiness):
    spec = WorkloadSpec(source, seed=seed, num_requests=n, burstiness=burstiness, request_rate=3.0)
    got = list(open_workload(spec))
    assert got == list(open_workload(spec))
    assert len(got) == n and [r.id for r in got] == list(range(n))
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(got, got[1:], strict=False))
    assert all(r.prompt_tokens >= 1 and r.output_tokens >= 1 for r in got)


def test_builtin_defaults_and_overrides():
    conv = open_workload(WorkloadSpec("builtin:azure-conv-like"))
    got = list(conv)
    assert len(got) == 1000 and {r.domain for r in got} == {"chat"}
    assert "5.53 req/s" in conv.label and "burstiness 0.871" in conv.label
    code = list(open_workload(WorkloadSpec("builtin:azure-code-like", num_requests=50)))
    assert len(code) == 50 and {r.domain for r in code} == {"code"}
    fast = list(open_workload(WorkloadSpec("builtin:azure-conv-like", request_rate=math.inf)))
    assert {r.arrival_s for r in fast} == {0.0}
    assert [r.prompt_tokens for r in fast] == [r.prompt_tokens for r in got]  # same seed streams


def test_synthetic_defaults_follow_vllm():
    got = replay("synthetic", num_requests=10)
    assert {(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in got} == {(0.0, 1024, 128)}


# ---- domains --------------------------------------------------------------------------------


def test_domain_mix_is_drawn_deterministically_for_traces(tmp_path):
    rows = [(float(i), 10, 10) for i in range(3000)]
    mix = parse_domain_mix("chat=0.5,code=0.5")
    a = [r.domain for r in replay(trace(tmp_path, rows), domain_mix=mix, seed=3)]
    assert a == [r.domain for r in replay(trace(tmp_path, rows), domain_mix=mix, seed=3)]
    assert a != [r.domain for r in replay(trace(tmp_path, rows), domain_mix=mix, seed=4)]
    assert 1300 < Counter(a)["code"] < 1700


def test_azure_code_default_domain_can_be_overridden():
    assert {r.domain for r in replay(str(DATA / "azure_code_tiny.csv"))} == {"code"}
    got = replay(str(DATA / "azure_code_tiny.csv"), domain_mix="math")
    assert {r.domain for r in got} == {"math"}


def test_domain_mix_conflicts_with_a_domain_column():
    with pytest.raises(InputError, match="labels its own domains"):
        open_workload(WorkloadSpec(str(DATA / "generic_tiny.csv"), domain_mix="chat"))


def test_parse_domain_mix():
    assert parse_domain_mix("chat=0.6,code=0.3,math=0.1") == (
        ("chat", 0.6),
        ("code", 0.3),
        ("math", 0.1),
    )
    assert parse_domain_mix(" chat = 3 , code=1") == (("chat", 0.75), ("code", 0.25))
    assert parse_domain_mix("code") == (("code", 1.0),)
    assert WorkloadSpec("synthetic", domain_mix={"a": 1, "b": 3}).domain_mix == (
        ("a", 0.25),
        ("b", 0.75),
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("chat=x", "is not a number"),
        ("chat=0.5,chat=0.5", "given twice"),
        ("=0.5", "bad domain name"),
        ("chat=-1", "must be finite and >= 0"),
        ("chat=nan", "is not a number"),
        ("chat=0,code=0", "sum to 0"),
        ("chat=1,", "bad domain name"),
    ],
)
def test_parse_domain_mix_rejects(text, fragment):
    with pytest.raises(InputError, match=fragment) as err:
        parse_domain_mix(text)
    assert err.value.where == "domain_mix"


# ---- spec validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, where",
    [
        (dict(source=""), "source"),
        (dict(source="builtin:nope"), "source"),
        (dict(source="t.csv", format="xml"), "format"),
        (dict(source="synthetic", format="azure"), "format"),
        (dict(source="t.csv", request_rate=2.0), "request_rate"),
        (dict(source="t.csv", burstiness=2.0), "burstiness"),
        (dict(source="t.csv", num_requests=5), "num_requests"),
        (dict(source="t.csv", rate_scale=0.0), "rate_scale"),
        (dict(source="t.csv", rate_scale=math.inf), "rate_scale"),
        (dict(source="t.csv", rate_scale=math.nan), "rate_scale"),
        (dict(source="t.csv", limit=0), "limit"),
        (dict(source="t.csv", limit=2.5), "limit"),
        (dict(source="t.csv", start_s=-1.0), "start_s"),
        (dict(source="t.csv", duration_s=0.0), "duration_s"),
        (dict(source="t.csv", max_prompt_tokens=0), "max_prompt_tokens"),
        (dict(source="t.csv", max_output_tokens=True), "max_output_tokens"),
        (dict(source="synthetic", request_rate=-1.0), "request_rate"),
        (dict(source="synthetic", burstiness=0.0), "burstiness"),
        (dict(source="synthetic", burstiness=math.inf), "burstiness"),
        (dict(source="synthetic", num_requests=0), "num_requests"),
        (dict(source="synthetic", seed=-1), "seed"),
        (dict(source="synthetic", domain_mix=(("a", 1, 2),)), "domain_mix"),
        (dict(source="synthetic", domain_mix=5), "domain_mix"),
        (dict(source="synthetic", domain_mix=(3,)), "domain_mix"),
        (dict(source="synthetic", domain_mix={"a": "1"}), "domain_mix"),
        (dict(source="t.csv", start_s="10"), "start_s"),
        (dict(source="t.csv", start_s=math.inf), "start_s"),
        (dict(source="t.csv", rate_scale="2"), "rate_scale"),
        (dict(source="t.csv", skip_bad_rows="yes"), "skip_bad_rows"),
        (dict(source=None), "source"),
    ],
)
def test_spec_validation(kw, where):
    with pytest.raises(InputError) as err:
        WorkloadSpec(**kw)
    assert err.value.where == where


def test_spec_is_frozen_and_synthetic_rate_may_be_infinite():
    spec = WorkloadSpec("synthetic", request_rate=math.inf)
    with pytest.raises(AttributeError):
        spec.seed = 1  # type: ignore[misc]


def test_labels(tmp_path):
    path = trace(tmp_path, ROWS, name="azure_llm_2023_conv.csv")
    label = open_workload(WorkloadSpec(path, rate_scale=2.0, limit=3)).label
    assert label == "generic trace azure_llm_2023_conv.csv (rate x2, first 3)"
    label = open_workload(WorkloadSpec(str(DATA / "azure_conv_tiny.csv"), start_s=10.0)).label
    assert label == "azure trace azure_conv_tiny.csv (window 10s-end)"
    label = open_workload(WorkloadSpec("builtin:azure-code-like")).label
    assert label.startswith("builtin:azure-code-like (synthetic, fitted to Azure LLM inference")
