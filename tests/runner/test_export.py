"""Export formats: every writer round-trips through its validating loader, and means the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies import make_policy
from profiles.cost import CostModel
from profiles.errors import InputError
from runner.cli import main
from runner.export import FORMATS, batch_table, load_export, plan, write_export
from runner.scheduler import SLA, SchedulerConfig, StsConfig, write_scheduler
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
    assert set(m["files"]) == set(docs)
    assert json.loads((tmp_path / "export.json").read_text())["exact"] == m["exact"]
    near = make_policy(m["exported_policy"])
    if m["exact"]:
        assert near.spec == cfg.policy().spec
    # the files express the exported policy at every batch size the server can reach
    for r in range(1, CAP + 1):
        want = _drafts(near, r, cfg.gamma)
        if want is not None:
            assert _expressed(fmt, docs, r) == want, (fmt, spec, r)


def _drafts(policy, r: int, gamma: int) -> int | None:
    """Drafts verified per request at batch size r, for confidence-free policies."""
    if policy.name == "fixed":
        return min(policy.k, gamma)
    if policy.name == "none":
        return 0
    if policy.name == "batch_table":
        return min(policy.k_for(r), gamma)
    return None


def _expressed(fmt: str, docs: dict, r: int) -> int | None:
    if fmt == "spectune":
        return _drafts(docs["scheduler.yaml"].policy(), r, docs["scheduler.yaml"].gamma)
    if fmt == "vllm":
        d = docs["speculative_config.json"]
        rows = d.get("num_speculative_tokens_per_batch_size")
        if not rows:
            return d["num_speculative_tokens"]
        row = next((x for x in rows if x[0] <= r <= x[1]), rows[-1])  # tail carries forward
        return min(row[2], d["num_speculative_tokens"])
    if fmt == "trtllm":
        sched = docs["speculative_config.yaml"]["speculative_config"]["draft_len_schedule"]
        keys = sorted(sched)
        return k_for_table(keys, [sched[k] for k in keys], r, 0)
    if fmt == "sglang-adaptive":
        slots = sorted(int(k) for k in docs["adaptive.json"])
        slot = max(s for s in slots if s <= r)
        return docs["adaptive.json"][str(slot)]["candidate_steps"][0]
    s = docs["schedule.json"]  # sglang: verify lengths count the anchor
    return s["max_verify_len"] - 1 if s["min_verify_len"] == s["max_verify_len"] else None


def test_sglang_1d_table_is_the_cost_model(tmp_path):
    cfg = config("dspark_lagged")
    write_export(cfg, "sglang", tmp_path, simulate=False)
    docs = load_export("sglang", tmp_path)
    t = docs["sps_table.json"]
    assert t["sample_batch_tokens"] == [1, 8, 9, 64, 65, 512] and t["max_batch_tokens"] == 512
    assert t["sample_steps_per_sec"] == pytest.approx(
        cfg.cost.sps(1, np.array([1, 8, 9, 64, 65, 512]))
    )
    assert docs["sts.json"]["temperatures"] == list(cfg.sts.temperatures)
    assert docs["sts.json"]["num_samples"] == 10 and docs["sts.json"]["dataset"] == "unit"
    assert docs["schedule.json"] == {"gamma": 7, "min_verify_len": 1, "max_verify_len": 0,
                                     "survival_eps": 0.0, "lag_steps": 2}  # fmt: skip


def test_sglang_additive_table_in_sglang_gauge(tmp_path):
    cost = CostModel.additive(0.002, [1, 16, 64], [0.001, 0.002, 0.006], [1, 128, 512],
                              [0.0005, 0.003, 0.011], source="test: additive")  # fmt: skip
    cfg = config("dspark_lagged", cost=cost)
    write_export(cfg, "sglang", tmp_path, simulate=False)
    t = load_export("sglang", tmp_path)["sps_table.json"]
    assert t["alpha_seconds"][0] == 0 and t["theta_seconds"][0] == 0 and t["bias_seconds"] > 0
    for bs, m in ((1, 1), (16, 128), (64, 512), (16, 512)):
        ours = cost.verify_time(bs, m)
        theirs = (t["bias_seconds"] + np.interp(bs, t["bs_probes"], t["alpha_seconds"])
                  + np.interp(m, t["m_probes"], t["theta_seconds"]))  # fmt: skip
        assert theirs == pytest.approx(ours)


def test_vllm_dspark_style_sets_adaptive_verification(tmp_path):
    cfg = config("dspark_lagged:max_verify_len=5")
    write_export(cfg, "vllm", tmp_path, simulate=False)
    d = load_export("vllm", tmp_path)["speculative_config.json"]
    assert d == {"num_speculative_tokens": 5, "enable_adaptive_verification": True}
    assert plan(cfg, "vllm").exact
    assert not plan(config("dspark_lagged:min_verify_len=2"), "vllm").exact


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
    ("schedule.json", '{"gamma": 7, "min_verify_len": 9, "max_verify_len": 0, '
                      '"survival_eps": 0}', "min_verify_len"),
    ("sps_table.json", "{not json", "cannot parse"),
])  # fmt: skip
def test_sglang_loader_rejects_what_sglang_rejects(tmp_path, name, text, needle):
    write_export(config("dspark_lagged"), "sglang", tmp_path, simulate=False)
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=needle) as exc:
        load_export("sglang", tmp_path)
    assert name in str(exc.value)


@pytest.mark.parametrize(("fmt", "name", "text"), [
    ("vllm", "speculative_config.json", '{"num_speculative_tokens": 3, '
     '"num_speculative_tokens_per_batch_size": [[1, 8, 3], [4, 16, 1]]}'),
    ("vllm", "speculative_config.json", '{"num_speculative_tokens": "3"}'),
    ("trtllm", "speculative_config.yaml", "speculative_config: {max_draft_len: 3, "
     "draft_len_schedule: {4: 5}}"),
    ("sglang-adaptive", "adaptive.json", '{"ema_alpha": 0.2}'),
    ("sglang-adaptive", "adaptive.json", '{"1": {"candidate_steps": [-1]}}'),
])  # fmt: skip
def test_table_loaders_reject_bad_files(tmp_path, fmt, name, text):
    write_export(config("fixed:k=2"), fmt, tmp_path, simulate=False)
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
    cfg = config("dspark_lagged", sts=StsConfig())
    write_export(cfg, "sglang", tmp_path, simulate=False)
    assert load_export("sglang", tmp_path)["sts.json"] == {"temperatures": [1.0] * 7}
