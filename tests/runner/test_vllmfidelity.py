"""``fidelity --against vllm`` without a server: the harness's plumbing with a stand-in live side
(the simulator itself, so a fixed-K cell's prediction must equal its "live" run; on a machine
made slower by a factor, the speed references' measurement of it must price the cells), the
policy-list parse, and the command's one-line errors. No timing: the measurements are faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies import make_policy
from profiles.acceptance import ParametricAcceptance
from profiles.builtin import load_cost
from runner.cli import main
from runner.cli.vllm import policies_of
from runner.fidelity import FidelityConfig, report_markdown
from runner.vllmfidelity import (
    DEFAULT_POLICIES,
    VllmFidelityConfig,
    VllmFidelityHarness,
    live_runs,
    predict,
    reference_price,
    scaled,
)
from simulator.server import ServerConfig

COST = load_cost("builtin:cpu-tiny-additive")
RATES = (0.7, 0.6, 0.5, 0.4)


class _Sim:
    """A stand-in session: 'live' is the simulation priced as the harness prices it, on a
    machine ``slow(n)`` × slower than profiled at its n-th speed reference (n = 0, 1, ...) and
    at the geometric mean of the two around a load while it runs."""

    STEPS = [[5, 30], [3, 2]]  # a reference's logged one-request steps: [1 + K, count]

    def __init__(self, spec: str, where: Path, seen: list, slow=lambda n: 1.0) -> None:
        self.spec, self.where, self.seen, self.slow = spec, where, seen, slow
        self.refs = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, requests: list, concurrency: int, out: Path) -> dict:
        self.seen.append((self.spec, out.name, concurrency, len(requests)))
        acc = ParametricAcceptance({d: RATES for d in ("chat", "code", "math")}, source="unit")
        n = max(self.refs - 1, 0)
        cost = scaled(COST, (self.slow(n) * self.slow(n + 1)) ** 0.5)
        s = predict(requests, make_policy(self.spec), cost, acc, ServerConfig(8, gamma=4), 0, 2)
        # the server's log of the run: one R = 4, K = 4 step as slow as the machine then
        step = {"gen_requests": 4, "gen_tokens": 20, "ctx_tokens": 0}
        ms = 1e3 * (self.slow(n) * self.slow(n + 1)) ** 0.5 * COST.step_time(4, 20, 0, 0, 5, 4)
        return {**s, "vllm": {"scrapes": [f"{out}/before", f"{out}/after"]},
                "logged_steps": [{**step, "elapsed_ms": ms}]}  # fmt: skip

    def reference(self, requests: list, out: Path) -> dict:
        self.seen.append((self.spec, out.name, 1, len(requests)))
        steps = sum(n for _, n in self.STEPS)
        wall = self.slow(self.refs) * reference_price(COST, self.STEPS)
        self.refs += 1
        return {
            "requests": len(requests),
            "decode_steps": steps,
            "decode_span_s": wall * steps,
            "wall_per_step_s": wall,
            "step_tokens": self.STEPS,
        }


def _harness(seen: list, imports: list, policies=DEFAULT_POLICIES, slow=lambda n: 1.0,
             replicates: int = 1, tick=None, speed_batch: bool = False):  # fmt: skip
    base = FidelityConfig(num_requests=6, max_prompt_tokens=32, max_output_tokens=16,
                          policies=policies, max_concurrency=8)  # fmt: skip
    cfg = VllmFidelityConfig(base=base, warmup_requests=3, predict_seeds=2, replicates=replicates,
                             speed_batch=speed_batch)  # fmt: skip

    def imported(windows: list):
        imports.append([(Path(a).parent.name, Path(b).parent.name) for a, b in windows])
        return ParametricAcceptance({"chat": RATES}, source="unit import")

    labels = {"date": "d", "command": "c", "engine": "e"}
    return VllmFidelityHarness(cfg, COST, 4, lambda s, w: _Sim(s, w, seen, slow), imported,
                               labels, tick=tick)  # fmt: skip


def test_every_cell_is_run_live_and_predicted(tmp_path):
    seen, imports = [], []
    result = _harness(seen, imports).run(tmp_path).to_dict()
    assert [(s[1], s[2]) for s in seen[:8]] == [
        ("warmup", 8), ("speed-0", 1), ("light", 0), ("speed-1", 1), ("knee", 0), ("speed-2", 1),
        ("saturated", 0), ("speed-3", 1)]  # fmt: skip
    assert len(seen) == 16 and len(result["cells"]) == 6
    # the warm-up sizes the loads; the fixed-K session's loads, each its own window, the import
    w = [(x, x) for x in ("light", "knee", "saturated")]
    assert imports == [[("warmup", "warmup")], w]
    for c in result["cells"]:
        assert c["speed_factor"] == pytest.approx(1.0)
        if c["policy"].startswith("fixed"):
            assert all(e == pytest.approx(0.0, abs=1e-12) for e in c["rel_error"].values())
    assert "| light | fixed:k=4 |" in report_markdown(result)


def test_cells_are_priced_at_the_speed_the_references_measure(tmp_path):
    """A machine 1.3× slower than profiled (then drifting to 1.6×): every cell is priced at the
    factor its two references measured, and the fixed-K prediction equals the live run; the
    stored profile's prediction, reported beside it, is off by the drift."""
    drift = [(1.3 * 1.4) ** 0.5, (1.4 * 1.5) ** 0.5, (1.5 * 1.6) ** 0.5]
    for slow, factors in ((lambda n: 1.3, [1.3] * 3), (lambda n: 1.3 + 0.1 * n, drift)):
        result = _harness([], [], slow=slow).run(tmp_path).to_dict()
        fixed = [c for c in result["cells"] if c["policy"].startswith("fixed")]
        assert [c["speed_factor"] for c in fixed] == pytest.approx(factors)
        for c in fixed:
            assert c["rel_error"]["tpot_mean"] == pytest.approx(0.0, abs=1e-9)
            assert c["rel_error"]["throughput"] == pytest.approx(0.0, abs=1e-9)
            assert c["stored_profile"]["rel_error"]["tpot_mean"] > 0.2  # 1/1.3 − 1 = −23%
            ref = c["speed_references"][0]
            assert ref["wall_per_step_s"] / ref["profile_s"] == pytest.approx(ref["factor"])
        assert result["stored_profile_max_rel_error"] > 0.2 > result["max_rel_error"]
        md = report_markdown(result)
        assert "| speed factor | stored: throughput / TPOT err |" in md
        assert f"×{factors[0]:.3f}" in md


