"""Importers: Prometheus parsing, vLLM counters → conditional rates (and the 3% replay criterion),
SGLang SPS tables and the cost CSV; every bad input is one InputError naming the file.

Fixtures in ``data/`` are hand-made in the producers' formats (numbers invented, consistent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from policies import make_policy
from profiles import InputError
from profiles.builtin import load_acceptance, load_cost
from profiles.importers import csv_cost, sglang_cost
from profiles.store import acceptance_to_dict, cost_to_dict, write_yaml
from profiles.vllm import parse_prometheus, vllm_acceptance, vllm_acceptance_over, vllm_counters
from simulator.run import simulate
from simulator.server import ServerConfig
from tests.conftest import make_requests

DATA = Path(__file__).parent / "data"
PROM = DATA / "vllm_metrics.prom"


# -- Prometheus text -------------------------------------------------------------------------------
def test_prometheus_labels_escapes_and_values():
    text = (
        "# HELP x_total A counter.\n# TYPE x_total counter\n"
        'x_total{a="1",b="say \\"hi\\"\\\\n",} 3.5 1712345678000\n'
        "y{} +Inf\nz NaN\n"
        'h_bucket{le="+Inf"} 7\n'
    )
    s = parse_prometheus(text)
    assert [x.name for x in s] == ["x_total", "y", "z", "h_bucket"]
    assert dict(s[0].labels) == {"a": "1", "b": 'say "hi"\\n'} and s[0].value == 3.5
    assert s[1].value == float("inf") and np.isnan(s[2].value) and s[3].labels == (("le", "+Inf"),)


@pytest.mark.parametrize(
    "line, message",
    [
        ('x{a="1"', "malformed sample line"),
        ("x{a=1} 2", "malformed label set"),
        ('x{a="1"} two', "is not a number"),
        ('x{a="1",a="2"} 1', "given twice"),
        ("9x 1", "malformed sample line"),
        ("x", "malformed sample line"),
    ],
)
def test_prometheus_malformed_lines_name_file_and_line(line, message):
    with pytest.raises(InputError) as err:
        parse_prometheus(f"# TYPE ok gauge\nok 1\n{line}\n", "scrape.prom")
    assert message in str(err.value) and str(err.value).startswith("scrape.prom:3:")


# -- vLLM ------------------------------------------------------------------------------------------
def test_vllm_counters_summed_over_engines():
    c = vllm_counters(PROM)
    assert c.engines == 2 and c.models == ("Qwen/Qwen3-8B",)
    assert c.drafts == 48213 + 51877
    assert c.per_pos == (38570 + 41390, 29890 + 32050, 22790 + 24480)
    assert c.mean_acceptance_length == pytest.approx(1 + (91250 + 97920) / c.drafts)


def test_vllm_conditional_rates_and_label():
    model, c = vllm_acceptance(PROM, domain="code")
    reach = np.r_[c.drafts, c.per_pos]
    assert model.rates["code"] == pytest.approx(reach[1:] / reach[:-1])
    assert model.gamma == 3 and model.source.startswith("imported: vLLM metrics vllm_metrics.prom")
    assert model.expected_accepted_len("code") == pytest.approx(c.mean_acceptance_length)


def test_vllm_since_subtracts_the_earlier_scrape():
    _, c = vllm_acceptance(PROM, since=DATA / "vllm_metrics_earlier.prom")
    assert c.drafts == (48213 + 51877) - (12004 + 13117)
    with pytest.raises(InputError, match="decreased"):
        vllm_acceptance(DATA / "vllm_metrics_earlier.prom", since=PROM)


def test_vllm_windows_sum_their_own_deltas(tmp_path):
    """Two windows (earlier → now, and an empty one now → now) import as the one window; the
    counters between windows (here none) are left out."""
    early = DATA / "vllm_metrics_earlier.prom"
    one, c1 = vllm_acceptance(PROM, since=early)
    two, c2 = vllm_acceptance_over([(PROM, early), (PROM, PROM), (early, early)])
    assert (c2.drafts, c2.accepted, c2.per_pos) == (c1.drafts, c1.accepted, c1.per_pos)
    assert two.rates == one.rates and "summed over 3 scrape window(s)" in two.source
    with pytest.raises(InputError, match="no scrape windows"):
        vllm_acceptance_over([])


def test_replaying_imported_model_reproduces_mean_acceptance_length(tmp_path, cost):
    """The issue's criterion: fixed:k=K replay within 3% of 1 + accepted/drafts.
    α: one seed (0), 600 requests of 1..300 tokens."""
    model, c = vllm_acceptance(PROM)
    path = tmp_path / "vllm.yaml"
    write_yaml(path, acceptance_to_dict(model))
    loaded = load_acceptance(str(path))
    s = simulate(make_requests(600, 40.0, seed=3), make_policy("fixed:k=3"), cost, loaded,
                 ServerConfig(max_concurrency=32, gamma=3), seed=0).summary  # fmt: skip
    assert s["mean_accepted_len"] == pytest.approx(c.mean_acceptance_length, rel=0.03)


def _scrape(tmp_path, edit) -> Path:
    path = tmp_path / "edited.prom"
    path.write_text(edit(PROM.read_text()))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace("vllm:spec_decode_num_drafts_total", "vllm:other_total"),
            "missing metric(s): vllm:spec_decode_num_drafts_total",
        ),
        (
            lambda t: "\n".join(x for x in t.splitlines() if "per_pos" not in x),
            "num_accepted_tokens_per_pos_total (is speculative decoding enabled?)",
        ),
        (lambda t: t.replace('position="1"', 'position="4"'), "not 0..K-1"),
        (lambda t: t.replace('position="2"}', 'position="two"}'), "integer 'position'"),
        (lambda t: t.replace("} 91250.0", "} 1250.0"), "per-position accepted sum"),
        (
            lambda t: t.replace("} 22790.0", "} 52790.0").replace("} 91250.0", "} 121250.0"),
            "position 2 accepted",
        ),
        (
            lambda t: t.replace('engine="1"', 'engine="1",model_name2="x"').replace(
                'model_name="Qwen/Qwen3-8B",engine="1"', 'model_name="Llama",engine="1"'
            ),
            "several models",
        ),
        (lambda t: t.replace("} 48213.0", "} -5.0"), "expected a count"),
        (lambda t: t + "vllm:spec_decode_num_drafts_total{engine=0} 1\n", "malformed label set"),
    ],
)
def test_vllm_bad_scrapes(tmp_path, edit, message):
    with pytest.raises(InputError) as err:
        vllm_acceptance(_scrape(tmp_path, edit))
    assert message in str(err.value) and "edited.prom" in str(err.value)


def test_vllm_model_name_filter(tmp_path):
    path = _scrape(tmp_path, lambda t: t.replace(
        'model_name="Qwen/Qwen3-8B",engine="1"', 'model_name="Llama",engine="1"'))  # fmt: skip
    c = vllm_counters(path, model_name="Llama")
    assert c.drafts == 51877 and c.engines == 1
    with pytest.raises(InputError, match="for model_name 'Mistral'"):
        vllm_counters(path, model_name="Mistral")


def test_vllm_zero_drafts(tmp_path):
    path = _scrape(tmp_path, lambda t: "\n".join(
        x.rsplit(" ", 1)[0] + " 0.0" if x.startswith("vllm:spec_decode") and "_created" not in x
        else x for x in t.splitlines()))  # fmt: skip
    with pytest.raises(InputError, match="no speculative rounds"):
        vllm_acceptance(path)


# -- SGLang SPS and cost CSV -----------------------------------------------------------------------
def test_sglang_sps_table(tmp_path):
    cost = sglang_cost(DATA / "sglang_sps.json")
    table = json.loads((DATA / "sglang_sps.json").read_text())
    assert cost.kind == "sps" and cost.max_batch_tokens == 512
    for b, sps in zip(table["sample_batch_tokens"], table["sample_steps_per_sec"], strict=True):
        assert cost.verify_time(b, b) == pytest.approx(1.0 / sps)
    write_yaml(tmp_path / "c.yaml", cost_to_dict(cost))
    back = load_cost(str(tmp_path / "c.yaml"))
    assert back.verify_time(8, 96) == pytest.approx(cost.verify_time(8, 96))
    assert "imported: SGLang SpsCostTable" in back.source


def test_sglang_additive_table():
    cost = sglang_cost(DATA / "sglang_sps_additive.json")
    t = json.loads((DATA / "sglang_sps_additive.json").read_text())
    assert cost.kind == "additive"
    # T(bs=8, M=64) = bias + alpha(8) + theta(64), both exact probes
    assert cost.verify_time(8, 64) == pytest.approx(
        t["bias_seconds"] + t["alpha_seconds"][3] + t["theta_seconds"][4]
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("{oops", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"sample_batch_tokens": [1, 2], "max_batch_tokens": 4}', "'sample_steps_per_sec'"),
        ('{"sample_batch_tokens": ["1", "2"], "sample_steps_per_sec": [1, 2], '
         '"max_batch_tokens": 4}', "list of integers"),
        ('{"sample_batch_tokens": [1, 2], "sample_steps_per_sec": [5, 4]}', "'max_batch_tokens'"),
        ('{"sample_batch_tokens": [1, 2], "sample_steps_per_sec": [5], "max_batch_tokens": 4}',
         "lengths differ"),
        ('{"sample_batch_tokens": [1], "sample_steps_per_sec": [1.0], "max_batch_tokens": 8}',
         "uninitialized placeholder"),
        ('{"sample_batch_tokens": [1, 8], "sample_steps_per_sec": [5, 4], "max_batch_tokens": 4}',
         "max_batch_tokens 4 < largest probe 8"),
        ('{"sample_batch_tokens": [8, 1], "sample_steps_per_sec": [5, 4], "max_batch_tokens": 8}',
         "strictly increasing"),
        ('{"sample_batch_tokens": [1, 8], "sample_steps_per_sec": [5, 0], "max_batch_tokens": 8}',
         "positive"),
        ('{"bias_seconds": 0, "bs_probes": [1], "alpha_seconds": [0], "m_probes": [1], '
         '"theta_seconds": [0]}', "bias_seconds' must be > 0"),
        ('{"bias_seconds": 0.01, "bs_probes": [1, 2], "alpha_seconds": [0], "m_probes": [1], '
         '"theta_seconds": [0]}', "bs_probes/alpha_seconds lengths differ"),
        ('{"bias_seconds": 0.01, "alpha_seconds": [0], "m_probes": [1], "theta_seconds": [0]}',
         "missing field 'bs_probes'"),
    ],
)  # fmt: skip
def test_sglang_bad_tables(tmp_path, text, message):
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        sglang_cost(path)
    assert message in str(err.value) and str(err.value).startswith(str(path))


def test_cost_csv():
    cost = csv_cost(DATA / "cost.csv")
    assert cost.kind == "sps" and cost.verify_time(1, 96) == pytest.approx(15.72e-3)
    assert cost.max_batch_tokens == 512


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no data rows"),
        ("batch_tokens,step_ms\n", "no data rows"),
        ("tokens,ms\n1,2\n", ":1: header must be"),
        ("batch_tokens,step_ms\n1,2\n2,fast\n", ":3: not a number"),
        ("batch_tokens,step_ms\n1,2\n1,3\n", ":3: batch_tokens 1 given twice"),
        ("batch_tokens,step_ms\n1,-2\n", ":2: step_ms '-2'"),
        ("batch_tokens,step_ms\n1.5,2\n", ":2: batch_tokens '1.5'"),
        ("batch_tokens,step_ms\n1,2,3\n", ":2: expected 2 columns"),
        ("batch_tokens,step_ms\n4,nan\n", ":2: step_ms 'nan'"),
    ],
)
def test_cost_csv_bad_rows(tmp_path, text, message):
    path = tmp_path / "cost.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        csv_cost(path)
    assert message in str(err.value) and str(err.value).startswith(str(path))


@pytest.mark.parametrize("reader", [csv_cost, sglang_cost, vllm_acceptance])
def test_missing_and_directory_inputs(tmp_path, reader):
    with pytest.raises(InputError, match="no such file"):
        reader(tmp_path / "absent")
    with pytest.raises(InputError, match="not a file"):
        reader(tmp_path)
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        reader(tmp_path / "binary")


# -- imports that cannot mislead (issue #14) -------------------------------------------------------
def _counters_text(drafts: int, draft_tokens: int, per_pos: list[int]) -> str:
    lines = [f"vllm:spec_decode_num_drafts_total {drafts}",
             f"vllm:spec_decode_num_draft_tokens_total {draft_tokens}",
             f"vllm:spec_decode_num_accepted_tokens_total {sum(per_pos)}"]  # fmt: skip
    lines += [f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{position="{k}"}} {v}'
              for k, v in enumerate(per_pos)]  # fmt: skip
    return "\n".join(lines) + "\n"


def test_variable_k_scrape_is_refused_with_the_reason(tmp_path):
    """Rounds of K = 7 and K = 1 mixed (a per-batch-size K): 4.0 draft tokens per draft < 7,
    and the naive conditional rates would fall to 0.28 at the last position."""
    rng = np.random.default_rng(14)
    true = np.array([0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])
    drafts, tokens, per_pos = 0, 0, np.zeros(7, dtype=np.int64)
    for k in (7, 1) * 500:
        acc = np.cumprod(rng.random((20, k)) < true[:k], axis=1)  # [20, k] accepted prefix
        drafts, tokens = drafts + 20, tokens + 20 * k
        per_pos[:k] += acc.sum(axis=0)
    path = tmp_path / "varK.prom"
    path.write_text(_counters_text(drafts, tokens, per_pos.tolist()))
    with pytest.raises(InputError, match="variable-K deployment: 4.00 draft tokens per draft"):
        vllm_acceptance(path)
    fixed = tmp_path / "fixedK.prom"  # the same rounds at a fixed K = 7 import
    acc = np.cumprod(rng.random((200000, 7)) < true, axis=1)
    fixed.write_text(_counters_text(200000, 1400000, acc.sum(axis=0).tolist()))
    model, _ = vllm_acceptance(fixed)
    assert np.allclose(model.rates["chat"], true, atol=0.02)


def test_sglang_table_import_keeps_sglangs_lookup(tmp_path):
    from profiles.sglang import Table

    for name in ("sglang_sps.json", "sglang_sps_additive.json"):
        doc = json.loads((DATA / name).read_text())
        cost, table = sglang_cost(DATA / name), Table(doc)
        lin = sglang_cost(DATA / name, lookup="linear")
        top = int(doc.get("max_batch_tokens", doc.get("m_probes", [0])[-1])) * 2
        for r in (1, 4, 64, 500):
            b = np.arange(r, max(top, r + 1))
            ours = np.array([cost.verify_time(r, int(x)) for x in b])
            assert ours == pytest.approx(table.step_seconds(r, b), rel=1e-12), (name, r)
        if "bias_seconds" not in doc:  # the 1D table is a step function: linear differs
            probes = doc["sample_batch_tokens"]
            mid = (probes[1] + probes[2]) // 2
            assert lin.verify_time(mid, mid) != pytest.approx(cost.verify_time(mid, mid))
        assert "no prefill, draft or context terms" in cost.source


def test_import_cli_warns_about_missing_terms(tmp_path, capsys):
    from runner.cli import main

    out = tmp_path / "c.yaml"
    assert main(["import", "sglang-sps", str(DATA / "sglang_sps.json"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("spectune: warning: ") and "no prefill, draft or context" in err


def test_import_cli_refuses_a_variable_k_scrape_in_one_line(tmp_path, capsys):
    from runner.cli import main

    path = tmp_path / "varK.prom"
    path.write_text(_counters_text(100, 400, [80, 60, 40, 20, 10, 5, 2]))
    assert main(["import", "vllm-metrics", str(path), "--out", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1 and "variable-K" in err
    assert not (tmp_path / "a.yaml").exists()


# -- incomplete cost profiles: the warning on every use, the prefill term from a second source -----
def _ttft_csv(path, rows):
    path.write_text("prompt_tokens,ttft_ms\n" + "".join(f"{p},{t}\n" for p, t in rows))
    return path


def test_prefill_from_a_low_load_ttft_measurement_reproduces_it(tmp_path):
    """A request arriving at an idle server: the completed profile's TTFT is the measured one."""
    from profiles.importers import cost_warning, prefill_from
    from simulator.request import Request

    rows = [(100, 12.0), (100, 14.0), (500, 41.0), (1000, 80.0), (2000, 171.0)]
    curve, label = prefill_from(str(_ttft_csv(tmp_path / "ttft.csv", rows)))
    assert curve.x == (100, 500, 1000, 2000) and curve.y[0] == pytest.approx(0.013)  # median
    cost = sglang_cost(DATA / "sglang_sps.json", prefill=(curve, label))
    assert "prefill from ttft.csv" in cost.source and "no draft or context terms" in cost.source
    assert "prefill" not in cost_warning(cost, "p.yaml").split(":")[2]
    prompts = (100, 500, 1000, 2000, 750)
    work = [Request(i, 100.0 * i, p, 2) for i, p in enumerate(prompts)]  # far apart: idle server
    res = simulate(work, make_policy("none"), cost, load_acceptance("paper:qwen3-8b-dspark"),
                   ServerConfig(max_concurrency=4, gamma=7, max_prefill_tokens=4096))  # fmt: skip
    ttft = res.recorder.per_request()["ttft_s"]
    assert ttft[:4] == pytest.approx([0.013, 0.041, 0.080, 0.171], rel=1e-9)
    assert ttft[4] == pytest.approx((0.041 + 0.080) / 2, rel=1e-9)  # linear between probes
    plain = simulate(work, make_policy("none"), sglang_cost(DATA / "sglang_sps.json"),
                     load_acceptance("paper:qwen3-8b-dspark"),
                     ServerConfig(max_concurrency=4, gamma=7))  # fmt: skip
    assert plain.recorder.per_request()["ttft_s"].max() == 0.0  # what the warning is about


