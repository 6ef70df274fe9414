"""Shared exports for the engine conformance suites: every format × policy on two profiles."""

from __future__ import annotations

import pytest

from policies import make_policy
from profiles.builtin import DEFAULT_COST, load_cost
from runner.scheduler import SchedulerConfig, StsCalibration

PROFILES = (DEFAULT_COST, "builtin:h100-8b")  # the CPU default and an analytic 8B on one H100
POLICIES = ("none", "fixed:k=3", "batch_table:sizes=4;16,ks=6;2,default=1", "dspark",
            "dspark_lagged")  # fmt: skip
CAP = {DEFAULT_COST: 24, "builtin:h100-8b": 64}  # tuned concurrency caps of the two fixtures


def scheduler(spec: str, profile: str, **over) -> SchedulerConfig:
    """A tuned-scheduler fixture: the policy, the profile's cost model, a calibrated STS."""
    p, cap = make_policy(spec), CAP[profile]
    per_load = [{"load": n, "mean_verify_len": v, "mean_batch_size": n * 0.9}
                for n, v in ((2, 6.8), (cap // 3, 4.4), (cap, 1.2))]  # fmt: skip
    base = dict(policy_name=p.name, params=tuple(p.__dict__.items()), gamma=7,
                cost=load_cost(profile),
                sts=StsCalibration(temperatures=(1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6), dataset="unit",
                              num_samples=10),
                max_concurrency=cap,
                tuned={"load_mode": "concurrency", "load": float(cap), "per_load": per_load},
                provenance={"seed": 3})  # fmt: skip
    base.update(over)
    return SchedulerConfig(**base)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """(profile, policy, format) → (directory, manifest) for every combination, written once."""
    from runner.export import FORMATS, write_export

    root, out = tmp_path_factory.mktemp("exports"), {}
    for i, profile in enumerate(PROFILES):
        for j, spec in enumerate(POLICIES):
            cfg = scheduler(spec, profile)
            for fmt in FORMATS:
                d = root / f"{i}-{j}-{fmt}"
                out[profile, spec, fmt] = (d, write_export(cfg, fmt, d, simulate=False), cfg)
    return out
