"""The compiled step path (simulator/compiled.py) gives exactly the reference path's results:
same summary apart from the ``wall`` object, same per-request columns, same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies import make_policy
from policies.base import Policy
from profiles.builtin import load_acceptance, load_cost
from simulator.request import Request
from simulator.run import simulate
from simulator.server import Server, ServerConfig
from tests.conftest import make_requests

POLICIES = ["none", "fixed:k=1", "fixed:k=5", "batch_table", "dspark", "global_sync",
            "dspark:min_verify_len=1,max_verify_len=4,survival_eps=0.05",
            "dspark:objective=verify", "dspark_lagged", "dspark_lagged:lag=1"]  # fmt: skip
# light: a few requests running at a time; saturated: the queue never empties (cap 16)
LOADS = {"light": (120, 2.0, 64), "saturated": (200, 400.0, 16)}


def _both(reqs, spec, cost, acceptance, **cfg):
    config = ServerConfig(**cfg)
    out = []
    for compiled in (False, True):
        res = simulate(reqs, make_policy(spec), cost, acceptance, config, seed=11,
                       compiled=compiled)  # fmt: skip
        res.summary.pop("wall")
        out.append((json.dumps(res.summary, sort_keys=True), res.recorder.arrays()))
    return out


def _same(out):
    (ref, ref_cols), (fast, fast_cols) = out
    assert fast == ref
    for key, col in ref_cols.items():
        np.testing.assert_array_equal(fast_cols[key], col, err_msg=key)


# h100: paged context, prompt chunks fused into the verify forward; the CPU default: padded
# context, padding and ragged terms (policies/padded.py plans at the longest request)
SETUPS = {
    "h100-colocated": ("builtin:h100-8b", "colocated"),
    "h100-disaggregated": ("builtin:h100-8b", "disaggregated"),
    "cpu-colocated": ("builtin:cpu-tiny-additive", "colocated"),
    "cpu-disaggregated": ("builtin:cpu-tiny-additive", "disaggregated"),
}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("load", LOADS)
@pytest.mark.parametrize("spec", POLICIES)
def test_compiled_equals_reference(spec, load, setup, acceptance):
    n, rate, cap = LOADS[load]
    cost_spec, prefill = SETUPS[setup]
    if setup == "cpu-disaggregated" and spec not in ("dspark", "dspark_lagged", "global_sync"):
        pytest.skip("the CPU engine's disaggregated runs are covered by the prefix schedulers")
    cost = load_cost(cost_spec)
    if cost_spec.startswith("builtin:cpu"):  # the CPU engine runs ~20x slower: fewer arrivals
        rate /= 20.0
    out = _both(make_requests(n, rate, seed=5), spec, cost, acceptance, max_concurrency=cap,
                prefill=prefill)  # fmt: skip
    _same(out)
    assert json.loads(out[0][0])["decode_steps"] > n  # the run did decode


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("spec", ["dspark", "dspark_lagged", "fixed:k=2"])
def test_compiled_equals_reference_padded_kv_limited(spec, records, acceptance):
    """The CPU default (additive cost, padded context, padding terms) with a KV budget and
    short prefill chunks, so admissions stall and prompts span several steps; acceptance from
    the paper (compiled draws) or from recorded rounds (the model's own draws)."""
    cost = load_cost("builtin:cpu-tiny-additive")
    if records:
        acceptance = load_acceptance("builtin:cpu-tiny-dspark")
    rng = np.random.default_rng(3)
    reqs = [
        Request(i, float(t), int(p), int(o), d)
        for i, (t, p, o, d) in enumerate(
            zip(
                np.cumsum(rng.exponential(0.05, 150)),
                rng.integers(8, 600, 150),
                rng.integers(1, 300, 150),
                rng.choice(["code", "chat", "math"], 150),
                strict=True,
            )
        )
    ]
    out = _both(reqs, spec, cost, acceptance, max_concurrency=8, kv_capacity_tokens=3000,
                max_prefill_tokens=256, gamma=5)  # fmt: skip
    _same(out)


def _server(policy, cost_spec="builtin:h100-8b", acc=None, compiled=True, **cfg):
    from simulator.backend import ProfiledBackend

    cost = load_cost(cost_spec)
    acc = acc or load_acceptance("paper:qwen3-8b-dspark")
    backend = ProfiledBackend(cost, acc, 8, 0, 7)
    policy = make_policy(policy) if isinstance(policy, str) else policy
    config = ServerConfig(max_concurrency=8, **cfg)
    return Server(config, policy, backend, cost=cost, compiled=compiled)


@pytest.mark.parametrize("spec", ["dspark", "dspark_lagged", "global_sync", "fixed:k=2"])
@pytest.mark.parametrize("cost_spec", ["builtin:h100-8b", "builtin:cpu-tiny-additive"])
@pytest.mark.parametrize("prefill", ["colocated", "disaggregated"])
def test_fast_path_runs_fused_padded_and_disaggregated(spec, cost_spec, prefill):
    """Fused prompt chunks (h100), planning at the longest request (the CPU default) and a
    decode-only instance all take the compiled path."""
    s = _server(spec, cost_spec, prefill=prefill)
    assert s.fast_declined is None and s._fast is not None


def test_fast_path_declines_with_its_reason():
    """Where the compiled path does not apply the server says why, and runs the reference."""
    from policies.dspark import DSpark

    class Mine(DSpark):
        def decide(self, conf, valid, ctx):
            return super().decide(conf, valid, ctx)

    records = load_acceptance("builtin:cpu-tiny-dspark")
    cases = {
        "compiled=False": _server("dspark", compiled=False),
        "has no compiled decision": _server("clairvoyant"),
        "defines decide, not the kernel": _server(Mine()),
        "position-replay": _server("dspark", "builtin:cpu-tiny-additive", records),
        "beyond the dense tables": _server("dspark", max_prefill_tokens=65_500),
    }
    for reason, s in cases.items():
        assert s._fast is None and reason in s.fast_declined, (reason, s.fast_declined)
    assert Policy().kernel(7) is None


def test_a_planning_table_wrapper_takes_the_reference_path():
    """An engine's table for planning (the SGLang export's gap simulation) forwards every other
    attribute to the wrapped model: the compiled planner would read the wrapped tables."""
    from profiles.sglang import PlannedCost, Table
    from simulator.backend import ProfiledBackend

    cost = load_cost("builtin:h100-8b")
    table = {"sps_table": {"1": {"1": 100.0, "8": 90.0}}}
    planned = PlannedCost(cost, Table(table))
    backend = ProfiledBackend(cost, load_acceptance("paper:qwen3-8b-dspark"), 8, 0, 7)
    s = Server(ServerConfig(max_concurrency=8), make_policy("dspark"), backend, cost=planned)
    assert s._fast is None and "not a CostModel" in s.fast_declined


def test_kernel_names_agree():
    """The eligibility rule (no numba import) knows the kernels policies/kernels.py compiles."""
    from policies import kernels
    from simulator import eligibility

    assert set(eligibility._KERNELS) == set(kernels.KERNELS)


def test_cached_code_is_stamped_with_every_compiled_file():
    """``run`` inlines the kernels, so its cache entry goes stale with either file: numba's
    cache stamps every function of both files with both files (policies/jitcache.py)."""
    from policies import jitcache, kernels
    from simulator import compiled, streams

    assert jitcache.REGISTERED
    for fn in (compiled.run, kernels.decide, streams.fill, streams.join):
        locator = fn._cache._impl._locator
        assert isinstance(locator, jitcache._Stamped)
        assert len(locator.get_source_stamp()) == len(jitcache.FILES) == 3


def test_without_numba_the_reference_runs():
    """A checkout without numba (``import numba`` fails) still simulates, on the reference."""
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from policies import make_policy\n"
        "from profiles.builtin import load_acceptance, load_cost\n"
        "from simulator.backend import ProfiledBackend\n"
        "from simulator.server import Server, ServerConfig\n"
        "from tests.conftest import make_requests\n"
        "cost, acc = load_cost('builtin:h100-8b'), load_acceptance('paper:qwen3-8b-dspark')\n"
        "s = Server(ServerConfig(max_concurrency=8), make_policy('dspark'),\n"
        "           ProfiledBackend(cost, acc, 8, 0, 7), cost=cost)\n"
        "rec = s.run(make_requests(20, 5.0))\n"
        "print(s._fast is None, rec.summary()['requests_completed'])\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=True)
    assert out.stdout.split() == ["True", "20"]
