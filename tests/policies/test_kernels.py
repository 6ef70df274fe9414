"""The compiled decisions (policies/kernels.py) return exactly what each policy's ``decide``
returns, step by step, on random batches (ties, zero and one confidences, prefill steps)."""

from __future__ import annotations

import numpy as np
import pytest

from policies import kernels, make_policy, registry
from policies.base import StepContext
from profiles.builtin import load_cost
from simulator.compiled import tables

SPECS = ["none", "fixed:k=1", "fixed:k=9", "batch_table", "batch_table:sizes=2;4,ks=6;2,default=1",
         "dspark", "dspark:min_verify_len=2,max_verify_len=5,survival_eps=0.05",
         "dspark:objective=verify", "global_sync", "global_sync:min_verify_len=1",
         "dspark_lagged", "dspark_lagged:lag=1,min_verify_len=1,survival_eps=0.1",
         "dspark_lagged:objective=verify"]  # fmt: skip
COSTS = ["builtin:h100-8b", "builtin:cpu-tiny-additive", "builtin:cpu-tiny"]


def _batch(rng, r, gamma):
    conf = rng.random((r, gamma)) ** rng.uniform(0.05, 3.0)
    conf[rng.random((r, gamma)) < 0.1] = 1.0
    conf[rng.random((r, gamma)) < 0.05] = 0.0
    if r > 1:  # repeated rows: ties across requests
        conf[rng.integers(0, r, r // 3)] = conf[0]
    return conf


@pytest.mark.parametrize("cost_spec", COSTS)
@pytest.mark.parametrize("spec", SPECS)
def test_kernel_equals_decide(spec, cost_spec):
    policy, cost = make_policy(spec), load_cost(cost_spec)
    plan = tables(cost)
    name, params = policy.kernel(7)
    code, params = kernels.KERNELS[name], np.asarray(params, dtype=float)
    lag = getattr(policy, "lag", 0)
    rng = np.random.default_rng(abs(hash((spec, cost_spec))) % 2**32)
    for trial in range(60):
        r = int(rng.choice([1, 2, 3, 5, 8, 17, 64, 65, 200]))
        gamma = int(rng.choice([1, 3, 7]))
        conf, stale = _batch(rng, r, gamma), _batch(rng, r, gamma)
        known = rng.random(r) < 0.7
        kv = int(rng.integers(0, 400_000))
        prefill = int(rng.choice([0, 0, 512]))  # fused into the verify forward on h100
        rate = float(rng.choice([0.0, rng.uniform(10, 5000)]))
        ctx = StepContext(cost=cost, kv_tokens=kv, prefill_tokens=prefill, rate=rate)
        if lag:
            ctx.lagged = np.stack([stale] + [rng.random((r, gamma))] * (lag - 1))
            ctx.lagged_known = np.stack([known] + [np.ones(r, bool)] * (lag - 1))
        want = policy.decide(conf, None, ctx)
        got = np.full(r, -1, dtype=np.int64)
        kernels.decide(code, params, plan, conf, kv, prefill, rate, stale, known, got)
        assert got.tolist() == want.tolist(), (trial, r, gamma, kv, prefill, rate)


def test_kernel_names_exist():
    """Every registered policy either has no kernel or names one in KERNELS."""
    for name in registry.available():
        spec = make_policy(name).kernel(7)
        assert spec is None or spec[0] in kernels.KERNELS, name


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 300, 1000, 1792, 4099])
def test_pairwise_sum_is_numpys(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        a = rng.random(n) ** rng.uniform(0.1, 8)
        assert kernels.pairwise_sum(a) == float(a.sum())