def test_replicates_interleave_the_loads_and_a_cell_is_the_mean_of_its_runs(tmp_path):
    """Two runs of every load per server, interleaved, each between two references; on a
    machine drifting 1.3× → 2.0× each run is priced at its own references, the cell's speed is
    the geometric mean of its runs', and every run's window of the fixed-K server is imported."""
    seen, imports = [], []
    slow = lambda n: 1.3 + 0.1 * n  # noqa: E731
    ticks = []
    harness = _harness(seen, imports, slow=slow, replicates=2, tick=lambda: ticks.append(1))
    result = harness.run(tmp_path).to_dict()
    assert len(ticks) == len(seen) == live_runs(harness.cfg) == 28  # the progress bar's total
    names = [s[1] for s in seen if s[0] == DEFAULT_POLICIES[0]]
    assert names == ["warmup", "speed-0", "light", "speed-1", "knee", "speed-2", "saturated",
                     "speed-3", "light-2", "speed-4", "knee-2", "speed-5", "saturated-2",
                     "speed-6"]  # fmt: skip
    assert imports[1] == [(x, x) for x in ("light", "light-2", "knee", "knee-2", "saturated",
                                           "saturated-2")]  # fmt: skip
    assert result["config"]["replicates"] == 2 and len(result["cells"]) == 6
    fixed = [c for c in result["cells"] if c["policy"].startswith("fixed")]
    for c, (a, b) in zip(fixed, ((0, 3), (1, 4), (2, 5)), strict=True):
        runs = [((slow(i) * slow(i + 1)) ** 0.5) for i in (a, b)]
        assert [r["speed_factor"] for r in c["runs"]] == pytest.approx(runs)
        assert c["speed_factor"] == pytest.approx((runs[0] * runs[1]) ** 0.5)
        assert len(c["speed_reference_s"]) == 3
        assert c["rel_error"]["tpot_mean"] == pytest.approx(0.0, abs=1e-9)
        # the log says the machine ran as its references did: in-load pricing agrees
        assert [r["in_load_factor"] for r in c["runs"]] == pytest.approx(runs)
        assert c["in_load_priced"]["rel_error"]["throughput"] == pytest.approx(0.0, abs=1e-9)
    md = report_markdown(result)
    assert "| in-load factor |" in md and "live throughput / TPOT over the runs |" in md
    assert result["in_load_priced_max_rel_error"] < 0.05 < result["stored_profile_max_rel_error"]


