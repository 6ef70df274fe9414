"""Fidelity harness mechanics on a tiny random engine (the real bound is tested on the committed
models in tests/engine/test_fidelity_models.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.decode import measure_cost  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.live import LiveBackend  # noqa: E402
from profiles.acceptance import ParametricAcceptance  # noqa: E402
from runner.fidelity import FidelityConfig, max_errors, report_markdown, run_cells  # noqa: E402
from tests.engine.conftest import tiny_drafter, tiny_target  # noqa: E402

TEXT = b"for i in range(10):\n    print(i * 2)\n" * 60


def test_cells_cover_every_load_and_policy():
    target = tiny_target(vocab=256)
    engine = Engine(target, tiny_drafter(target, "dspark"), slots=4, temperature=1.0)
    cost = measure_cost(engine, requests=2, repeats=2)
    gamma = engine.gamma
    acc = ParametricAcceptance({d: (0.3,) * gamma for d in ("code", "chat", "math")},
                               source="synthetic test model")  # fmt: skip
    corpus = types.SimpleNamespace(data=np.frombuffer(TEXT, dtype=np.uint8))
    corpora = {"code": corpus, "chat": corpus, "math": corpus}
    cfg = FidelityConfig(num_requests=6, max_prompt_tokens=24, max_output_tokens=12,
                         max_concurrency=4, policies=("fixed:k=1", "fixed:k=2"))  # fmt: skip

    def factory(policy):
        return LiveBackend(engine, corpora, seed=0)

    cap, cells = run_cells(cfg, cost, acc, gamma, factory)
    assert cap > 0 and len(cells) == 6
    assert {(c["load"], c["policy"]) for c in cells} == {
        (load, p) for load, _ in cfg.loads for p in cfg.policies
    }
    for c in cells:
        assert c["live"]["throughput"] > 0 and c["profiled"]["throughput"] > 0
        assert c["rel_error"]["verify_len"] == pytest.approx(0.0)  # fixed: same ℓ both sides
    errs = max_errors(cells)
    result = {"date": "d", "command": "c", "profile": cost.source, "acceptance": acc.source,
              "engine": "tiny", "config": {"max_concurrency": 4, "num_requests": 6},
              "capacity_req_s": cap, "cells": cells, "max_rel_error_by_metric": errs,
              "max_rel_error": max(errs["throughput"], errs["tpot_mean"])}  # fmt: skip
    md = report_markdown(result)
    assert md.count("\n| ") == 1 + len(cells)  # header + one row per cell


def test_recalibrated_profile_prices_the_prediction_and_the_others_are_reported(tmp_path):
    from engine.companion import Companion

    target = tiny_target(vocab=256)
    engine = Engine(target, tiny_drafter(target, "dspark"), slots=4, temperature=1.0)
    cost = measure_cost(engine, requests=2, repeats=2)
    acc = ParametricAcceptance({d: (0.3,) * engine.gamma for d in ("code", "chat", "math")},
                               source="synthetic test model")  # fmt: skip
    corpus = types.SimpleNamespace(data=np.frombuffer(TEXT, dtype=np.uint8))
    corpora = {"code": corpus, "chat": corpus, "math": corpus}
    cfg = FidelityConfig(num_requests=4, max_prompt_tokens=24, max_output_tokens=12,
                         max_concurrency=4, policies=("fixed:k=1",),
                         loads=(("knee", 0.8),))  # fmt: skip
    made = []

    def companion():
        made.append(Companion(engine, base_context=16, max_context=36, max_prefill=96))
        return made[-1]

    _, cells = run_cells(cfg, cost, acc, engine.gamma, lambda p: LiveBackend(engine, corpora),
                         companion=companion)  # fmt: skip
    (cell,) = cells
    assert len(made) == 1 and cell["companion"]["timed_rounds"] >= 2
    assert made[0].work["prefill"][0][-1] == 96 and made[0].work["context"][0][-1][1] == 36
    # one live run, three predictions: recalibrated stored profile, stored as is, companion fit
    assert cell["stored_profile"]["live"] == cell["companion_fit"]["live"] == cell["live"]
    assert cell["profiled"]["throughput"] > 0
    fit = cell["companion"]["recalibration"]
    assert set(fit) == {"verify", "draft", "prefill"}
    assert all(f["scale"] > 0 and f["rms_rel_error"] >= 0 for f in fit.values()), fit
    result = {"date": "d", "command": "c", "profile": cost.source, "acceptance": acc.source,
              "engine": "tiny", "config": {"max_concurrency": 4, "num_requests": 4},
              "capacity_req_s": 1.0, "cells": cells, "pricing": "a companion profile",
              "max_rel_error_by_metric": max_errors(cells), "max_rel_error": 0.0}  # fmt: skip
    md = report_markdown(result)
    assert "priced by: a companion profile" in md and "stored profile as it is" in md
    assert md.count("\n| ") == 2 * (1 + len(cells))  # two tables: header + one row per cell
    from runner.cli.commands.fidelity import plot

    plot(result, tmp_path / "fidelity.png")  # two panels: per metric, TPOT per pricing
    assert (tmp_path / "fidelity.png").stat().st_size > 10_000