def test_prefill_from_a_cost_profile_or_a_requests_csv(tmp_path):
    from profiles.importers import prefill_from

    curve, label = prefill_from("builtin:h100-8b")
    assert curve == load_cost("builtin:h100-8b").prefill and label == "cost profile builtin:h100-8b"
    reqs = tmp_path / "requests.csv"  # a replay's requests.csv: extra columns, ttft in seconds
    reqs.write_text("id,prompt_tokens,output_tokens,ttft_s\n0,64,5,0.010\n1,640,5,0.050\n"
                    "2,640,9,0.060\n")  # fmt: skip
    assert prefill_from(str(reqs))[0].y == pytest.approx((0.010, 0.055))
    many = _ttft_csv(tmp_path / "many.csv", [(p, p / 100) for p in range(1, 1001)])
    c = prefill_from(str(many))[0]
    assert len(c.x) == 64 and c(np.array([500.0]))[0] == pytest.approx(0.005, rel=0.01)


@pytest.mark.parametrize(
    "text, message",
    [
        ("tokens,ms\n1,2\n", "header needs prompt_tokens and one of prefill_ms, ttft_ms, ttft_s"),
        ("prompt_tokens,ttft_ms\n100,12\n100,13\n", "two or more prompt lengths"),
        ("prompt_tokens,ttft_ms\n100,12\n200,nan\n", "ttft_ms must be a positive number"),
        ("prompt_tokens,ttft_ms\n100,12\n0.5,3\n", "prompt_tokens must be an integer >= 1"),
        ("prompt_tokens,ttft_ms\n100,12\n200\n", "expected 2 columns, got 1"),
        ("prompt_tokens,prefill_ms\n100,x\n", "not a number"),
        ("", "two or more prompt lengths"),
    ],
)
def test_prefill_csv_bad_input_names_file_and_line(tmp_path, text, message):
    from profiles.importers import prefill_from

    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(InputError, match=message) as err:
        prefill_from(str(tmp_path / "p.csv"))
    assert str(err.value).startswith(str(tmp_path / "p.csv"))


