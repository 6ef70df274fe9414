"""SGLang (0.5.23) judges the SGLang exports: its own loaders, argument parser and planner.

1. Every SGLang export loads through SGLang's ``load_sps_table_from_path`` and
   ``load_sts_calibration_from_path``; the STS length is the launch recipe's block size (the
   planner refuses any other); the launch argv parses with SGLang's own ``Spec`` argument
   fields; the recipe turns the scheduler on (``SGLANG_RAGGED_VERIFY_MODE=compact``) exactly
   when there is a table to schedule with.
2. Decisions: on random batches (R = 1 to twice the tuned cap) SGLang's
   ``compute_verify_token_budget`` on the exported table and stale survival, then its torch
   allocator ``schedule_verify_lens_topk`` on the current confidences, pick the same budget and
   the same per-request lengths as spectune's simulation of that export (``dspark_lagged`` with
   the exported policy's parameters, planning through ``profiles.sglang.PlannedCost``) in every
   batch. Confidences are multiples of 1/8 so float32 (SGLang) and float64 (spectune) survival
   products are exact and equal, and ties — broken by position then request in both — occur.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Union

import numpy as np
import pytest

from policies import make_policy
from policies.base import StepContext
from profiles.sglang import PlannedCost, Table
from tests.engines import sglang_code
from tests.engines.conftest import POLICIES, PROFILES, scheduler

torch = pytest.importorskip("torch")
pytest.importorskip("msgspec")
if sglang_code.root() is None:
    pytest.skip("sglang is not installed (pip install --no-deps sglang==0.5.23 msgspec)",
                allow_module_level=True)  # fmt: skip

DS = "sglang.srt.speculative.dspark_components"


@pytest.fixture(scope="module")
def sg():
    """SGLang's DSpark code: table/STS modules, planner and allocator definitions."""
    import msgspec

    sps = sglang_code.module(f"{DS}.dspark_sps")
    sts = sglang_code.module(f"{DS}.dspark_sts")
    ns = {"torch": torch, "msgspec": msgspec, "Optional": Optional, "Union": Union,
          "SpsCostTable": sps.SpsCostTable, "SpsAdditiveCostTable": sps.SpsAdditiveCostTable,
          "_interp_clamped": sps._interp_clamped, "envs": None}  # fmt: skip
    sglang_code.functions(f"{DS}.dspark_planner", ("DSparkScheduleConfig", "VerifyBudgetDecision",
                          "compute_verify_token_budget", "_lookup_sps_tensor",
                          "_additive_step_time_tensor",
                          "HostConfidenceBudgetPlanner"), ns)  # fmt: skip
    sglang_code.functions(
        "sglang.kernels.ops.speculative.dspark.dspark_schedule",
        (
            "compute_sort_survival",
            "schedule_verify_lens_topk",
            "schedule_verify_lens_topk_from_survival",
            "_value_independent_descending_order",
        ),
        ns,
    )
    return argparse.Namespace(sps=sps, sts=sts, **{k: v for k, v in ns.items() if k[0] != "_"
                                                   or k == "_interp_clamped"})  # fmt: skip


def test_installed_version_is_the_pinned_one():
    assert sglang_code.version() == sglang_code.VERSION


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("spec", POLICIES)
def test_sglang_loads_every_export(exports, sg, profile, spec):
    d, m, cfg = exports[profile, spec, "sglang"]
    launch = m["launch"]
    argv, env = launch["argv"], launch["env"]
    assert argv[:3] == ["python", "-m", "sglang.launch_server"]
    assert "--max-running-requests" in argv and argv[argv.index("--max-running-requests") + 1] \
        == str(cfg.max_concurrency)  # fmt: skip
    ns = _parse_spec_args(sg, argv)
    if "sps_table.json" in m["files"]:
        table = sg.sps.load_sps_table_from_path(str(d / "sps_table.json"))
        assert not sg.sps.is_uninitialized_sps_table(table)
        cal = sg.sts.load_sts_calibration_from_path(str(d / "sts.json"))
        assert len(cal.temperatures) == ns.speculative_dspark_block_size == cfg.gamma
        assert env["SGLANG_RAGGED_VERIFY_MODE"] == "compact"
        lag = make_policy(m["exported_policy"]).lag
        assert env["SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS"] == str(lag)
        assert ("--disable-overlap-schedule" in argv) == (lag == 1)  # overlap: lag >= ring's 2
        assert ns.speculative_dspark_sps_table_path.endswith("sps_table.json")
        assert ns.speculative_dspark_confidence_sts_path.endswith("sts.json")
        sg.DSparkScheduleConfig(gamma=ns.speculative_dspark_block_size).validate()
    elif ns.speculative_algorithm == "DSPARK":  # static: every draft of a k-token block
        assert env == {"SGLANG_RAGGED_VERIFY_MODE": "static"}
        assert ns.speculative_dspark_block_size == make_policy(m["exported_policy"]).k
    else:
        assert ns.speculative_algorithm is None and m["exported_policy"] == "none"
    assert "schedule.json" not in m["files"]  # read by no SGLang code
    assert (d / "launch.sh").read_text().count("exec python -m sglang.launch_server") == 1


