"""`spectune replay` end to end: JSON contract, determinism, real traces, bad input (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner.cli import main

KEYS = ("requests_completed", "output_tokens", "duration_s", "throughput_tok_s",
        "tps_per_user_p50", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
        "mean_accepted_len", "mean_verify_len", "decode_steps", "wall", "profile",
        "acceptance")  # fmt: skip


def replay_json(capsys, *args: str) -> dict:
    assert main(["replay", "--json", "--quiet", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_the_contract_keys(capsys):
    s = replay_json(capsys, "--num-requests", "200")
    for key in KEYS:
        assert key in s, key
    assert s["requests_completed"] == 200
    assert s["profile"].startswith("measured: ") and s["acceptance"].startswith("records: ")


def test_same_seed_identical_json_apart_from_wall(capsys, tmp_path):
    """Byte-identical output for one seed, apart from the one ``wall`` object (the last key)."""
    texts = []
    for run in ("a", "b"):
        args = ["--num-requests", "150", "--seed", "3", "--policy", "fixed:k=4"]
        assert main(["replay", "--json", "--quiet", *args, "--out", str(tmp_path / run)]) == 0
        texts += [capsys.readouterr().out, (tmp_path / run / "summary.json").read_text()]
    for text in texts:
        s = json.loads(text)
        assert list(s)[-1] == "wall" and set(s["wall"]) == {"wall_s", "decode_steps_per_wall_s"}
        assert not any("wall" in k for k in list(s)[:-1])  # no wall-clock figure outside it
    heads = [t[: t.index('"wall"')] for t in texts]
    assert heads[0] == heads[2] and heads[1] == heads[3]
    assert (tmp_path / "a" / "requests.csv").read_bytes() == \
        (tmp_path / "b" / "requests.csv").read_bytes()  # fmt: skip


def test_out_dir_writes_csv_and_summary(capsys, tmp_path):
    assert main(["replay", "--num-requests", "50", "--quiet", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "requests.csv").read_text().splitlines()
    assert len(lines) == 51 and lines[0].startswith("id,domain,arrival")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests_completed"] == 50 and "seed" in summary


def test_table_output_labels_provenance(capsys):
    assert main(["replay", "--num-requests", "30", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "measured: engine builtin:tiny" in out and "records: engine target + dspark" in out


def test_azure_conv_full_replay_conserves_tokens(traces, capsys, tmp_path):
    path = traces / "azure_llm_2023_conv.csv"
    cpu_too_short = ("--profile", "builtin:h100-8b")  # its prompts exceed the CPU engine's context
    s = replay_json(capsys, "--trace", str(path), "--policy", "fixed:k=1", "--out", str(tmp_path),
                    *cpu_too_short)  # fmt: skip
    assert s["requests_completed"] == 19366
    expected = 0
    with open(path) as f:
        next(f)
        for line in f:
            expected += int(line.rsplit(",", 1)[1])
    assert s["output_tokens"] == expected
    rows = (tmp_path / "requests.csv").read_text().splitlines()
    assert len(rows) == 19367


def test_mooncake_with_rate_scale_and_kv_capacity(traces, capsys):
    s = replay_json(
        capsys, "--trace", str(traces / "mooncake_conversation_trace.jsonl"), "--rate-scale", "4",
        "--limit", "400", "--kv-capacity-tokens", "60000", "--max-concurrency", "32",
        "--profile", "builtin:h100-8b",
    )  # fmt: skip
    assert s["requests_rejected_too_long"] > 0
    assert s["requests_completed"] + s["requests_rejected_too_long"] == 400


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--policy", "nosuch"], "unknown policy 'nosuch'"),
        (["--policy", "fixed:q=1"], "no parameter 'q'"),
        (["--policy", "fixed:k=abc"], "not a valid int"),
        (["--policy", "fixed:k=-1"], "k must be"),
        (["--rate-scale", "-2"], "--rate-scale"),
        (["--rate-scale", "nan"], "NaN"),
        (["--max-concurrency", "0"], "--max-concurrency"),
        (["--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv"),
        (["--profile", "builtin:nosuch"], "unknown builtin profile"),
        (["--profile", "analytic:params_b=x"], "not a number"),
        (["--acceptance", "paper:nosuch"], "unknown paper acceptance model"),
        (["--gamma", "9"], "gamma 9 exceeds"),
        (["--workload", "builtin:nosuch"], "nosuch"),
        (["--backend", "vllm", "--prefill", "disaggregated"], "--prefill disaggregated"),
        (["--backend", "live", "--prefill", "disaggregated"], "--live-timing cost"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "replay", "--limit", "5", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectune: error: "), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


_TABLE = "sps: {sample_batch_tokens: [1, 2], sample_steps_per_sec: [5, 4]}\n"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("form: sps\nsps: {sample_batch_tokens: [1, 2], sample_steps_per_sec: [5]}\n", "p.yaml"),
        ("form: sps\n" + _TABLE + "context: {kv_tokens: [0, 9], seconds: [0, 1], basis: paged}\n",
         "basis"),
        ("form: sps\n" + _TABLE + "context: {kv_tokens: [0, 9], seconds: [0, 1], "
         "queries_per_request: 8, seconds_one_query: [0]}\n", "context"),
        ("form: additive\nadditive: {bias_seconds: 0.001, bs_probes: [1], alpha_seconds: [0], "
         "m_probes: [1], theta_seconds: [0], ragged_seconds: -1}\n", "ragged_seconds"),
    ],
)  # fmt: skip
def test_bad_profile_yaml_exits_2(tmp_path, text, needle):
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "replay", "--limit", "5", "--profile", str(bad)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2 and str(bad) in proc.stderr and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_replay_does_not_import_torch():
    code = ("import sys; from runner.cli import main; "
            "main(['replay', '--num-requests', '20', '--quiet', '--json']); "
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "simulator" / "data"


@pytest.mark.parametrize(
    "name",
    ["azure_conv_tiny.csv", "burstgpt_tiny.csv", "mooncake_tiny.jsonl", "generic_tiny.csv",
     "generic_tiny.jsonl"],
)  # fmt: skip
def test_each_trace_format_replays(capsys, name):
    s = replay_json(capsys, "--trace", str(DATA / name), "--policy", "fixed:k=2",
                    "--clamp-to-context")  # fmt: skip
    assert s["requests_completed"] == s["requests"] > 0
    assert s["requests_completed"] + s["requests_rejected_too_long"] == s["requests"]
