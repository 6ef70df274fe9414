"""The committed vLLM cost profiles (``spectune profile --engine vllm:...``, docs/vllm) load in
``replay`` and ``tune`` and the tuned ``best.yaml`` exports to vLLM (no vLLM needed: simulated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.acceptance import ParametricAcceptance
from profiles.store import acceptance_to_dict, read_cost, write_yaml
from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "docs" / "vllm").glob("profile-*.yaml"))
WORKLOAD = ["--workload", "synthetic", "--num-requests", "16", "--max-prompt-tokens", "64",
            "--max-output-tokens", "16", "--domain-mix", "chat=1", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def acceptance(tmp_path_factory) -> str:
    """A four-position acceptance (vLLM's K = 4 draft model), labelled as made up."""
    path = tmp_path_factory.mktemp("acc") / "acc.yaml"
    model = ParametricAcceptance({"chat": (0.8, 0.75, 0.7, 0.65)}, source="unit: made up")
    write_yaml(path, acceptance_to_dict(model))
    return str(path)


def test_both_committed_profiles_are_there():
    assert [p.name for p in PROFILES] == ["profile-quick-untrained-draft.yaml",
                                          "profile-served.yaml"]  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_a_vllm_profile_loads_in_replay_and_tune(profile, acceptance, tmp_path):
    cost = read_cost(profile)
    assert cost.source.startswith("measured: vLLM")
    rep = tmp_path / "replay"
    assert main(["replay", "--profile", str(profile), "--acceptance", acceptance, "--policy",
                 "fixed:k=4", "--out", str(rep), *WORKLOAD]) == 0  # fmt: skip
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["requests_completed"] == 16 and summary["throughput_tok_s"] > 0
    tune = tmp_path / "tune"
    table = "batch_table:sizes=4;8,ks=4;2,default=2"
    assert main(["tune", "--profile", str(profile), "--acceptance", acceptance, "--gamma", "4",
                 "--policies", f"fixed,{table}", "--quick", "--concurrency", "1,4,8",
                 "--max-concurrency", "8", "--sla", "tps_per_user_p50>=1", "--no-plots",
                 "--out", str(tune), *WORKLOAD]) == 0  # fmt: skip
    assert (tune / "best.yaml").exists()
    exp = tmp_path / "export"
    assert main(["export", "--from", str(tune / "best.yaml"), "--format", "vllm", "--out",
                 str(exp), "--no-simulate"]) == 0  # fmt: skip
    assert json.loads((exp / "speculative_config.json").read_text())["num_speculative_tokens"] >= 1
