"""The spectune.scheduler/v1 document: round trip, loader API, validation (exit 2, one line)."""

from __future__ import annotations

import json

import pytest
import yaml

from profiles.cost import CostModel
from profiles.errors import InputError
from runner.cli import main
from runner.scheduler import (
    SLA,
    SchedulerConfig,
    StsCalibration,
    cost_hash,
    load_scheduler,
    parse_sla,
    write_scheduler,
)


def small_cost() -> CostModel:
    return CostModel.from_sps_table([1, 8, 9, 64, 65, 512], [200, 200, 150, 150, 90, 40],
                                    max_batch_tokens=512, source="test: hand-written")  # fmt: skip


def make_config(**over) -> SchedulerConfig:
    base = dict(
        policy_name="dspark_lagged",
        params=(("lag", 2), ("min_verify_len", 1), ("max_verify_len", 5), ("survival_eps", 0.05)),
        gamma=7, cost=small_cost(),
        sts=StsCalibration(temperatures=(1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6), dataset="unit",
                           num_samples=10),
        max_concurrency=24, sla=(SLA("tps_per_user_p50", ">=", 80.0),),
        tuned={"load_mode": "concurrency", "load": 24.0, "throughput_tok_s": 1234.5},
        provenance={"seed": 3},
    )  # fmt: skip
    base.update(over)
    return SchedulerConfig(**base)


def test_round_trip_is_identity(tmp_path):
    cfg = make_config()
    write_scheduler(tmp_path / "s.yaml", cfg)
    back = load_scheduler(tmp_path / "s.yaml")
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    doc = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert doc["schema"] == "spectune.scheduler/v1"
    assert doc["verify"] == {"lag_steps": 2, "min_verify_len": 1, "max_verify_len": 5,
                             "survival_eps": 0.05}  # fmt: skip
    assert doc["provenance"]["profile"]["sha256"] == cost_hash(cfg.cost)


def test_loader_api_builds_policy_cost_and_server(tmp_path):
    write_scheduler(tmp_path / "s.yaml", make_config())
    cfg = load_scheduler(tmp_path / "s.yaml")
    policy = cfg.policy()
    assert policy.name == "dspark_lagged" and policy.min_verify_len == 1 and policy.lag == 2
    assert cfg.cost_model().sps(1, [8, 9]).tolist() == pytest.approx([200, 150])
    assert cfg.server_config().max_concurrency == 24 and cfg.server_config().gamma == 7
    assert cfg.sts.temperatures[-1] == 1.6


def test_tuple_parameters_survive_yaml(tmp_path):
    cfg = make_config(policy_name="batch_table",
                      params=(("sizes", (4, 16)), ("ks", (5, 2)), ("default", 0)))  # fmt: skip
    write_scheduler(tmp_path / "s.yaml", cfg)
    assert load_scheduler(tmp_path / "s.yaml").policy().ks == (5, 2)


def test_parse_sla():
    s = parse_sla("tps_per_user_p50>=80")
    assert (s.metric, s.op, s.value) == ("tps_per_user_p50", ">=", 80.0)
    assert s.met({"tps_per_user_p50": 80.0}) and not s.met({"tps_per_user_p50": 79.9})
    assert parse_sla(" ttft_p99_s <= 2 ").met({"ttft_p99_s": 1.5})
    assert not parse_sla("ttft_p99_s<=2").met({"ttft_p99_s": None})
    for bad in ("tps>80", "tps_per_user_p50>=", ">=3", "x>=nan"):
        with pytest.raises(InputError):
            parse_sla(bad)
    with pytest.raises(InputError, match="unknown metric"):
        parse_sla("foo>=1", known=("tps_per_user_p50",))


def _write(tmp_path, mutate) -> str:
    doc = make_config().to_dict()
    mutate(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


BAD = {
    "schema": (lambda d: d.update(schema="spectune.scheduler/v0"), "schema"),
    "policy": (lambda d: d["policy"].update(name="nope"), "unknown policy"),
    "param": (lambda d: d["policy"]["params"].update(lag="two"), "lag"),
    "gamma": (lambda d: d.update(gamma="seven"), "gamma"),
    "cost": (lambda d: d["cost"]["sps"].update(sample_steps_per_sec=[1, 2]), "cost"),
    "hash": (lambda d: d["cost"]["sps"]["sample_steps_per_sec"].__setitem__(0, 999.0), "sha256"),
    "temps": (lambda d: d["sts"].update(temperatures=[1.0, 1.0]), "temperatures"),
    "negative": (lambda d: d["sts"].update(temperatures=[-1.0] * 7), "temperatures"),
    "verify": (lambda d: d["verify"].update(min_verify_len=3), "verify.min_verify_len"),
    "sla": (lambda d: d.update(sla=["fast please"]), "sla"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_documents_raise_naming_the_field(tmp_path, case):
    mutate, needle = BAD[case]
    path = _write(tmp_path, mutate)
    with pytest.raises(InputError) as exc:
        load_scheduler(path)
    assert needle in str(exc.value) and path in str(exc.value)


@pytest.mark.parametrize("text", ["policy: [unclosed", "- just\n- a list\n", ""])
def test_unparsable_yaml_exits_2_with_one_line(tmp_path, capsys, text):
    path = tmp_path / "best.yaml"
    path.write_text(text)
    assert main(["export", "--from", str(path), "--format", "vllm", "--out",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1 and str(path) in err


def test_bad_config_in_replay_exits_2(tmp_path, capsys):
    path = _write(tmp_path, BAD["policy"][0])
    assert main(["replay", "--config", path, "--num-requests", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1
    assert main(["replay", "--config", str(tmp_path / "missing.yaml"), "--quiet"]) == 2


def test_replay_runs_what_was_tuned(tmp_path, capsys):
    """The closed loop on the profiled backend: replay --config runs the tuned policy with its
    parameters, cost table, gamma and concurrency cap."""
    cfg = make_config()
    write_scheduler(tmp_path / "best.yaml", cfg)
    assert main(["replay", "--config", str(tmp_path / "best.yaml"), "--num-requests", "40",
                 "--json", "--quiet"]) == 0  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert s["policy"] == cfg.policy().spec
    assert s["profile"] == "test: hand-written"
    assert s["max_concurrency"] == 24 and s["gamma"] == 7
    assert main(["replay", "--config", str(tmp_path / "best.yaml"), "--max-concurrency", "5",
                 "--num-requests", "20", "--json", "--quiet"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["max_concurrency"] == 5


def test_replay_config_refuses_a_conflicting_gamma(tmp_path, capsys):
    """--gamma against a --config's gamma, or an acceptance model with fewer positions, is an
    error, never a silent clamp."""
    write_scheduler(tmp_path / "best.yaml", make_config())
    base = ["replay", "--config", str(tmp_path / "best.yaml"), "--num-requests", "10", "--quiet"]
    assert main([*base, "--gamma", "5"]) == 2
    assert "conflicts with --config's gamma 7" in capsys.readouterr().err
    assert main([*base, "--acceptance", "builtin:cpu-tiny-mtp1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: --config drafts gamma 7") and err.count("\n") == 1