def test_a_reference_at_the_cap_follows_each_one_at_a_time_reference(tmp_path):
    """With ``speed_batch``, every reference also runs its requests twice over closed-loop at
    the cap; its logged steps' speed is the batch factor each run is priced with (a steady
    1.3× machine: both factors 1.3, the fixed-K prediction equals the live run)."""
    seen, ticks = [], []
    harness = _harness(seen, [], slow=lambda n: 1.3, speed_batch=True,
                       tick=lambda: ticks.append(1))  # fmt: skip
    result = harness.run(tmp_path).to_dict()
    fixed = [x for x in seen if x[0] == DEFAULT_POLICIES[0]]
    assert [x[1] for x in fixed[:4]] == ["warmup", "speed-0", "speed-0-batch", "light"]
    assert fixed[2][2:] == (8, 12)  # the workload's 6 requests twice over, at the cap
    assert len(ticks) == len(seen) == live_runs(harness.cfg) == 2 * (1 + 4 * 2 + 3)
    for c in result["cells"]:
        assert c["batch_speed_factor"] == pytest.approx(1.3)
        if c["policy"].startswith("fixed"):
            assert c["rel_error"]["tpot_mean"] == pytest.approx(0.0, abs=1e-9)
    assert "at the cap ×1.300" in report_markdown(result)


def test_batch_scaled_prices_a_step_between_its_two_factors():
    from runner.vllmfidelity import BatchScaled

    priced = BatchScaled(COST, 1.2, 1.6, 8)
    assert [priced.factor(r) for r in (0, 1, 8, 16)] == pytest.approx([1.2, 1.2, 1.6, 1.6])
    assert priced.factor(4) == pytest.approx(1.2 + 0.4 * 3 / 7)
    t = COST.step_time(4, 20, 0, 0, 5, 4)
    assert priced.step_time(4, 20, 0, 0, 5, 4) == pytest.approx(t * priced.factor(4))
    assert priced.step_time(0, 0, 0, 64) == pytest.approx(1.2 * COST.step_time(0, 0, 0, 64))
    assert priced.source == COST.source and priced.outside(1, 2) == COST.outside(1, 2)


def test_the_in_load_factor_is_the_log_over_the_profile_less_its_gap():
    from runner.vllmfidelity import in_load_factor

    rows = [{"gen_requests": 4, "gen_tokens": 20, "ctx_tokens": 0},
            {"gen_requests": 2, "gen_tokens": 6, "ctx_tokens": 64},
            {"gen_requests": 0, "gen_tokens": 0, "ctx_tokens": 128}]  # fmt: skip
    gap = 0.002
    for r in rows:
        k = r["gen_tokens"] // r["gen_requests"] - 1 if r["gen_requests"] else 0
        price = COST.step_time(r["gen_requests"], r["gen_tokens"], 0, r["ctx_tokens"], k + 1, k)
        r["elapsed_ms"] = 1e3 * 1.25 * (price - gap)  # the prefill-only row is not counted
    assert in_load_factor(COST, rows, gap) == pytest.approx(1.25)
    assert in_load_factor(COST, rows[2:]) is None and in_load_factor(COST, None) is None


def test_the_first_policy_must_be_a_fixed_k():
    with pytest.raises(ValueError, match="first policy must be fixed"):
        _harness([], [], policies=DEFAULT_POLICIES[::-1])


def test_policy_lists_keep_table_specs_whole():
    assert policies_of("fixed:k=4,batch_table:sizes=4;8,ks=4;2,default=2") == DEFAULT_POLICIES
    assert policies_of("fixed:k=1,dspark") == ("fixed:k=1", "dspark")


def test_without_vllm_the_command_names_the_extra(capsys):
    pytest.importorskip("torch")
    from engine import vllm

    if not vllm.missing():
        pytest.skip("vllm is installed here")
    assert main(["fidelity", "--against", "vllm", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spectune: error:") and "vllm" in err[0]


def test_the_report_json_is_plain(tmp_path):
    from runner.cli.commands.fidelity import plot

    result = _harness([], [], slow=lambda n: 1.2).run(tmp_path).to_dict()
    json.dumps(result)  # every value serialises
    plot(result, tmp_path / "fidelity.png")  # two panels: per metric, corrected vs stored
    assert (tmp_path / "fidelity.png").stat().st_size > 10_000


def test_a_prediction_averages_its_simulation_seeds():
    from runner.fidelity import workload_at

    base = FidelityConfig(num_requests=6, max_prompt_tokens=32, max_output_tokens=16)
    reqs, pol = list(workload_at(base, 5.0)), make_policy("fixed:k=4")
    acc = ParametricAcceptance({d: RATES for d in ("chat", "code", "math")}, source="unit")
    one = [predict(reqs, pol, COST, acc, ServerConfig(8, gamma=4), s) for s in (3, 4, 5)]
    avg = predict(reqs, pol, COST, acc, ServerConfig(8, gamma=4), 3, 3)
    for key in ("mean_accepted_len", "tpot_mean_s", "throughput_tok_s"):
        assert avg[key] == pytest.approx(sum(o[key] for o in one) / 3)
    assert avg["seeds"] == 3
