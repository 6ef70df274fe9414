"""Shared fixtures: small workloads built in code, the default models, the shared traces folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from profiles.builtin import load_acceptance, load_cost
from simulator.request import Request

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def make_requests(n: int, rate: float, seed: int = 0, domain: str = "chat") -> list[Request]:
    """n Poisson arrivals at ``rate`` req/s with uniform lengths (a fixture, not a model)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    prompts = rng.integers(16, 2048, n)
    outputs = rng.integers(1, 300, n)
    return [Request(i, float(t[i]), int(prompts[i]), int(outputs[i]), domain) for i in range(n)]


@pytest.fixture(scope="session")
def cost():
    return load_cost("builtin:h100-8b")


@pytest.fixture(scope="session")
def acceptance():
    return load_acceptance("paper:qwen3-8b-dspark")


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip("../shared/traces is not beside this checkout")
    return TRACES
