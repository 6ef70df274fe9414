"""`spectune profiles`, `spectune import` and `spectune calibrate` end to end: outputs load where
they should, and every bad input exits 2 with one `spectune: error:` line. Records are SYNTHETIC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.builtin import PAPER_MODELS, paper_acceptance
from profiles.records import synthesize, write_records
from runner.cli import main

DATA = Path(__file__).resolve().parents[2] / "profiles" / "data"


def _error(capsys, argv) -> str:
    """Run the CLI expecting exit 2 (argparse exits via SystemExit, loaders return 2)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1, err
    return err


def test_profiles_lists_everything_with_provenance(capsys):
    assert main(["profiles", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    specs = ["builtin:h100-8b", "builtin:cpu-tiny", "builtin:cpu-tiny-additive"]
    assert [c["spec"] for c in info["cost"]] == specs
    assert "not measured" in info["cost"][0]["source"]
    assert all(c["source"].startswith("measured: engine") for c in info["cost"][1:])
    assert info["analytic"]["parameters"]["params_b"] == 8.0
    specs = [a["spec"] for a in info["acceptance"]]
    paper = [a for a in info["acceptance"] if a["spec"].startswith("paper:")]
    assert [a["spec"] for a in paper] == [f"paper:{m}" for m in PAPER_MODELS]
    assert "paper:qwen3-4b-eagle3" in specs and "builtin:cpu-tiny-dspark" in specs
    assert all("read from paper" in a["source"] for a in paper)
    records = [a for a in info["acceptance"] if a["spec"].startswith("builtin:")]
    assert records and all(a["source"].startswith("records: engine") for a in records)
    assert sum(a["default"] for a in info["acceptance"]) == 1
    assert sum(c["default"] for c in info["cost"]) == 1
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "builtin:cpu-tiny-additive (default)" in out and "records:FILE.npz" in out


def test_import_outputs_load_into_replay(capsys, tmp_path):
    acc, sps, csv = tmp_path / "acc.yaml", tmp_path / "sps.yaml", tmp_path / "csv.yaml"
    assert (
        main(
            [
                "import",
                "vllm-metrics",
                str(DATA / "vllm_metrics.prom"),
                "--out",
                str(acc),
                "--domain",
                "chat",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["draft_length"] == 3 and summary["mean_acceptance_length"] == pytest.approx(
        1 + 189170 / 100090
    )
    assert (
        main(["import", "sglang-sps", str(DATA / "sglang_sps_additive.json"), "--out", str(sps)])
        == 0
    )
    assert "additive cost model" in capsys.readouterr().out
    assert main(["import", "cost-csv", str(DATA / "cost.csv"), "--out", str(csv)]) == 0
    capsys.readouterr()
    for profile in (sps, csv):
        assert (
            main(
                [
                    "replay",
                    "--json",
                    "--quiet",
                    "--num-requests",
                    "40",
                    "--profile",
                    str(profile),
                    "--acceptance",
                    str(acc),
                    "--policy",
                    "fixed:k=3",
                ]
            )
            == 0
        )
        s = json.loads(capsys.readouterr().out)
        assert s["profile"].startswith("imported:") and s["acceptance"].startswith("imported:")


@pytest.mark.parametrize(
    "kind, content, message",
    [
        ("vllm-metrics", 'vllm:spec_decode_num_drafts_total{engine="0" 5\n', "malformed"),
        ("vllm-metrics", "# TYPE up gauge\nup 1\n", "missing metric(s)"),
        ("sglang-sps", '{"sample_batch_tokens": [1, 2]}', "missing field"),
        ("sglang-sps", '{"temperatures": [1.0]}', "missing field 'sample_batch_tokens'"),
        ("cost-csv", "batch,ms\n1,2\n", "header must be"),
    ],
)
def test_import_bad_input_exits_2(capsys, tmp_path, kind, content, message):
    path = tmp_path / "input"
    path.write_text(content)
    err = _error(capsys, ["import", kind, str(path), "--out", str(tmp_path / "o.yaml")])
    assert message in err and str(path) in err
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("kind", ["vllm-metrics", "sglang-sps", "cost-csv"])
def test_import_unreadable_input_exits_2(capsys, tmp_path, kind):
    _error(capsys, ["import", kind, str(tmp_path / "absent"), "--out", str(tmp_path / "o.yaml")])
    _error(capsys, ["import", kind, str(tmp_path), "--out", str(tmp_path / "o.yaml")])
    _error(capsys, ["import", "prometheus", str(tmp_path), "--out", str(tmp_path / "o.yaml")])


@pytest.fixture(scope="module")
def records_file(tmp_path_factory) -> Path:
    model = paper_acceptance("qwen3-8b-dspark")
    path = tmp_path_factory.mktemp("rec") / "syn.npz"
    write_records(path, synthesize(model, requests=60, steps=30, seed=1, logit_scale=1.5))
    return path


def test_calibrate_writes_yaml_sglang_json_and_png(capsys, tmp_path, records_file):
    out = tmp_path / "sts.yaml"
    argv = [
        "calibrate",
        "--records",
        str(records_file),
        "--variant",
        "conditional",
        "--out",
        str(out),
        "--domain",
        "code",
        "--seed",
        "4",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "held-out ECE of the cumulative survival lower at" in text and "SYNTHETIC" in text
    sg = json.loads(out.with_suffix(".sglang.json").read_text())
    assert set(sg) == {"temperatures", "dataset", "num_samples", "ece_before", "ece_after"}
    assert sg["dataset"] == "syn.npz [code]" and len(sg["temperatures"]) == 7
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    for temps in (out, out.with_suffix(".sglang.json")):
        assert (
            main(
                [
                    "replay",
                    "--json",
                    "--quiet",
                    "--num-requests",
                    "30",
                    "--domain-mix",
                    "code=1",
                    "--acceptance",
                    f"records:{records_file}?temps={temps}",
                ]
            )
            == 0
        )
        assert "STS temperatures" in json.loads(capsys.readouterr().out)["acceptance"]


def test_calibrate_json_and_no_plot(capsys, tmp_path, records_file):
    out = tmp_path / "c.yaml"
    assert (
        main(
            ["calibrate", "--records", str(records_file), "--out", str(out), "--no-plot", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "spectune.calibration/v1" and doc["variant"] == "cumulative"
    assert doc["records_meta"]["source"].startswith("SYNTHETIC")
    assert not out.with_suffix(".png").exists()


def test_calibrate_bad_input_exits_2(capsys, tmp_path, records_file):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    assert "not a records .npz" in _error(
        capsys, ["calibrate", "--records", str(bad), "--out", str(tmp_path / "o.yaml")]
    )
    _error(capsys, ["calibrate", "--records", str(tmp_path / "absent.npz"), "--out", "o.yaml"])
    _error(
        capsys,
        ["calibrate", "--records", str(records_file), "--out", "o.yaml", "--fit-fraction", "1.5"],
    )
    assert "no domain 'poetry'" in _error(
        capsys,
        ["calibrate", "--records", str(records_file), "--out", "o.yaml", "--domain", "poetry"],
    )
    assert "have gamma 7" in _error(
        capsys,
        ["replay", "--acceptance", f"records:{records_file}?temps={DATA / 'sglang_sts.json'}"],
    )