def _parse_spec_args(sg, argv):
    """Parse the recipe's speculative flags with SGLang's own ``Spec`` field declarations."""
    fields = sglang_code.module("sglang.srt.arg_groups.fields.spec")
    utils = sglang_code.module("sglang.srt.arg_groups.arg_utils")
    p = argparse.ArgumentParser(allow_abbrev=False)
    utils.add_cli_args_from_dataclass(p, fields.Spec)
    spec_args, i = [], 3
    while i < len(argv):
        if argv[i].startswith("--speculative"):
            spec_args.append(argv[i])
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                spec_args.append(argv[i + 1])
                i += 1
        i += 1
    return p.parse_args(spec_args)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("spec", ["dspark_lagged:lag=1", "dspark_lagged:lag=2", "dspark"])
def test_sglang_planner_matches_spectunes_simulation_of_the_export(tmp_path, sg, profile, spec):
    from runner.export import write_export

    cfg = scheduler(spec, profile)
    m = write_export(cfg, "sglang", tmp_path, simulate=False)
    assert not m["exact"] and m["notes"][0].startswith("not exact: ")  # context, eps, lag
    cost = PlannedCost(cfg.cost_model(), Table(json.loads((tmp_path / "sps_table.json")
                                                          .read_text())))  # fmt: skip
    assert _agreement(sg, tmp_path, cfg, make_policy(m["exported_policy"]), cost) == 1000


IMPORTED = ("sglang_sps.json", "sglang_sps_additive.json")


@pytest.mark.parametrize("name", IMPORTED)
@pytest.mark.parametrize("lag", [1, 2])
def test_exact_is_claimed_where_sglangs_planner_makes_the_tuned_decisions(tmp_path, sg, name,
                                                                          lag):  # fmt: skip
    """Tuned on an imported SGLang table with SGLang's default parameters: "exact", and SGLang's
    planner on the export makes the *tuned* policy's decisions on the *tuned* cost model."""
    from profiles.importers import sglang_cost
    from runner.export import write_export
    from tests.profiles.test_importers import DATA

    spec = f"dspark_lagged:lag={lag},survival_eps=1e-06"
    cfg = scheduler(spec, "builtin:h100-8b", cost=sglang_cost(DATA / name))
    m = write_export(cfg, "sglang", tmp_path, simulate=False)
    assert m["exact"] and m["exported_policy"] == cfg.policy().spec, m["notes"]
    # R = 1..cap: SGLang runs at most --max-running-requests = cap requests
    assert _agreement(sg, tmp_path, cfg, cfg.policy(), cfg.cost_model(), top=1) == 1000
    other = scheduler(f"dspark_lagged:lag={lag}", "builtin:h100-8b", cost=sglang_cost(DATA / name))
    assert not write_export(other, "sglang", tmp_path / "eps0", simulate=False)["exact"]


def _agreement(sg, d, cfg, ours, cost, n: int = 1000, top: int = 2) -> int:
    """Random batches (R = 1 to ``top`` times the cap) on which SGLang's planner and allocator,
    fed the export in ``d``, pick the budget and per-request lengths ``ours`` picks on ``cost``."""
    table = sg.sps.load_sps_table_from_path(str(d / "sps_table.json"))
    sched = sg.DSparkScheduleConfig(gamma=cfg.gamma)
    sched.validate()
    lag = ours.lag
    rng = np.random.default_rng(14 + lag)
    gamma, agree = cfg.gamma, 0
    for _ in range(n):
        r = int(rng.integers(1, top * cfg.max_concurrency + 1))
        now = rng.integers(0, 9, size=(r, gamma)) / 8.0  # [R, γ] multiples of 1/8
        old = rng.integers(0, 9, size=(r, gamma)) / 8.0
        fresh = rng.random(r) < 0.8  # the rest joined within the lag: survival 1
        hist = sg.HostConfidenceBudgetPlanner._two_steps_prior_survival(
            None, lagged_confidence=torch.tensor(old, dtype=torch.float32),
            lagged_generation=torch.where(torch.tensor(fresh), 1, 0),
            current_generation=torch.ones(r, dtype=torch.int64))  # fmt: skip
        budget = sg.compute_verify_token_budget(history_survival_probs=hist, sps_table=table,
                                                cfg=sched).budget  # fmt: skip
        lens = sg.schedule_verify_lens_topk(confidence=torch.tensor(now, dtype=torch.float32),
                                            budget=budget, cfg=sched).numpy()  # fmt: skip
        lagged = np.zeros((lag, r, gamma))
        lagged[-lag] = old
        known = np.ones((lag, r), dtype=bool)
        known[-lag] = fresh
        ctx = StepContext(cost=cost, lagged=lagged, lagged_known=known)
        k = ours.capacity(now, None, ctx)
        drafts = ours.decide(now, None, ctx)
        assert k == budget, (r, k, budget)
        assert np.array_equal(drafts + 1, lens), (r, drafts, lens)  # SGLang counts the anchor
        agree += 1
    return agree


