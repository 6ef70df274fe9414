"""The closed loop: a tuned scheduler (best.yaml) runs in the engine exactly as it was tuned."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from engine import checkpoint  # noqa: E402
from profiles.builtin import load_cost  # noqa: E402
from runner.cli import main  # noqa: E402
from runner.scheduler import SchedulerConfig, StsCalibration, cost_hash, write_scheduler  # noqa: E402

pytestmark = pytest.mark.skipif(
    not checkpoint.path_of("dspark").exists(), reason="committed checkpoints missing"
)
TEMPS = (1.3, 1.2, 1.1, 1.0, 0.9, 0.9, 0.8)


@pytest.fixture
def best(tmp_path):
    cfg = SchedulerConfig(
        policy_name="dspark_lagged",
        params=(("lag", 2), ("min_verify_len", 1), ("max_verify_len", 5), ("survival_eps", 0.01)),
        gamma=7,
        cost=load_cost("builtin:h100-8b"),
        sts=StsCalibration(temperatures=TEMPS, dataset="test", num_samples=10),
        max_concurrency=4,
    )
    path = tmp_path / "best.yaml"
    write_scheduler(path, cfg)
    return path, cfg


def test_decode_runs_the_tuned_policy_cost_and_temperatures(best, capsys):
    path, cfg = best
    args = ["decode", "--config", str(path), "--prompt", "def f(x):", "--max-new-tokens", "24",
            "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == cfg.policy().spec
    assert out["config"]["cost_sha256"] == cost_hash(cfg.cost)
    assert tuple(out["config"]["sts_temperatures"]) == TEMPS
    assert len(out["tokens"]) == 24


def test_live_replay_runs_the_tuned_scheduler(best, capsys):
    path, cfg = best
    args = ["replay", "--backend", "live", "--config", str(path), "--num-requests", "4",
            "--max-output-tokens", "16", "--max-prompt-tokens", "32", "--json", "--quiet",
            "--live-timing", "cost"]  # fmt: skip
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["policy"] == cfg.policy().spec and s["requests_completed"] == 4
    assert s["profile"] == cfg.cost.source and s["max_concurrency"] == cfg.max_concurrency


def test_gamma_mismatch_is_refused(tmp_path, capsys):
    cfg = SchedulerConfig(policy_name="fixed", params=(("k", 2),), gamma=5,
                          cost=load_cost("builtin:h100-8b"),
                          sts=StsCalibration.identity(5))  # fmt: skip
    write_scheduler(tmp_path / "b.yaml", cfg)
    rc = main(["decode", "--config", str(tmp_path / "b.yaml"), "--prompt", "x"])
    assert rc == 2 and "tuned for gamma 5" in capsys.readouterr().err
