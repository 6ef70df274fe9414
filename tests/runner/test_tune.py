"""spectune tune: scoring, the adaptive grid, outputs, resume after a kill, Ray = local, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.cli.commands.tune import split_policies
from runner.scheduler import SLA, load_scheduler
from runner.search import Dim, PolicySearch, at_sla

TINY = [
    "--policies",
    "fixed:k=1,dspark_lagged",
    "--concurrency",
    "2,6",
    "--num-requests",
    "16",
    "--per-user",
    "2",
    "--rounds",
    "1",
    "--bisect",
    "1",
    "--sla",
    "tps_per_user_p50>=250",
    "--quiet",
    "--no-plots",
    "--profile",
    "builtin:h100-8b",
    "--acceptance",
    "paper:qwen3-8b-dspark",
]  # fmt: skip  (the SLA suits this profile)
ROOT = Path(__file__).resolve().parents[2]


def tune(tmp: Path, *extra: str) -> dict:
    assert main(["tune", "--out", str(tmp), "--json", *TINY, *extra]) == 0
    return json.loads((tmp / "summary.json").read_text())


# -- scoring and search (no simulation) ----------------------------------------------------------
def pt(load, thr, tps):
    return {"load": float(load), "throughput_tok_s": thr, "tps_per_user_p50": tps}


def test_at_sla_interpolates_to_the_bound():
    sla = [SLA("tps_per_user_p50", ">=", 100.0)]
    s = at_sla([pt(4, 1000, 150), pt(8, 1800, 120), pt(16, 2600, 80)], sla)
    assert s.measured == 1800 and s.load == 8 and s.bracket == (8, 16)
    assert s.value == pytest.approx(1800 + 0.5 * 800)  # 120 → 80 crosses 100 halfway
    never = at_sla([pt(4, 1000, 50)], sla)
    assert never.value == 0 and never.load is None and never.slack == pytest.approx(-0.5)
    top = at_sla([pt(4, 1000, 150), pt(8, 1800, 120)], sla)
    assert top.bracket is None and top.value == 1800  # SLA not binding in the range
    assert at_sla([pt(4, 1000, 50), pt(8, 1800, 60)], []).value == 1800  # no SLA: max


def test_dim_neighbours_halve_the_spacing():
    eps = Dim("survival_eps", (0.0, 0.1, 0.2), 0.0, 0.5)
    assert eps.neighbours(0.1, 1) == [0.05, 0.15]
    assert eps.neighbours(0.0, 2) == [0.025]  # clipped at lo
    assert Dim("min_verify_len", (0, 1, 2), 0, 7).neighbours(1, 1) == [0, 2]
    assert Dim("on", ("conf", "survival")).neighbours("conf", 1) == []


def test_pinned_parameters_are_not_searched():
    assert PolicySearch("fixed:k=1", 7).coarse() == ["fixed:k=1"]
    s = PolicySearch("dspark_lagged:lag=1", 7)
    specs = s.coarse()
    assert all(":lag=1," in x for x in specs) and len(specs) == len(set(specs)) > 5
    assert "lag" not in [d.name for d in s.dims]
    assert len(PolicySearch("fixed", 7).coarse()) == 7


def test_split_policies_keeps_spec_parameters_together():
    text = "fixed:k=1,fixed,dspark_lagged:lag=2,min_verify_len=1,clairvoyant"
    assert split_policies(text) == ["fixed:k=1", "fixed", "dspark_lagged:lag=2,min_verify_len=1",
                                    "clairvoyant"]  # fmt: skip


# -- end to end -----------------------------------------------------------------------------------
def test_tune_writes_results_best_yaml_and_plots(tmp_path):
    s = tune(tmp_path, "--no-plots")
    assert s["best"] == "dspark_lagged" and s["policies"]["fixed:k=1"]["feasible"] is False
    for name in ("results.csv", "frontier.csv", "summary.json", "points.jsonl", "run.yaml"):
        assert (tmp_path / name).is_file(), name
    cfg = load_scheduler(tmp_path / "best.yaml")
    best = s["policies"]["dspark_lagged"]
    assert cfg.policy().spec == best["best"] and cfg.tuned["load"] == best["load"]
    # the server's cap stays the server's (default 64), not the tuned concurrency
    assert cfg.max_concurrency == max(64, int(best["load"]))
    assert cfg.tuned["load_mode"] == "concurrency"
    assert cfg.tuned["throughput_tok_s"] == best["throughput_at_sla"]
    assert [str(x) for x in cfg.sla] == ["tps_per_user_p50>=250"]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("policy,mode,load,requests,seed,throughput_tok_s")
    assert len(rows) - 1 == s["points"]["total"] and "wall_s" not in rows[0]


def test_plots_and_rate_mode(tmp_path):
    args = [
        "tune",
        "--out",
        str(tmp_path),
        "--policies",
        "fixed:k=1",
        "--request-rates",
        "2,8",
        "--num-requests",
        "30",
        "--sla",
        "ttft_p99_s<=5",
        "--quiet",
        "--bisect",
        "0",
    ]
    assert main(args) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["mode"] == "rate" and s["policies"]["fixed:k=1"]["feasible"]
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert (tmp_path / "load.png").stat().st_size > 1000


def test_resume_after_kill_loses_no_finished_point(tmp_path):
    """Kill a running tune (SIGKILL) after a few points; --resume reuses every finished point
    and ends with the same results.csv as an uninterrupted run."""
    args = ["tune", *TINY, "--policies", "fixed,dspark_lagged", "--workers", "1"]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", *args, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    points = out / "points.jsonl"
    deadline = time.time() + 600  # a hang guard only, never the test
    while time.time() < deadline and proc.poll() is None:
        if points.exists() and len(points.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = [json.loads(x)["key"] for x in points.read_text().splitlines()
                if x.endswith("}")]  # a torn last line is not a finished point  # fmt: skip
    assert main([*args, "--out", str(out), "--resume", "--json"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["points"]["reused"] >= len(finished) >= 3
    keys = [json.loads(x)["key"] for x in points.read_text().splitlines()]
    assert keys[: len(finished)] == finished and len(keys) == len(set(keys))
    fresh = tmp_path / "fresh"
    assert main([*args, "--out", str(fresh)]) == 0
    assert (out / "results.csv").read_text() == (fresh / "results.csv").read_text()
    assert s["points"]["total"] == s["points"]["reused"] + s["points"]["simulated"]


def test_ray_and_local_give_identical_results(tmp_path):
    pytest.importorskip("ray")
    tune(tmp_path / "local", "--backend", "local", "--workers", "2")
    tune(tmp_path / "ray", "--backend", "ray", "--workers", "2")
    local = (tmp_path / "local" / "results.csv").read_text()
    assert local == (tmp_path / "ray" / "results.csv").read_text()
    assert (tmp_path / "local" / "best.yaml").read_text() == \
        (tmp_path / "ray" / "best.yaml").read_text()  # fmt: skip


# -- user errors: exit 2, one line ---------------------------------------------------------------
@pytest.mark.parametrize(("extra", "needle"), [
    (["--sla", "speed>=fast"], "--sla"),
    (["--sla", "bogus_metric>=1"], "unknown metric"),
    (["--policies", "nosuchpolicy"], "unknown policy"),
    (["--policies", "fixed:k=-1"], "fixed"),
    (["--concurrency", "8,2"], "increasing"),
    (["--concurrency", "2.5"], "whole numbers"),
    (["--request-rate", "3"], "--request-rates"),
    (["--backend", "local", "--address", "x:1"], "--address"),
    (["--trace", "/nonexistent/trace.csv"], "nonexistent"),
])  # fmt: skip
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, needle):
    assert main(["tune", "--out", str(tmp_path), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1 and needle in err


def test_rate_scales_need_a_trace(tmp_path, capsys):
    args = ["tune", "--out", str(tmp_path), "--rate-scales", "1,2", "--quiet"]
    assert main(args) == 2
    assert "--rate-scales applies to trace files" in capsys.readouterr().err


def test_existing_results_need_resume_and_the_same_config(tmp_path, capsys):
    tune(tmp_path)
    assert main(["tune", "--out", str(tmp_path), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["tune", "--out", str(tmp_path), *TINY, "--resume", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert "different tuning run" in err and "seed" in err
    assert main(["tune", "--out", str(tmp_path), *TINY, "--resume", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["points"]["simulated"] == 0 and s["points"]["reused"] == s["points"]["total"]


def test_sts_temperatures_flow_from_calibration_to_best_yaml_and_sglang(tmp_path):
    """What was tuned is what runs: the STS temperatures the acceptance model applied during
    tuning are the ones best.yaml and the SGLang export carry."""
    from profiles.builtin import load_acceptance
    from profiles.records import synthesize, write_records
    from runner.export import load_export, write_export

    model = load_acceptance("paper:qwen3-8b-dspark")
    write_records(tmp_path / "r.npz", synthesize(model, 12, 16, seed=1, logit_scale=2.0))
    calib = tmp_path / "calib.yaml"
    assert main(["calibrate", "--records", str(tmp_path / "r.npz"), "--out", str(calib),
                 "--no-plot"]) == 0  # fmt: skip
    spec = f"records:{tmp_path / 'r.npz'}?temps={calib}"
    out = tmp_path / "tune"
    assert main(["tune", "--out", str(out), *TINY, "--acceptance", spec, "--sla",
                 "tps_per_user_p50>=1"]) == 0  # fmt: skip
    cfg = load_scheduler(out / "best.yaml")
    temps = tuple(load_acceptance(spec).temperatures)
    assert cfg.sts.temperatures == temps and cfg.sts.num_samples > 0
    assert cfg.sts.variant == "cumulative" and any(t != 1.0 for t in temps)
    write_export(cfg, "sglang", tmp_path / "sg", simulate=False)
    assert tuple(load_export("sglang", tmp_path / "sg")["sts.json"]["temperatures"]) == temps


def test_demo_runs_replay_tune_export_and_prints_the_gain(tmp_path, capsys):
    args = ["demo", "--quick", "--quiet", "--workers", "1", "--out", str(tmp_path),
            "--num-requests", "200"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    for step in ("1. replay", "2. SLA", "3. tune", "4. export", "5. result", "plots"):
        assert step in out, step
    assert "fixed:k=1 (MTP-1)" in out and "measured: " in out  # the default profile, labelled
    cfg = load_scheduler(tmp_path / "tune" / "best.yaml")
    assert cfg.policy().name in ("dspark_lagged", "fixed")
    for fmt in ("spectune", "sglang", "vllm", "trtllm", "sglang-adaptive"):
        assert (tmp_path / "export" / fmt / "export.json").is_file()
    assert (tmp_path / "tune" / "frontier.png").is_file()