@pytest.mark.parametrize("profile", PROFILES)
def test_exported_table_is_a_whole_decode_step_over_the_tuned_range(sg, tmp_path, profile):
    from runner.export import write_export

    cfg = scheduler("dspark_lagged", profile)
    write_export(cfg, "sglang", tmp_path, simulate=False)
    table = sg.sps.load_sps_table_from_path(str(tmp_path / "sps_table.json"))
    c, width = cfg.cost_model(), cfg.gamma + 1
    for r in (1, cfg.max_concurrency // 2, cfg.max_concurrency):
        for b in (r, r * width // 2, r * width):
            want = c.verify_time(r, b) + c.draft_time(r)  # drafter included
            if isinstance(table, sg.SpsAdditiveCostTable):
                got = table.step_time(num_reqs=r, budget=b - r)
            else:  # 1D: measured at full verify, B = R·(γ+1), so R is B's full-verify batch
                rr = -(-b // width)
                want = c.verify_time(rr, b) + c.draft_time(rr)
                got = 1.0 / table.lookup(b)
            assert got == pytest.approx(want, rel=1e-9), (r, b)
    top = cfg.max_concurrency * width
    probes = table.m_probes if isinstance(table, sg.SpsAdditiveCostTable) \
        else table.sample_batch_tokens  # fmt: skip
    assert probes[-1] >= top  # no clamping inside the range the server reaches


STS_DOCS = [  # (JSON text, SGLang accepts): spectune's reader must agree on every one
    (
        '{"temperatures": [1.42, 1.31, 1.18], "dataset": "d", "num_samples": 4, '
        '"ece_before": [0.1, 0.2, 0.3], "ece_after": [0.01, 0.02, 0.03]}',
        True,
    ),
    ('{"temperatures": [2, 1]}', True),  # integers are numbers
    ('{"temperatures": [1.0], "fitted_by": "someone"}', True),  # unknown keys ignored
    ('{"temperatures": [1.0], "ece_before": []}', True),
    ("[1.0]", False),
    ("{}", False),
    ('{"temperatures": []}', False),
    ('{"temperatures": [1.0, 0.0]}', False),
    ('{"temperatures": [1.0, -2.0]}', False),
    ('{"temperatures": [1.0, "hot"]}', False),
    ('{"temperatures": "hot"}', False),
    ('{"temperatures": [1.0], "num_samples": 2.5}', False),
    ('{"temperatures": [1.0], "num_samples": "many"}', False),
    ('{"temperatures": [1.0], "dataset": 3}', False),
    ('{"temperatures": [1.0], "ece_after": [null]}', False),
    ('{"temperatures": [1.0, NaN]}', False),
    ("{not json", False),
]


@pytest.mark.parametrize("text, accepts", STS_DOCS)
def test_spectunes_sts_reader_accepts_what_sglangs_loader_accepts(sg, tmp_path, text, accepts):
    from profiles import InputError
    from profiles.sts import read_sglang_sts

    path = tmp_path / "sts.json"
    path.write_text(text)
    try:
        theirs = sg.sts.load_sts_calibration_from_path(str(path))
    except Exception:  # noqa: BLE001  (msgspec.ValidationError, DecodeError, ValueError)
        theirs = None
    assert (theirs is not None) == accepts
    try:
        ours = read_sglang_sts(path)
    except InputError:
        ours = None
    assert (ours is not None) == accepts
    if accepts:
        assert list(ours.temperatures) == list(theirs.temperatures)
        assert (ours.dataset, ours.num_samples) == (theirs.dataset, theirs.num_samples)
        assert list(ours.ece_before) == list(theirs.ece_before)
        assert json.loads(theirs.to_json()) == ours.to_sglang()  # the same keys written back


def test_calibrate_writes_an_sts_file_sglang_loads(sg, tmp_path):
    from profiles.builtin import load_acceptance
    from profiles.records import synthesize, write_records
    from runner.cli import main

    write_records(tmp_path / "r.npz", synthesize(load_acceptance("paper:qwen3-8b-dspark"), 8, 12,
                                                 0, logit_scale=2.0))  # fmt: skip
    assert main(["calibrate", "--records", str(tmp_path / "r.npz"), "--out",
                 str(tmp_path / "c.yaml"), "--sglang-out", str(tmp_path / "sts.json"),
                 "--no-plot"]) == 0  # fmt: skip
    cal = sg.sts.load_sts_calibration_from_path(str(tmp_path / "sts.json"))
    assert len(cal.temperatures) == 7 and cal.num_samples > 0 and len(cal.ece_after) == 7
    sg.DSparkScheduleConfig(gamma=7).validate()
