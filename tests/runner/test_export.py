"""Export formats: every writer round-trips through its validating loader, and means the same
(the engines' own code judges the files in tests/engines/)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from policies import make_policy
from profiles.cost import CostModel
from profiles.curve import Curve
from profiles.errors import InputError
from profiles.sglang import Table
from runner.cli import main
from runner.export import FORMATS, batch_table, load_export, write_export
from runner.scheduler import SLA, SchedulerConfig, StsCalibration, write_scheduler
from simulator.workload import WorkloadSpec
from tests.runner.test_scheduler import make_config

CAP = 40


def config(spec: str, **over) -> SchedulerConfig:
    p = make_policy(spec)
    per_load = [{"load": n, "mean_verify_len": v, "mean_batch_size": n * 0.9}
                for n, v in ((2, 6.8), (8, 6.6), (16, 4.4), (40, 1.2))]  # fmt: skip
    tuned = {"load_mode": "concurrency", "load": 16.0, "per_load": per_load}
    return make_config(policy_name=p.name, params=tuple(p.__dict__.items()),
                       max_concurrency=CAP, tuned=tuned, **over)  # fmt: skip


def k_for_table(sizes, ks, r: int, beyond: int) -> int:
    i = int(np.searchsorted(sizes, r, side="left"))
    return ks[i] if i < len(ks) else beyond


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("spec", ["fixed:k=3", "batch_table:sizes=4;16,ks=6;2,default=1",
                                  "dspark_lagged:min_verify_len=1", "dspark", "none"])  # fmt: skip
def test_every_format_round_trips(tmp_path, fmt, spec):
    cfg = config(spec)
    m = write_export(cfg, fmt, tmp_path, simulate=False)
    docs = load_export(fmt, tmp_path)
    assert set(m["files"]) - {"launch.sh"} == set(docs)
    assert json.loads((tmp_path / "export.json").read_text())["exact"] == m["exact"]
    near = make_policy(m["exported_policy"])
    # the files express the exported policy at every batch size the server can reach, and an
    # exact export behaves as the tuned policy there
    for r in range(1, CAP + 1):
        want = _drafts(near, r, cfg.gamma)
        if want is not None:
            assert _expressed(fmt, docs, m, r) == want, (fmt, spec, r)
            if m["exact"]:
                assert _drafts(cfg.policy(), r, cfg.gamma) == want


def _drafts(policy, r: int, gamma: int) -> int | None:
    """Drafts verified per request at batch size r, for confidence-free policies."""
    if policy.name == "fixed":
        return min(policy.k, gamma)
    if policy.name == "none":
        return 0
    if policy.name == "batch_table":
        return min(policy.k_for(r), gamma)
    return None


def _expressed(fmt: str, docs: dict, m: dict, r: int) -> int | None:
    """Drafts per request the engine runs at batch size r, read as the engine reads the files."""
    if fmt == "spectune":
        return _drafts(docs["scheduler.yaml"].policy(), r, docs["scheduler.yaml"].gamma)
    if fmt == "sglang":
        argv, flag = m["launch"]["argv"], "--speculative-dspark-block-size"
        if "--speculative-algorithm" not in argv:
            return 0
        static = m["launch"]["env"].get("SGLANG_RAGGED_VERIFY_MODE") == "static"
        return int(argv[argv.index(flag) + 1]) if static else None  # else: tests/engines
    if not docs:
        return 0  # no speculation configured
    if fmt == "vllm":
        d = docs["speculative_config.json"]
        rows = d.get("num_speculative_tokens_per_batch_size")
        if not rows:
            return d["num_speculative_tokens"]
        row = next((x for x in rows if x[0] <= r <= x[1]), rows[-1])  # tail carries forward
        return min(row[2], d["num_speculative_tokens"])
    if fmt == "trtllm":
        sc = docs["speculative_config.yaml"]["speculative_config"]
        sched = sc.get("draft_len_schedule") or {
            sc.get("max_concurrency") or CAP: sc["max_draft_len"]
        }
        keys = sorted(sched)
        return k_for_table(keys, [sched[k] for k in keys], r, 0)
    if fmt == "sglang-adaptive":
        slots = sorted(int(k) for k in docs["adaptive.json"])
        slot = max(s for s in slots if s <= r)
        return docs["adaptive.json"][str(slot)]["candidate_steps"][0]
    return None


def test_sglang_static_and_off_exports_are_launch_recipes(tmp_path):
    m = write_export(config("fixed:k=3"), "sglang", tmp_path / "f", simulate=False)
    argv, env = m["launch"]["argv"], m["launch"]["env"]
    assert m["files"] == ["launch.sh"] and env == {"SGLANG_RAGGED_VERIFY_MODE": "static"}
    assert argv[argv.index("--speculative-dspark-block-size") + 1] == "3"
    m = write_export(config("none"), "sglang", tmp_path / "n", simulate=False)
    assert "--speculative-algorithm" not in m["launch"]["argv"] and m["exact"]


def test_sglang_1d_table_is_the_whole_step_at_every_batch_token(tmp_path):
    cfg = config("dspark_lagged")
    m = write_export(cfg, "sglang", tmp_path, simulate=False)
    t = load_export("sglang", tmp_path)["sps_table.json"]
    top = CAP * (cfg.gamma + 1)
    assert t["sample_batch_tokens"] == list(range(1, top + 1)) and t["max_batch_tokens"] == top
    c = cfg.cost
    for b in (1, 9, 64, 65, top):
        r = -(-b // (cfg.gamma + 1))
        want = c.verify_time(r, b) + c.draft_time(r)
        assert 1 / t["sample_steps_per_sec"][b - 1] == pytest.approx(want)
    env = m["launch"]["env"]
    assert env == {"SGLANG_RAGGED_VERIFY_MODE": "compact",
                   "SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS": "2"}  # fmt: skip
    assert "--max-running-requests" in m["launch"]["argv"] and not m["exact"]
    assert "schedule.json" not in m["files"]


def test_sglang_additive_table_is_the_whole_step_in_sglang_gauge(tmp_path):
    cost = CostModel.additive(0.002, [1, 16, 64], [0.001, 0.002, 0.006], [1, 128, 512],
                              [0.0005, 0.003, 0.011], source="test: additive")  # fmt: skip
    cost = replace(cost, draft=Curve((1.0, 40.0), (0.0004, 0.001)))
    cfg = config("dspark_lagged", cost=cost)
    write_export(cfg, "sglang", tmp_path, simulate=False)
    t = load_export("sglang", tmp_path)["sps_table.json"]
    assert t["alpha_seconds"][0] == 0 and t["theta_seconds"][0] == 0 and t["bias_seconds"] > 0
    assert t["bs_probes"][-1] == CAP and t["m_probes"][-1] == CAP * 8
    table = Table(t)
    for bs, m in ((1, 1), (16, 128), (40, 320), (16, 300)):
        want = cost.verify_time(bs, m) + cost.draft_time(bs)
        assert table.step_seconds(bs, np.array([m]))[0] == pytest.approx(want)


def test_vllm_dspark_style_sets_adaptive_verification(tmp_path):
    cfg = config("dspark_lagged:max_verify_len=5")
    m = write_export(cfg, "vllm", tmp_path, simulate=False)
    d = load_export("vllm", tmp_path)["speculative_config.json"]
    assert d == {"method": "dspark", "model": "$DRAFT", "num_speculative_tokens": 5,
                 "enable_adaptive_verification": True}  # fmt: skip
    assert not m["exact"] and m["launch"]["placeholders"] == ["MODEL", "DRAFT"]
    assert "--max-num-seqs" in m["launch"]["argv"]


def test_derived_table_follows_the_tuned_verify_budget():
    sizes, ks = batch_table(config("dspark_lagged"))
    assert sizes == (8, 16, 40) and ks == (7, 4, 1)  # rounded 6.8, 6.6 | 4.4 | 1.2


def test_approximation_is_simulated_when_provenance_allows(tmp_path):
    prov = {"workload": {"spec": {"source": "builtin:azure-conv-like", "seed": 0}},
            "acceptance": {"spec": "paper:qwen3-8b-dspark"}, "seed": 0,
            "tune": {"requests": 30, "per_user": 2}}  # fmt: skip
    cfg = config("dspark_lagged:min_verify_len=1", provenance=prov,
                 sla=(SLA("tps_per_user_p50", ">=", 1.0),))  # fmt: skip
    m = write_export(cfg, "trtllm", tmp_path)
    a = m["approximation"]
    assert a["simulated"] and a["load"] == 16.0
    assert a["tuned"]["policy"] == cfg.policy().spec
    assert a["exported"]["policy"] == m["exported_policy"].replace("batch_table", "batch_table")
    assert a["throughput_change"] == pytest.approx(
        a["exported"]["throughput_tok_s"] / a["tuned"]["throughput_tok_s"] - 1
    )
    assert WorkloadSpec(**prov["workload"]["spec"]).source == "builtin:azure-conv-like"


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("sps_table.json", '{"sample_batch_tokens": [4, 2], "sample_steps_per_sec": [1, 1], '
                       '"max_batch_tokens": 8}', "strictly increasing"),
    ("sps_table.json", '{"bias_seconds": 0, "bs_probes": [1], "alpha_seconds": [0], '
                       '"m_probes": [1], "theta_seconds": [0]}', "bias_seconds"),
    ("sts.json", '{"temperatures": []}', "temperatures"),
    ("sts.json", '{"temperatures": [1, 1, 1, 1, 1, 1, 0]}', "positive"),
    ("sts.json", '{"temperatures": [1, 1, 1]}', "block size"),
    ("sps_table.json", "{not json", "cannot parse"),
])  # fmt: skip
def test_sglang_loader_rejects_what_sglang_rejects(tmp_path, name, text, needle):
    write_export(config("dspark_lagged"), "sglang", tmp_path, simulate=False)
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=needle) as exc:
        load_export("sglang", tmp_path)
    assert name in str(exc.value)


@pytest.mark.parametrize(("fmt", "spec", "name", "text"), [
    ("vllm", "fixed:k=2", "speculative_config.json", '{"method": "eagle3", "model": "m", '
     '"num_speculative_tokens": 3, "num_speculative_tokens_per_batch_size": '
     '[[1, 8, 3], [4, 16, 1]]}'),
    ("vllm", "fixed:k=2", "speculative_config.json", '{"method": "eagle3", "model": "m", '
     '"num_speculative_tokens": 3, "num_speculative_tokens_per_batch_size": [[2, 8, 3]]}'),
    ("vllm", "fixed:k=2", "speculative_config.json", '{"num_speculative_tokens": 3}'),
    ("vllm", "fixed:k=2", "speculative_config.json", '{"method": "m", "model": "m", '
     '"num_speculative_tokens": 0}'),
    ("trtllm", "fixed:k=2", "speculative_config.yaml", "speculative_config: {max_draft_len: 3, "
     "draft_len_schedule: {4: 5}}"),
    ("trtllm", "fixed:k=2", "speculative_config.yaml", "speculative_config: {max_draft_len: 3, "
     "draft_len_schedule: {4: 2, 8: 1}}"),
    ("trtllm", "fixed:k=2", "speculative_config.yaml", "speculative_config: {max_draft_len: 3, "
     "draft_len_schedule: {4: 3}, max_concurrency: 4}"),
    ("sglang-adaptive", "fixed:k=2", "adaptive.json", '{"ema_alpha": 0.2}'),
    ("sglang-adaptive", "fixed:k=2", "adaptive.json", '{"1": {"candidate_steps": [-1]}}'),
    ("vllm", "fixed:k=2", "launch.sh", None),
])  # fmt: skip
def test_table_loaders_reject_bad_files(tmp_path, fmt, spec, name, text):
    write_export(config(spec), fmt, tmp_path, simulate=False)
    if text is None:
        (tmp_path / name).unlink()
    else:
        (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as exc:
        load_export(fmt, tmp_path)
    assert name in str(exc.value)


def test_export_cli_all_formats_and_bad_input(tmp_path, capsys):
    write_scheduler(tmp_path / "best.yaml", config("fixed:k=2"))
    out = tmp_path / "out"
    assert main(["export", "--from", str(tmp_path / "best.yaml"), "--format", "all", "--out",
                 str(out), "--no-simulate"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    for fmt in FORMATS:
        assert (out / fmt / "export.json").is_file() and fmt in text
    assert main(["export", "--from", str(tmp_path / "nope.yaml"), "--format", "vllm", "--out",
                 str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1


def test_uncalibrated_sts_exports_identity(tmp_path):
    cfg = config("dspark_lagged", sts=StsCalibration())
    write_export(cfg, "sglang", tmp_path, simulate=False)
    assert load_export("sglang", tmp_path)["sts.json"] == {"temperatures": [1.0] * 7}


def test_sglang_approximation_plans_with_the_exported_table(tmp_path):
    prov = {"workload": {"spec": {"source": "builtin:azure-conv-like", "seed": 0}},
            "acceptance": {"spec": "paper:qwen3-8b-dspark"}, "seed": 0,
            "tune": {"requests": 30, "per_user": 2}}  # fmt: skip
    cfg = config("dspark_lagged", provenance=prov, sla=(SLA("tps_per_user_p50", ">=", 1.0),))
    a = write_export(cfg, "sglang", tmp_path)["approximation"]
    assert a["simulated"] and "survival_eps=1e-06" in a["exported"]["policy"]
    assert a["throughput_change"] == pytest.approx(
        a["exported"]["throughput_tok_s"] / a["tuned"]["throughput_tok_s"] - 1
    )