def test_prefill_from_a_profile_without_prefill_is_refused(tmp_path):
    from profiles.importers import prefill_from

    path = tmp_path / "imported.yaml"
    write_yaml(path, cost_to_dict(sglang_cost(DATA / "sglang_sps.json")))
    with pytest.raises(InputError, match="no prefill term to take"):
        prefill_from(str(path))


def _one_warning(err: str, name: str) -> str:
    lines = [x for x in err.splitlines() if "imported cost profile" in x]
    assert len(lines) == 1 and lines[0].startswith(f"spectune: warning: {name}: "), err
    return lines[0].removeprefix("spectune: warning: ")


def test_replay_and_tune_warn_on_an_incomplete_imported_profile(tmp_path, capsys):
    from runner.cli import main

    prof = tmp_path / "p.yaml"
    assert main(["import", "sglang-sps", str(DATA / "sglang_sps.json"), "--out", str(prof),
                 "--json"]) == 0  # fmt: skip
    out = capsys.readouterr()
    line = _one_warning(out.err, str(prof))
    assert json.loads(out.out)["cost_warning"] == line and "--prefill-from" in line
    base = ["--quiet", "--profile", str(prof), "--num-requests", "6", "--request-rate", "1"]
    assert main(["replay", *base, "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["cost_warning"] == _one_warning(out.err, str(prof)) == line
    tune = tmp_path / "t"
    assert main(["tune", "--quick", "--quiet", "--no-plots", "--profile", str(prof), "--policies",
                 "none", "--concurrency", "2", "--num-requests", "6", "--out", str(tune),
                 "--json"]) == 0  # fmt: skip
    out = capsys.readouterr()
    assert json.loads(out.out)["cost_warning"] == _one_warning(out.err, str(prof)) == line
    assert json.loads((tune / "summary.json").read_text())["cost_warning"] == line
    cfg = next(tune.rglob("scheduler.yaml"), None) or next(tune.rglob("best*.yaml"))
    assert main(["replay", "--quiet", "--config", str(cfg), "--num-requests", "4", "--json"]) == 0
    out = capsys.readouterr()
    assert "cost_warning" in json.loads(out.out) and _one_warning(out.err, str(cfg))
    assert main(["replay", "--quiet", "--num-requests", "4", "--json"]) == 0  # a builtin: none
    out = capsys.readouterr()
    assert "cost_warning" not in json.loads(out.out) and "imported cost" not in out.err


def test_import_prefill_from_completes_the_profile(tmp_path, capsys):
    from runner.cli import main

    ttft = _ttft_csv(tmp_path / "ttft.csv", [(100, 12), (1000, 80)])
    prof = tmp_path / "p.yaml"
    assert main(["import", "cost-csv", str(DATA / "cost.csv"), "--out", str(prof),
                 "--prefill-from", str(ttft)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "no draft or context terms" in _one_warning(err, str(prof)) and "prefill-from" not in err
    doc = yaml_load(prof)
    assert doc["prefill"]["tokens"] == [100.0, 1000.0]
    assert doc["metadata"]["prefill_from"]["sha256"] and "--prefill-from" in doc["metadata"][
        "command"]  # fmt: skip
    assert load_cost(str(prof)).prefill_time(1000) == pytest.approx(0.080)


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())
