"""The hostile-input sweep (issue #12): every subcommand against inputs a user can get wrong.

Each case runs ``spectune`` (in-process through ``runner.cli.main``, or as a subprocess where a
pipe, a FIFO or a blocked import is involved) with a timeout and must end in exit code 2 with
exactly one stderr line ``spectune: error: ...``: no traceback, no hang, no exit 0, and no file
that existed before the case changed (every fixture and every file in the case's directory is
hashed before and after). Fixtures are small and built in code.

``python tests/test_hostile.py`` prints the tally (cases, tracebacks, hangs, exit-0 accepts,
overwrites, other contract breaks) without pytest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = int(
    os.environ.get("HOSTILE_TIMEOUT_S", "60")
)  # a case that has not finished by then is a hang (bad input must fail fast)

# ---- fixtures ---------------------------------------------------------------------------------

TRACE = "arrival_s,prompt_tokens,output_tokens\n" + "".join(
    f"{i * 0.5},{20 + i},{8 + i % 5}\n" for i in range(20)
)
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def _small_cost():
    from profiles.cost import CostModel

    return CostModel.from_sps_table([1, 8, 9, 64, 65, 512], [200, 200, 150, 150, 90, 40],
                                    max_batch_tokens=512, source="test: hand-written")  # fmt: skip


def _scheduler_doc(**over) -> dict:
    from runner.scheduler import SLA, SchedulerConfig, StsCalibration

    cfg = SchedulerConfig(
        policy_name="dspark_lagged",
        params=(("lag", 2), ("min_verify_len", 1), ("max_verify_len", 5), ("survival_eps", 0.05)),
        gamma=7, cost=_small_cost(), sts=StsCalibration.identity(7), max_concurrency=8,
        sla=(SLA("tps_per_user_p50", ">=", 80.0),),
        tuned={"load_mode": "concurrency", "load": 8.0, "throughput_tok_s": 100.0},
        provenance={"seed": 0},
    )  # fmt: skip
    doc = cfg.to_dict()
    doc.get("provenance", {}).pop("profile", None)
    for path, value in over.items():
        node = doc
        *head, last = path.split(".")
        for k in head:
            node = node[k]
        node[last] = value
    return doc


def _yaml(path: Path, doc) -> None:
    import yaml

    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def build_world(d: Path) -> None:
    """Every fixture file the cases name, in ``d``."""
    from profiles.builtin import load_acceptance
    from profiles.records import synthesize, write_records
    from profiles.store import acceptance_to_dict, cost_to_dict

    (d / "trace.csv").write_text(TRACE, encoding="utf-8")
    (d / "empty.csv").write_text("", encoding="utf-8")
    (d / "header.csv").write_text("arrival_s,prompt_tokens,output_tokens\n", encoding="utf-8")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81\n" * 4)
    (d / "nan.csv").write_text(TRACE + "nan,5,5\n", encoding="utf-8")
    (d / "back.csv").write_text(TRACE + "0.1,5,5\n", encoding="utf-8")
    (d / "huge.csv").write_text(TRACE + "99,100000000000,5\n", encoding="utf-8")
    (d / "bignum.jsonl").write_text(
        '{"arrival_s": 0, "prompt_tokens": 1' + "0" * 5000 + ', "output_tokens": 3}\n',
        encoding="utf-8",
    )
    (d / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    (d / "afile").write_text("a plain file\n", encoding="utf-8")
    (d / "exists.yaml").write_text("keep: me\n", encoding="utf-8")
    (d / "exists.png").write_bytes(b"not really a png\n")
    (d / "foreign").mkdir()
    (d / "foreign" / "keep.txt").write_text("not spectune's\n", encoding="utf-8")
    (d / "laughs.yaml").write_text(LAUGHS, encoding="utf-8")
    (d / "deep.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    (d / "recursive.yaml").write_text("a: &a [*a]\n", encoding="utf-8")
    (d / "notyaml.yaml").write_text("a: [unclosed\n", encoding="utf-8")
    (d / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    cost = cost_to_dict(_small_cost())
    _yaml(d / "cost.yaml", cost)
    bad_values = (("nan", float("nan")), ("inf", float("inf")), ("neg", -5.0), ("zero", 0.0),
                  ("bool", True), ("str", "fast"), ("absurd", 1e300))  # fmt: skip
    for name, value in bad_values:
        bad = json.loads(json.dumps(cost, allow_nan=True))
        bad["sps"]["sample_steps_per_sec"][1] = value
        _yaml(d / f"cost_{name}.yaml", bad)
    acc = acceptance_to_dict(load_acceptance("paper:qwen3-8b-dspark"))
    _yaml(d / "acc.yaml", acc)
    domain = next(iter(acc["rates"]))
    for name, value in (("nan", float("nan")), ("neg", -0.5), ("big", 1.5), ("bool", True),
                        ("str", "high")):  # fmt: skip
        bad = json.loads(json.dumps(acc))
        bad["rates"][domain][0] = value
        _yaml(d / f"acc_{name}.yaml", bad)
    for name, value in (("nan", float("nan")), ("neg", -1.0), ("bool", True)):
        bad = json.loads(json.dumps(acc))
        bad["request_sigma"] = value
        _yaml(d / f"accsig_{name}.yaml", bad)
    _yaml(d / "best.yaml", _scheduler_doc())
    bests = {
        "clairvoyant": {"policy.name": "clairvoyant", "policy.params": {}},
        "global_sync": {"policy.name": "global_sync", "policy.params": {}},
        "gamma_bool": {"gamma": True},
        "gamma_zero": {"gamma": 0},
        "gamma_neg": {"gamma": -3},
        "gamma_huge": {"gamma": 10**9},
        "conc_zero": {"server.max_concurrency": 0},
        "conc_huge": {"server.max_concurrency": 10**12},
        "conc_nan": {"server.max_concurrency": float("nan")},
        "conc_str": {"server.max_concurrency": "many"},
        "temps_nan": {"sts.temperatures": [float("nan")] * 7},
        "temps_neg": {"sts.temperatures": [-1.0] * 7},
        "param_range": {"policy.params": {"lag": 2, "min_verify_len": 1,
                                          "max_verify_len": 500, "survival_eps": 0.05}},
        "cost_nan": {"cost.sps.sample_steps_per_sec": [200, float("nan"), 150, 150, 90, 40]},
    }  # fmt: skip
    for name, over in bests.items():
        _yaml(d / f"best_{name}.yaml", _scheduler_doc(**over))
    model = load_acceptance("paper:qwen3-8b-dspark")
    recs = synthesize(model, 6, 8, 0)
    write_records(d / "records.npz", recs)
    (d / "records_bad.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    import numpy as np

    with np.load(d / "records.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for name, change in (("gamma", {"gamma": True}), ("temp", {"temperature": float("nan")}),
                         ("source", {"source": [1, 2]}), ("slots", {"slots": -8}),
                         ("runs", {"engine_runs": {"k": {"code": {"x": "2"}}}})):  # fmt: skip
        bad = {**arrays, "meta": np.array(json.dumps({**meta, **change}))}
        np.savez(d / f"records_meta_{name}.npz", **bad)
    old = {k: v for k, v in arrays.items() if k != "verified"}  # made before ℓ was stored
    np.savez(d / "records_old.npz", **old)
    bad = {**arrays, "meta": np.array('{"a": ' * 5000 + "1" + "}" * 5000)}
    np.savez(d / "records_meta_deep.npz", **bad)
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    (d / "bignum.json").write_text('{"x": 1' + "0" * 5000 + "}", encoding="utf-8")
    (d / "nan.json").write_text('{"x": NaN}', encoding="utf-8")
    (d / "sps.json").write_text("[]", encoding="utf-8")
    (d / "metrics.txt").write_text("# no metrics here\n", encoding="utf-8")
    (d / "badcsv.csv").write_text("batch,seconds\n1,nan\n2,-1\n", encoding="utf-8")
    (d / "sts3.json").write_text('{"temperatures": [1.2, 1.1, 1.0]}', encoding="utf-8")
    (d / "sts_null.json").write_text('{"temperatures": [1], "ece_after": [null]}', encoding="utf-8")
    (d / "shard.0.pt").write_bytes(b"not a torch file\n")
    (d / "goodcost.csv").write_text("batch_tokens,step_ms\n1,10\n64,20\n", encoding="utf-8")
    (d / "ttft_one.csv").write_text("prompt_tokens,ttft_ms\n100,12\n100,13\n", encoding="utf-8")
    (d / "ttft_nan.csv").write_text("prompt_tokens,ttft_ms\n100,12\n200,nan\n", encoding="utf-8")


# ---- cases ------------------------------------------------------------------------------------

R = ["replay", "--quiet"]
RT = [*R, "--trace", "{d}/trace.csv"]
T = ["tune", "--quiet", "--quick", "--no-plots", "--out", "{o}/tune"]
BAD_NUM = ("nan", "inf", "-inf", "-1", "")
PF = ["import", "cost-csv", "{d}/goodcost.csv", "--out", "{o}/p.yaml", "--prefill-from"]


def _numeric(cmd: list[str], option: str, values=BAD_NUM, extra: tuple = ()) -> list:
    return [(f"{cmd[0]} {option}={v or 'EMPTY'}", [*cmd, option, v, *extra]) for v in values]


CASES: list[tuple[str, list[str]]] = [
    # replay: numeric options
    *_numeric(RT, "--rate-scale", ("nan", "inf", "0", "-1", "")),
    *_numeric(RT, "--limit", ("0", "-1", "nan", "", "1.5")),
    *_numeric(RT, "--max-concurrency", ("0", "nan", "", "1000000000", "1e9")),
    *_numeric(RT, "--kv-capacity-tokens", ("-1", "nan", "1e30")),
    *_numeric(RT, "--max-prefill-tokens", ("0", "inf")),
    *_numeric(RT, "--seed", ("-1", "nan", "")),
    *_numeric(RT, "--gamma", ("0", "1000", "nan")),
    *_numeric(RT, "--start", ("nan", "-1")),
    *_numeric(RT, "--duration", ("0", "nan")),
    *_numeric([*R, "--workload", "synthetic"], "--request-rate", ("nan", "0", "-1")),
    *_numeric([*R, "--workload", "synthetic"], "--burstiness", ("0", "nan")),
    *_numeric([*R, "--workload", "synthetic"], "--num-requests", ("0", "100000000000")),
    ("replay --domain-mix nan", [*R, "--domain-mix", "chat=nan"]),
    ("replay --domain-mix neg", [*R, "--domain-mix", "chat=-1,code=2"]),
    ("replay --domain-mix empty", [*R, "--domain-mix", ""]),
    # replay: policy specs
    ("replay --policy dup key", [*RT, "--policy", "fixed:k=1,k=2"]),
    ("replay --policy k>gamma", [*RT, "--policy", "fixed:k=1000"]),
    ("replay --policy k=nan", [*RT, "--policy", "fixed:k=nan"]),
    ("replay --policy unknown", [*RT, "--policy", "bogus"]),
    ("replay --policy bad param", [*RT, "--policy", "fixed:q=1"]),
    ("replay --policy eps=nan", [*RT, "--policy", "dspark_lagged:survival_eps=nan"]),
    ("replay --policy max>gamma", [*RT, "--policy", "dspark:max_verify_len=99"]),
    # replay: traces
    ("replay --trace missing", [*R, "--trace", "{d}/nope.csv"]),
    ("replay --trace dir", [*R, "--trace", "{d}/foreign"]),
    ("replay --trace empty", [*R, "--trace", "{d}/empty.csv"]),
    ("replay --trace header only", [*R, "--trace", "{d}/header.csv"]),
    ("replay --trace binary", [*R, "--trace", "{d}/binary.csv"]),
    ("replay --trace nan row", [*R, "--trace", "{d}/nan.csv"]),
    ("replay --trace backwards", [*R, "--trace", "{d}/back.csv"]),
    ("replay --trace absurd length", [*R, "--trace", "{d}/huge.csv"]),
    ("replay --trace bignum jsonl", [*R, "--trace", "{d}/bignum.jsonl"]),
    ("replay --trace deep jsonl", [*R, "--trace", "{d}/deep.jsonl"]),
    ("replay --trace yaml", [*R, "--trace", "{d}/laughs.yaml"]),
    ("replay --trace ''", [*R, "--trace", ""]),
    # replay: profiles
    *[
        (f"replay --profile cost_{n}", [*RT, "--profile", f"{{d}}/cost_{n}.yaml"])
        for n in ("nan", "inf", "neg", "zero", "bool", "str", "absurd")
    ],  # fmt: skip
    *[
        (f"replay --acceptance acc_{n}", [*RT, "--acceptance", f"{{d}}/acc_{n}.yaml"])
        for n in ("nan", "neg", "big", "bool", "str")
    ],  # fmt: skip
    *[
        (f"replay --acceptance accsig_{n}", [*RT, "--acceptance", f"{{d}}/accsig_{n}.yaml"])
        for n in ("nan", "neg", "bool")
    ],  # fmt: skip
    ("replay --profile laughs", [*RT, "--profile", "{d}/laughs.yaml"]),
    ("replay --concurrency, profiled", [*RT, "--concurrency", "8"]),
    ("replay --export, profiled", [*RT, "--export", "{d}"]),
    ("replay --profile deep", [*RT, "--profile", "{d}/deep.yaml"]),
    ("replay --profile recursive", [*RT, "--profile", "{d}/recursive.yaml"]),
    ("replay --profile not yaml", [*RT, "--profile", "{d}/notyaml.yaml"]),
    ("replay --profile list", [*RT, "--profile", "{d}/list.yaml"]),
    ("replay --profile missing", [*RT, "--profile", "{d}/nope.yaml"]),
    ("replay --profile analytic nan", [*RT, "--profile", "analytic:tflops=nan"]),
    ("replay --acceptance laughs", [*RT, "--acceptance", "{d}/laughs.yaml"]),
    ("replay --acceptance records missing", [*RT, "--acceptance", "records:{d}/nope.npz"]),
    ("replay --acceptance records bad", [*RT, "--acceptance", "records:{d}/records_bad.npz"]),
    ("replay --acceptance records old", [*RT, "--acceptance", "records:{d}/records_old.npz"]),
    ("replay --acceptance paper unknown", [*RT, "--acceptance", "paper:nope"]),
    # replay: --config (scheduler documents)
    *[
        (f"replay --config best_{n}", [*RT, "--config", f"{{d}}/best_{n}.yaml"])
        for n in (
            "clairvoyant",
            "global_sync",
            "gamma_bool",
            "gamma_zero",
            "gamma_neg",
            "gamma_huge",
            "conc_zero",
            "conc_huge",
            "conc_nan",
            "conc_str",
            "temps_nan",
            "temps_neg",
            "param_range",
            "cost_nan",
        )
    ],  # fmt: skip
    ("replay --config laughs", [*RT, "--config", "{d}/laughs.yaml"]),
    # replay: outputs
    ("replay --out ''", [*RT, "--out", ""]),
    ("replay --out under file", [*RT, "--out", "{d}/afile/sub"]),
    ("replay --out is file", [*RT, "--out", "{d}/afile"]),
    ("replay --out foreign dir", [*RT, "--out", "{d}/foreign"]),
    # tune
    *_numeric(T, "--rounds", ("-1", "nan", "1000000")),
    *_numeric(T, "--bisect", ("-1", "nan", "1000000")),
    *_numeric(T, "--workers", ("0", "-1", "100000", "nan")),
    *_numeric(T, "--per-user", ("0", "nan")),
    *_numeric(T, "--concurrency", ("", "nan", "0", "-1", "inf", "1e9", "2,,x")),
    *_numeric(T, "--max-concurrency", ("1e9", "1000000000")),
    ("tune --request-rates nan", [*T, "--workload", "synthetic", "--request-rates", "nan"]),
    ("tune --request-rates ''", [*T, "--workload", "synthetic", "--request-rates", ""]),
    ("tune --rate-scales inf", [*T, "--trace", "{d}/trace.csv", "--rate-scales", "inf"]),
    ("tune --sla garbage", [*T, "--sla", "fast please"]),
    ("tune --sla nan", [*T, "--sla", "tps_per_user_p50>=nan"]),
    ("tune --sla unknown metric", [*T, "--sla", "speed>=1"]),
    ("tune --policies ''", [*T, "--policies", ""]),
    ("tune --policies unknown", [*T, "--policies", "bogus"]),
    ("tune --policies dup key", [*T, "--policies", "fixed:k=1,k=2"]),
    ("tune --policies k>gamma", [*T, "--policies", "fixed:k=1000"]),
    ("tune --out ''", ["tune", "--quiet", "--quick", "--out", ""]),
    ("tune --out under file", ["tune", "--quiet", "--quick", "--out", "{d}/afile/x"]),
    ("tune --out is file", ["tune", "--quiet", "--quick", "--out", "{d}/afile"]),
    ("tune --out foreign dir", ["tune", "--quiet", "--quick", "--out", "{d}/foreign"]),
    ("tune --resume no run.yaml", ["tune", "--quiet", "--quick", "--resume", "--out", "{o}/r"]),
    ("tune --resume bad run.yaml", ["tune", "--quiet", "--quick", "--resume", "--out", "{o}/bad"]),
    ("tune --resume foreign", ["tune", "--quiet", "--quick", "--resume", "--out", "{d}/foreign"]),
    ("tune --out locked", ["tune", "--quiet", "--quick", "--out", "{o}/locked"]),
    ("tune --profile cost_nan", [*T, "--profile", "{d}/cost_nan.yaml"]),
    ("tune --profile laughs", [*T, "--profile", "{d}/laughs.yaml"]),
    ("tune --gamma 1000", [*T, "--gamma", "1000"]),
    ("tune --request-rate", [*T, "--request-rate", "5"]),
    # demo
    *_numeric(["demo", "--quiet", "--no-tune"], "--loads", ("nan", "", "-1", "0.5,,x", "inf")),
    *_numeric(["demo", "--quiet", "--no-tune"], "--num-requests", ("0", "-1", "10000000000")),
    ("demo --policies ''", ["demo", "--quiet", "--no-tune", "--policies", ""]),
    ("demo --policies unknown", ["demo", "--quiet", "--no-tune", "--policies", "bogus"]),
    ("demo --policies dup", ["demo", "--quiet", "--no-tune", "--policies", "fixed:k=1,k=5"]),
    ("demo --sla-fraction nan", ["demo", "--quiet", "--sla-fraction", "nan"]),
    ("demo --workers 0", ["demo", "--quiet", "--workers", "0"]),
    ("demo --workers huge", ["demo", "--quiet", "--workers", "100000"]),
    ("demo --out under file", ["demo", "--quiet", "--out", "{d}/afile/x"]),
    ("demo --out foreign", ["demo", "--quiet", "--out", "{d}/foreign"]),
    ("demo --profile cost_neg", ["demo", "--quiet", "--no-tune", "--profile", "{d}/cost_neg.yaml"]),
    # export
    *[
        (
            f"export best_{n}",
            ["export", "--from", f"{{d}}/best_{n}.yaml", "--format", "vllm", "--out", "{o}/x"],
        )
        for n in (
            "clairvoyant",
            "global_sync",
            "gamma_bool",
            "gamma_zero",
            "conc_huge",
            "temps_nan",
            "param_range",
            "cost_nan",
        )
    ],  # fmt: skip
    ("export laughs", ["export", "--from", "{d}/laughs.yaml", "--format", "all", "--out", "{o}/x"]),
    ("export deep", ["export", "--from", "{d}/deep.yaml", "--format", "vllm", "--out", "{o}/x"]),
    ("export missing", ["export", "--from", "{d}/nope.yaml", "--format", "vllm", "--out", "{o}/x"]),
    ("export --out ''", ["export", "--from", "{d}/best.yaml", "--format", "vllm", "--out", ""]),
    (
        "export --out under file",
        ["export", "--from", "{d}/best.yaml", "--format", "vllm", "--out", "{d}/afile/x"],
    ),
    (
        "export --out is file",
        ["export", "--from", "{d}/best.yaml", "--format", "vllm", "--out", "{d}/afile"],
    ),
    (
        "export --out foreign",
        ["export", "--from", "{d}/best.yaml", "--format", "all", "--out", "{d}/foreign"],
    ),
    ("export --format bogus", ["export", "--from", "{d}/best.yaml", "--format", "x", "--out", "o"]),
    # calibrate
    (
        "calibrate --records missing",
        ["calibrate", "--records", "{d}/no.npz", "--out", "{o}/c.yaml"],
    ),
    (
        "calibrate --records bad",
        ["calibrate", "--records", "{d}/records_bad.npz", "--out", "{o}/c.yaml"],
    ),
    *[
        (
            f"calibrate --records meta {n}",
            ["calibrate", "--records", f"{{d}}/records_meta_{n}.npz", "--out", "{o}/c.yaml"],
        )
        for n in ("gamma", "temp", "source", "deep", "slots", "runs")
    ],  # fmt: skip
    *[
        (
            f"replay --acceptance records meta {n}",
            [*RT, "--acceptance", f"records:{{d}}/records_meta_{n}.npz"],
        )
        for n in ("gamma", "temp", "source", "deep", "slots", "runs")
    ],  # fmt: skip
    (
        "calibrate --records yaml",
        ["calibrate", "--records", "{d}/laughs.yaml", "--out", "{o}/c.yaml"],
    ),
    *_numeric(
        ["calibrate", "--records", "{d}/records.npz", "--out", "{o}/c.yaml"],
        "--fit-fraction",
        ("nan", "0", "1", "inf", ""),
    ),
    *_numeric(
        ["calibrate", "--records", "{d}/records.npz", "--out", "{o}/c.yaml"],
        "--seed",
        ("-1", "nan"),
    ),
    ("calibrate --out ''", ["calibrate", "--records", "{d}/records.npz", "--out", ""]),
    (
        "calibrate --out exists",
        ["calibrate", "--records", "{d}/records.npz", "--out", "{d}/exists.yaml"],
    ),
    (
        "calibrate --out under file",
        ["calibrate", "--records", "{d}/records.npz", "--out", "{d}/afile/c.yaml"],
    ),
    (
        "calibrate --out is dir",
        ["calibrate", "--records", "{d}/records.npz", "--out", "{d}/foreign"],
    ),
    (
        "calibrate --plot exists",
        [
            "calibrate",
            "--records",
            "{d}/records.npz",
            "--out",
            "{o}/c.yaml",
            "--plot",
            "{d}/exists.png",
        ],
    ),
    (
        "calibrate --plot under file",
        [
            "calibrate",
            "--records",
            "{d}/records.npz",
            "--out",
            "{o}/c.yaml",
            "--plot",
            "{d}/afile/p.png",
        ],
    ),
    (
        "calibrate --sglang-out exists",
        [
            "calibrate",
            "--records",
            "{d}/records.npz",
            "--out",
            "{o}/c.yaml",
            "--sglang-out",
            "{d}/exists.yaml",
        ],
    ),
    (
        "calibrate --domain unknown",
        ["calibrate", "--records", "{d}/records.npz", "--out", "{o}/c.yaml", "--domain", "poetry"],
    ),
    # import
    ("import sglang deep", ["import", "sglang-sps", "{d}/deep.json", "--out", "{o}/p.yaml"]),
    ("import sglang bignum", ["import", "sglang-sps", "{d}/bignum.json", "--out", "{o}/p.yaml"]),
    ("import sglang nan", ["import", "sglang-sps", "{d}/nan.json", "--out", "{o}/p.yaml"]),
    ("import sglang empty", ["import", "sglang-sps", "{d}/sps.json", "--out", "{o}/p.yaml"]),
    ("import sglang missing", ["import", "sglang-sps", "{d}/nope.json", "--out", "{o}/p.yaml"]),
    ("import cost-csv bad", ["import", "cost-csv", "{d}/badcsv.csv", "--out", "{o}/p.yaml"]),
    ("import vllm nothing", ["import", "vllm-metrics", "{d}/metrics.txt", "--out", "{o}/p.yaml"]),
    ("import vllm binary", ["import", "vllm-metrics", "{d}/binary.csv", "--out", "{o}/p.yaml"]),
    ("import --out ''", ["import", "cost-csv", "{d}/badcsv.csv", "--out", ""]),
    ("import --out exists", ["import", "sglang-sps", "{d}/sps.json", "--out", "{d}/exists.yaml"]),
    (
        "import --out under file",
        ["import", "sglang-sps", "{d}/sps.json", "--out", "{d}/afile/p.yaml"],
    ),
    (
        "import --since missing",
        [
            "import",
            "vllm-metrics",
            "{d}/metrics.txt",
            "--out",
            "{o}/p.yaml",
            "--since",
            "{d}/nope.txt",
        ],
    ),
    # ?temps= on any acceptance model; a table beyond gamma
    *[
        (f"replay --acceptance ?temps {name}", [*R, "--acceptance", spec])
        for name, spec in (
            ("gamma mismatch", "paper:qwen3-8b-dspark?temps={d}/sts3.json"),
            ("yaml gamma mismatch", "{d}/acc.yaml?temps={d}/sts3.json"),
            ("null ece", "paper:qwen3-8b-dspark?temps={d}/sts_null.json"),
            ("missing", "{d}/acc.yaml?temps={d}/nope.json"),
            ("not json", "{d}/acc.yaml?temps={d}/nan.json"),
            ("bad option", "paper:qwen3-8b-dspark?temp={d}/sts3.json"),
            ("empty", "paper:qwen3-8b-dspark?temps="),
        )
    ],  # fmt: skip
    ("tune --acceptance ?temps mismatch", [*T, "--acceptance", "{d}/acc.yaml?temps={d}/sts3.json"]),
    ("replay --policy table ks>gamma", [*R, "--policy", "batch_table:sizes=4;8,ks=9;2"]),
    ("replay --policy table default>gamma", [*R, "--policy", "batch_table:sizes=4,ks=2,default=8"]),
    # import sglang-sts / sglang-shards
    (
        "import sglang-sts null ece",
        ["import", "sglang-sts", "{d}/sts_null.json", "--out", "{o}/c.yaml"],
    ),
    ("import sglang-sts not json", ["import", "sglang-sts", "{d}/nan.json", "--out", "{o}/c.yaml"]),
    (
        "import sglang-sts --out .json",
        ["import", "sglang-sts", "{d}/sts3.json", "--out", "{o}/c.json"],
    ),
    (
        "import sglang-sts --out exists",
        ["import", "sglang-sts", "{d}/sts3.json", "--out", "{d}/exists.yaml"],
    ),
    ("import sglang-shards none", ["import", "sglang-shards", "{d}/nope", "--out", "{o}/r.npz"]),
    ("import sglang-shards bad", ["import", "sglang-shards", "{d}/shard", "--out", "{o}/r.npz"]),
    (
        "import sglang-shards --out .yaml",
        ["import", "sglang-shards", "{d}/shard", "--out", "{o}/r.yaml"],
    ),
    (
        "import sglang-shards --prefill-from",
        [
            "import",
            "sglang-shards",
            "{d}/shard",
            "--out",
            "{o}/r.npz",
            "--prefill-from",
            "builtin:h100-8b",
        ],
    ),
    # import --prefill-from
    *[
        (f"import --prefill-from {name}", [*PF, src])
        for name, src in (
            ("one length", "{d}/ttft_one.csv"),
            ("nan", "{d}/ttft_nan.csv"),
            ("bad header", "{d}/badcsv.csv"),
            ("missing", "{d}/nope.csv"),
            ("binary", "{d}/binary.csv"),
            ("no prefill term", "{d}/cost.yaml"),
            ("unknown builtin", "builtin:bogus"),
            ("dir", "{d}/foreign"),
        )
    ],  # fmt: skip
    (
        "import vllm --prefill-from",
        [
            "import",
            "vllm-metrics",
            "{d}/metrics.txt",
            "--out",
            "{o}/p.yaml",
            "--prefill-from",
            "{d}/ttft_one.csv",
        ],
    ),  # fmt: skip
    # audit, policies, profiles
    ("audit --policy unknown", ["audit", "--policy", "bogus"]),
    ("audit --policy dup", ["audit", "--policy", "fixed:k=1,k=2"]),
    ("audit --policy k=nan", ["audit", "--policy", "fixed:k=nan"]),
    ("audit --policy eps=inf", ["audit", "--policy", "dspark_lagged:survival_eps=inf"]),
    ("audit --scenario unknown", ["audit", "--all", "--scenario", "bogus"]),
    ("audit --policy ''", ["audit", "--policy", ""]),
    ("policies extra arg", ["policies", "extra"]),
    ("policies bad flag", ["policies", "--bogus"]),
    ("profiles extra arg", ["profiles", "extra"]),
    ("unknown command", ["bogus"]),
    # profile (engine)
    *_numeric(
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"], "--slots", ("0", "100000", "nan")
    ),
    *_numeric(
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"], "--threads", ("0", "100000")
    ),
    *_numeric(["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"], "--seed", ("nan", "-1")),
    *_numeric(
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"],
        "--context-requests",
        ("0", "-1", "nan", "1.5", ""),
    ),
    *_numeric(
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"], "--repeats", ("0", "-1", "nan")
    ),
    ("profile --out ''", ["profile", "--quick", "--quiet", "--out", ""]),
    ("profile --out exists", ["profile", "--quick", "--quiet", "--out", "{d}/exists.yaml"]),
    ("profile --out under file", ["profile", "--quick", "--quiet", "--out", "{d}/afile/p.yaml"]),
    ("profile --out is dir", ["profile", "--quick", "--quiet", "--out", "{d}/foreign"]),
    (
        "profile --engine bogus",
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml", "--engine", "bogus"],
    ),
    (
        "profile --device cuda",
        ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml", "--device", "cuda"],
    ),
    # record (engine)
    *_numeric(["record", "--quiet", "--out", "{o}/r.npz"], "--requests", ("0", "100000000")),
    *_numeric(["record", "--quiet", "--out", "{o}/r.npz"], "--slots", ("0", "100000")),
    *_numeric(["record", "--quiet", "--out", "{o}/r.npz"], "--prompt-len", ("0", "100000000")),
    *_numeric(["record", "--quiet", "--out", "{o}/r.npz"], "--max-new-tokens", ("0",)),
    *_numeric(["record", "--quiet", "--out", "{o}/r.npz"], "--seed", ("nan", "-1")),
    (
        "record --cost missing",
        ["record", "--quiet", "--out", "{o}/r.npz", "--cost", "{d}/nope.yaml"],
    ),
    (
        "record --cost laughs",
        ["record", "--quiet", "--out", "{o}/r.npz", "--cost", "{d}/laughs.yaml"],
    ),
    ("record --out exists", ["record", "--quiet", "--out", "{d}/exists.yaml"]),
    ("record --out ''", ["record", "--quiet", "--out", ""]),
    ("record --out under file", ["record", "--quiet", "--out", "{d}/afile/r.npz"]),
    (
        "record --policy k>gamma",
        ["record", "--quiet", "--out", "{o}/r.npz", "--policy", "fixed:k=1000"],
    ),
    ("record --device cuda", ["record", "--quiet", "--out", "{o}/r.npz", "--device", "cuda"]),
    ("record --domains bogus", ["record", "--quiet", "--out", "{o}/r.npz", "--domains", "poetry"]),
    # train (engine)
    *_numeric(
        ["train", "target", "--quiet", "--out-dir", "{o}/ck", "--run-dir", "{o}/run"],
        "--steps",
        ("0", "-1", "nan", ""),
    ),
    *_numeric(
        ["train", "target", "--quiet", "--out-dir", "{o}/ck", "--run-dir", "{o}/run"],
        "--batch",
        ("0", "nan", "100000000"),
    ),
    *_numeric(
        ["train", "target", "--quiet", "--out-dir", "{o}/ck", "--run-dir", "{o}/run"],
        "--lr",
        ("nan", "inf", "0", "-1"),
    ),
    *_numeric(
        ["train", "target", "--quiet", "--out-dir", "{o}/ck", "--run-dir", "{o}/run"],
        "--threads",
        ("0", "100000"),
    ),
    (
        "train --device cuda",
        [
            "train",
            "drafter",
            "--kind",
            "ar",
            "--quiet",
            "--out-dir",
            "{o}/ck",
            "--run-dir",
            "{o}/run",
            "--device",
            "cuda",
        ],
    ),
    ("train --kind bogus", ["train", "drafter", "--kind", "bogus", "--out-dir", "{o}/ck"]),
    (
        "train --out-dir under file",
        ["train", "target", "--quiet", "--out-dir", "{d}/afile/ck", "--run-dir", "{o}/run"],
    ),
    (
        "train --out-dir foreign",
        [
            "train",
            "target",
            "--quiet",
            "--steps",
            "1",
            "--out-dir",
            "{d}/foreign",
            "--run-dir",
            "{o}/run",
        ],
    ),
    (
        "train --run-dir is file",
        [
            "train",
            "target",
            "--quiet",
            "--steps",
            "1",
            "--out-dir",
            "{o}/ck",
            "--run-dir",
            "{d}/afile",
        ],
    ),
    # decode / evaluate (engine)
    ("decode non-UTF-8 prompt", ["decode", "--prompt", "caf\udce9"]),
    ("decode empty prompt", ["decode", "--prompt", ""]),
    *_numeric(["decode", "--prompt", "hi"], "--max-new-tokens", ("0", "nan", "100000000")),
    *_numeric(["decode", "--prompt", "hi"], "--temperature", ("nan", "inf", "-1")),
    *_numeric(["decode", "--prompt", "hi"], "--threads", ("0", "100000")),
    *_numeric(["decode", "--prompt", "hi"], "--seed", ("nan", "-1")),
    ("decode --device cuda", ["decode", "--prompt", "hi", "--device", "cuda"]),
    ("decode --drafter bogus", ["decode", "--prompt", "hi", "--drafter", "bogus"]),
    ("decode --policy k>gamma", ["decode", "--prompt", "hi", "--policy", "fixed:k=1000"]),
    (
        "decode --cost missing",
        ["decode", "--prompt", "hi", "--policy", "dspark", "--cost", "{d}/nope.yaml"],
    ),
    (
        "decode --config clairvoyant",
        ["decode", "--prompt", "hi", "--config", "{d}/best_clairvoyant.yaml"],
    ),
    ("decode --config laughs", ["decode", "--prompt", "hi", "--config", "{d}/laughs.yaml"]),
    *_numeric(
        ["evaluate", "--quiet", "--drafters", "ar", "--domains", "chat"],
        "--prompts",
        ("0", "100000", "nan"),
    ),
    *_numeric(
        ["evaluate", "--quiet", "--drafters", "ar", "--domains", "chat"], "--gamma", ("0", "1000")
    ),
    *_numeric(
        ["evaluate", "--quiet", "--drafters", "ar", "--domains", "chat"],
        "--new-tokens",
        ("0", "100000000"),
    ),
    *_numeric(
        ["evaluate", "--quiet", "--drafters", "ar", "--domains", "chat"],
        "--temperature",
        ("nan", "inf"),
    ),
    (
        "evaluate --plot exists",
        [
            "evaluate",
            "--quiet",
            "--drafters",
            "ar",
            "--domains",
            "chat",
            "--plot",
            "{d}/exists.png",
        ],
    ),
    (
        "evaluate --plot under file",
        [
            "evaluate",
            "--quiet",
            "--drafters",
            "ar",
            "--domains",
            "chat",
            "--plot",
            "{d}/afile/p.png",
        ],
    ),
    ("evaluate --drafters ''", ["evaluate", "--quiet", "--drafters", ""]),
    ("evaluate --drafters bogus", ["evaluate", "--quiet", "--drafters", "bogus"]),
    (
        "evaluate --gamma above every block",
        ["evaluate", "--quiet", "--drafters", "ar,mtp1", "--domains", "chat", "--gamma", "8"],
    ),
    # fidelity (engine)
    *_numeric(["fidelity", "--quick", "--quiet"], "--num-requests", ("0", "nan", "100000000")),
    *_numeric(["fidelity", "--quick", "--quiet"], "--max-concurrency", ("0", "1000000000")),
    *_numeric(["fidelity", "--quick", "--quiet"], "--seed", ("nan", "-1")),
    *_numeric(["fidelity", "--quick", "--quiet"], "--replicates", ("0", "nan", "21")),
    ("fidelity --replicates, engine", ["fidelity", "--quick", "--quiet", "--replicates", "2"]),
    ("fidelity --out under file", ["fidelity", "--quick", "--quiet", "--out", "{d}/afile/x"]),
    ("fidelity --out foreign", ["fidelity", "--quick", "--quiet", "--out", "{d}/foreign"]),
    ("fidelity --policies unknown", ["fidelity", "--quick", "--quiet", "--policies", "bogus"]),
    (
        "fidelity --policies clairvoyant",
        ["fidelity", "--quick", "--quiet", "--policies", "clairvoyant"],
    ),
    ("fidelity --threads 0", ["fidelity", "--quick", "--quiet", "--threads", "0"]),
]

# Cases that need a real process: pipes, FIFOs, a blocked import.
SUBPROCESS: list[tuple[str, list[str], str]] = [
    (
        "replay FIFO with no writer closed early",
        ["replay", "--quiet", "--trace", "{o}/fifo"],
        "fifo-bad",
    ),
    ("replay /dev/stdin bad rows", ["replay", "--quiet", "--trace", "/dev/stdin"], "stdin-bad"),
    ("replay /dev/stdin empty", ["replay", "--quiet", "--trace", "/dev/stdin"], "stdin-empty"),
    (
        "tune /dev/stdin --resume no run",
        ["tune", "--quiet", "--quick", "--resume", "--trace", "/dev/stdin", "--out", "{o}/t"],
        "stdin-good",
    ),
    *[
        (f"{cmd[0]} without the engine extra", cmd, "no-engine")
        for cmd in (
            ["decode", "--prompt", "hi"],
            ["profile", "--quick", "--quiet", "--out", "{o}/p.yaml"],
            ["record", "--quiet", "--out", "{o}/r.npz"],
            ["train", "target", "--quiet", "--out-dir", "{o}/ck", "--run-dir", "{o}/run"],
            ["evaluate", "--quiet", "--drafters", "ar", "--domains", "chat"],
            ["fidelity", "--quick", "--quiet"],
            ["replay", "--quiet", "--backend", "live", "--limit", "2"],
            ["import", "sglang-shards", "{o}/sts", "--out", "{o}/r.npz"],
        )
    ],  # fmt: skip
]

BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'safetensors'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
from runner.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


# ---- running a case ---------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int | None  # None: timed out
    stderr: str
    traceback: bool


def _hashes(*dirs: Path) -> dict[str, str]:
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def run_inprocess(argv: list[str], cwd: Path) -> Outcome:
    from runner.cli import main

    err, out = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    code, tb = None, False
    try:
        os.chdir(cwd)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except _Timeout:
                code = None
            except Exception:  # noqa: BLE001 - the sweep counts what escapes
                import traceback

                traceback.print_exc()
                code, tb = 1, True
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(old_cwd)
    text = err.getvalue()
    return Outcome(code, text, tb or "Traceback" in text)


def run_subprocess(argv: list[str], cwd: Path, setup: str) -> Outcome:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "runner.cli", *argv]
    stdin: int | None = subprocess.DEVNULL
    feed: bytes | None = None
    if setup == "no-engine":
        cmd = [sys.executable, "-c", BLOCKER, *argv]
    elif setup.startswith("stdin"):
        stdin = subprocess.PIPE
        feed = {"stdin-bad": TRACE.encode() + b"1,x,y\n", "stdin-empty": b"",
                "stdin-good": TRACE.encode()}[setup]  # fmt: skip
    elif setup == "fifo-bad":
        fifo = cwd / "fifo"
        os.mkfifo(fifo)

        def write() -> None:  # one writer that sends bad rows, then closes
            with open(fifo, "wb") as f:
                f.write(TRACE.encode() + b"oops\n")

        threading.Thread(target=write, daemon=True).start()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, input=feed, stdin=None if feed is not None
                           else stdin, capture_output=True, timeout=TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return Outcome(None, "", False)
    text = p.stderr.decode(errors="replace")
    return Outcome(p.returncode, text, "Traceback" in text)


def verdict(outcome: Outcome, changed: list[str]) -> str:
    """ "ok" or the first broken promise: hang, traceback, exit0, overwrite, code, stderr."""
    if outcome.code is None:
        return "hang"
    if outcome.traceback:
        return "traceback"
    if outcome.code == 0:
        return "exit0"
    if changed:
        return "overwrite"
    if outcome.code != 2:
        return "code"
    lines = outcome.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("spectune: error: "):
        return "stderr"
    return "ok"


def prepare(name: str, case_dir: Path) -> None:
    """Per-case state some cases need (a half-written run, a held lock)."""
    if name == "tune --resume bad run.yaml":
        (case_dir / "bad").mkdir()
        (case_dir / "bad" / "run.yaml").write_text(LAUGHS, encoding="utf-8")
    if name == "tune --out locked":
        (case_dir / "locked").mkdir()
        (case_dir / "locked" / ".spectune.lock").write_text(f"{os.getpid()}\n")


def check(name: str, argv: list[str], world: Path, case_dir: Path, setup: str | None) -> str:
    prepare(name, case_dir)
    argv = [a.replace("{d}", str(world)).replace("{o}", str(case_dir)) for a in argv]
    before = _hashes(world, case_dir)
    if setup is None:
        outcome = run_inprocess(argv, case_dir)
    else:
        outcome = run_subprocess(argv, case_dir, setup)
    after = _hashes(world, case_dir)
    changed = [p for p, h in before.items() if after.get(p) != h]
    result = verdict(outcome, changed)
    if result != "ok":
        print(f"[{result}] {name}: exit {outcome.code}\n{outcome.stderr[-2000:]}")
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("world")
    build_world(d)
    return d


ENGINE = ("profile", "record", "train", "decode", "evaluate", "fidelity")


def _params():
    for name, argv in CASES:
        marks = [pytest.mark.slow] if argv[0] in ENGINE else []
        yield pytest.param(name, argv, None, id=name, marks=marks)
    for name, argv, setup in SUBPROCESS:
        yield pytest.param(name, argv, setup, id=name, marks=[pytest.mark.slow])


@pytest.mark.parametrize(("name", "argv", "setup"), list(_params()))
def test_hostile_input_is_one_line_exit_2(world, tmp_path, name, argv, setup):
    assert check(name, argv, world, tmp_path, setup) == "ok"


def test_the_sweep_is_big_enough():
    assert len(CASES) + len(SUBPROCESS) >= 150
    assert {argv[0] for _, argv in CASES} >= {
        "audit", "calibrate", "decode", "demo", "evaluate", "export", "fidelity", "import",
        "policies", "profile", "profiles", "record", "replay", "train", "tune",
    }  # fmt: skip


if __name__ == "__main__":
    import tempfile
    from collections import Counter

    sys.path.insert(0, str(ROOT))
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp) / "world"
        w.mkdir()
        build_world(w)
        tally: Counter = Counter()
        allcases = [(n, a, None) for n, a in CASES] + SUBPROCESS
        for i, (name, argv, setup) in enumerate(allcases):
            wanted = setup is not None if only == "sub" else name.startswith(only)
            if not wanted:
                continue
            c = Path(tmp) / f"case{i}"
            c.mkdir()
            tally[check(name, argv, w, c, setup)] += 1
        print(f"cases {sum(tally.values())}: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
