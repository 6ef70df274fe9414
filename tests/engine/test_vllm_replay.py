"""A live ``vllm serve`` in the loop: export → launch → replay → import (skips without vllm).

Two tuned schedulers priced by the committed vLLM profile (``docs/vllm/``) — ``fixed:k=4`` and a
per-batch-size table ``batch_table:sizes=4;8,ks=4;2`` — are exported with ``spectune export
--format vllm``; each export is launched unmodified except the ``$METHOD``/``$DRAFT``
placeholders by ``spectune replay --backend vllm --export DIR`` with our exported target and the
committed distilled draft model, and a short closed-loop synthetic workload (greedy, so the
accepted length does not hang on sampling) is replayed over the streaming API. Checked:

- the replay writes the simulator's ``summary.json`` keys and ``requests.csv`` columns, every
  request completes and the accepted length is above 1 (vLLM's own counters);
- ``spectune import vllm-metrics`` on the run's own before/after scrapes gives an acceptance
  model that reproduces the run's mean acceptance length (fixed K);
- the per-batch-size scrape is refused with the reason (issue #14: variable K);
- the drafted tokens per draft vLLM counted match the exported table at the batch sizes the
  server ran (its per-step log) within 5%, and K exactly for the fixed export.

Two server start-ups dominate the time (about 2 minutes each on the loaded 2-core CI machine).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engine import vllm

if vllm.missing():
    pytest.skip(vllm.missing(), allow_module_level=True)

from engine.vllmbench import steps, table_check  # noqa: E402
from policies import make_policy  # noqa: E402
from profiles.calibration import StsCalibration  # noqa: E402
from profiles.store import read_cost  # noqa: E402
from runner.cli import main  # noqa: E402
from runner.scheduler import SchedulerConfig, write_scheduler  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "docs" / "vllm" / "profile-quick-untrained-draft.yaml"
POLICIES = {"fixed": "fixed:k=4", "table": "batch_table:sizes=4;8,ks=4;2,default=2"}
CAP = 8
LOAD = ["--workload", "synthetic", "--num-requests", "12", "--request-rate", "inf",
        "--concurrency", "6", "--max-prompt-tokens", "64", "--max-output-tokens", "32",
        "--temperature", "0", "--time-limit", "300", "--quiet"]  # fmt: skip


def _best(spec: str, path: Path) -> Path:
    p = make_policy(spec)
    cfg = SchedulerConfig(
        policy_name=p.name, params=tuple(p.__dict__.items()), gamma=4, cost=read_cost(PROFILE),
        sts=StsCalibration(temperatures=(1.0,) * 4, dataset="unit", num_samples=1),
        max_concurrency=CAP, tuned={"load_mode": "concurrency", "load": float(CAP)},
        provenance={"seed": 0},
    )  # fmt: skip
    write_scheduler(path, cfg)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root, out = tmp_path_factory.mktemp("vllm-replay"), {}
    for name, spec in POLICIES.items():
        exp = root / f"export-{name}"
        best = _best(spec, root / f"best-{name}.yaml")
        assert main(["export", "--from", str(best), "--format", "vllm", "--out", str(exp),
                     "--no-simulate"]) == 0  # fmt: skip
        run = root / f"run-{name}"
        assert main(["replay", "--backend", "vllm", "--export", str(exp), *LOAD,
                     "--out", str(run)]) == 0, (run / "server.log").read_text()[-3000:]  # fmt: skip
        out[name] = (exp, run, json.loads((run / "summary.json").read_text()))
    return out


def test_replay_writes_the_simulators_schema(runs, tmp_path, capsys):
    assert main(["replay", "--workload", "synthetic", "--num-requests", "4", "--max-prompt-tokens",
                 "64", "--max-output-tokens", "16", "--out", str(tmp_path / "sim"),
                 "--quiet"]) == 0  # fmt: skip
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    with open(tmp_path / "sim" / "requests.csv") as f:
        header = next(csv.reader(f))
    for name, (_, run, s) in runs.items():
        assert set(sim) <= set(s), (name, set(sim) - set(s))
        assert list(s)[-1] == "wall"
        with open(run / "requests.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == header and len(rows) == 1 + 12
        assert s["requests_completed"] == 12 and s["vllm"]["requests_failed"] == 0
        assert s["output_tokens"] == 12 * 32 and s["prompts_clamped"] == 12
        assert s["mean_accepted_len"] > 1.0 and s["spec_decode"]["accepted_tokens"] > 0
        assert s["ttft_p50_s"] > 0 and s["tpot_p50_s"] > 0 and s["itl_p50_s"] > 0
        assert (run / "server.log").stat().st_size > 0 and (run / "steps.csv").exists()


def test_import_of_the_runs_own_scrape_reproduces_its_accepted_length(runs, tmp_path, capsys):
    _, run, s = runs["fixed"]
    out = tmp_path / "acc.yaml"
    assert main(["import", "vllm-metrics", str(run / "metrics-after.prom"), "--since",
                 str(run / "metrics-before.prom"), "--out", str(out), "--json"]) == 0  # fmt: skip
    got = json.loads(capsys.readouterr().out)
    assert got["draft_length"] == 4
    reach, mean = 1.0, 1.0
    for r in got["conditional_rates"]:
        reach *= r
        mean += reach
    assert mean == pytest.approx(s["mean_accepted_len"], rel=1e-3)


def test_a_per_batch_size_scrape_is_refused_with_the_reason(runs, tmp_path, capsys):
    _, run, s = runs["table"]
    assert s["spec_decode"]["draft_tokens_per_draft"] < 3.9  # K varied: rows of 4 and 2
    code = main(
        [
            "import",
            "vllm-metrics",
            str(run / "metrics-after.prom"),
            "--since",
            str(run / "metrics-before.prom"),
            "--out",
            str(tmp_path / "a.yaml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "variable-K deployment" in err and "K = 4" in err
    assert not (tmp_path / "a.yaml").exists()


def test_the_engine_drafts_what_the_export_says_at_the_batch_sizes_it_ran(runs):
    for name, (exp, run, s) in runs.items():
        doc = json.loads((exp / "speculative_config.json").read_text())
        rows = doc.get("num_speculative_tokens_per_batch_size")
        k = doc["num_speculative_tokens"]

        def k_of(r: int, rows=rows, k=k) -> int:
            hit = [kk for lo, hi, kk in rows or () if lo <= r <= hi]
            return hit[0] if hit else (rows[-1][2] if rows else k)

        measured = s["spec_decode"]["draft_tokens_per_draft"]
        check = table_check(steps(run / "server.log"), k_of)
        assert check["decode_requests"] > 100, name
        assert measured == pytest.approx(check["table_tokens_per_draft"], rel=0.05), (name, check)
        if name == "fixed":
            assert measured == pytest.approx(4.0, rel=0.05)
