"""Training runs end to end on tiny models: target, resume, and all four drafters together."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from engine import checkpoint  # noqa: E402
from engine.distill import DistillConfig, train_drafter  # noqa: E402
from engine.model import TargetConfig  # noqa: E402
from engine.train import TrainConfig, train_target  # noqa: E402

TINY = TargetConfig(dim=32, layers=3, heads=2, hidden=64, max_len=128)


def test_target_trains_resumes_and_drafters_train(tmp_path):
    cfg = TrainConfig(steps=2, batch=2, seq_len=32, eval_batches=1, save_every=1)
    out = tmp_path / "target.safetensors"
    info = train_target(TINY, cfg, tmp_path / "run", out, "test")
    assert info["steps_done"] == 2 and set(info["heldout_bits_per_byte"]) == {
        "code",
        "chat",
        "math",
    }
    info = train_target(TINY, dataclasses.replace(cfg, steps=3), tmp_path / "run", out, "test")
    assert len(info["loss_curve"]) == 1 and len(info["sessions"]) == 2
    model = checkpoint.load_target(str(out))
    assert model.cfg == TINY and out.with_suffix(".md").exists()

    dcfg = DistillConfig(steps=2, batch=2, seq_len=32, anchors=3, eval_batches=1)
    kinds = ["dspark", "dflash", "ar", "mtp1"]
    outs = {k: tmp_path / f"{k}.safetensors" for k in kinds}
    infos = train_drafter(kinds, out, dcfg, tmp_path / "drun", outs, "test")
    for k in kinds:
        d = checkpoint.load_drafter(str(outs[k]), model)
        assert (
            d.cfg.kind == k and len(infos[k]["heldout"]["code"]["accept_1_minus_tv"]) == d.cfg.gamma
        )
    assert checkpoint.read_meta(outs["dspark"])["config"]["markov_rank"] > 0
