"""`spectune profile` and `spectune record` end to end on tiny random checkpoints built in code:
outputs load into `spectune replay`, and every bad input exits 2 with one `spectune: error:`
line. Timings and acceptance of random models mean nothing: only structure is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine import checkpoint  # noqa: E402
from profiles.records import read_records  # noqa: E402
from runner.cli import main  # noqa: E402
from tests.engine.conftest import tiny_drafter, tiny_target  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A vocab-256 tiny target and dspark drafter (max_len 128) saved as checkpoints."""
    root = tmp_path_factory.mktemp("ckpt")
    target = tiny_target(vocab=256)
    drafter = tiny_drafter(target, "dspark")
    checkpoint.save(root / "t.safetensors", target.state_dict(), "target", target.cfg.to_dict())
    checkpoint.save(root / "d.safetensors", drafter.trainable_state(), "dspark",
                    drafter.cfg.to_dict())  # fmt: skip
    return ["--target", str(root / "t.safetensors"), "--drafter", str(root / "d.safetensors")]


def _error(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error: ") and err.count("\n") == 1, err
    return err


def test_profile_writes_a_profile_that_replay_loads(ckpt, tmp_path, capsys):
    out = tmp_path / "p.yaml"
    argv = ["profile", *ckpt, "--quick", "--slots", "2", "--repeats", "1", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["max_batch_tokens"] == 2 * 5 and s["threads"] == 1 and s["device"] == "cpu"
    assert s["source"].startswith("measured: engine builtin:tiny")
    for spec in (str(out), f"{out}?form=additive"):
        assert main(["replay", "--profile", spec, "--limit", "20", "--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["requests_completed"] == 20 and r["profile"].startswith("measured: ")
    _error(capsys, ["replay", "--profile", f"{out}?form=cubic", "--limit", "5"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--engine", "builtin:huge"], "unknown engine"),
        (["--device", "tpu"], "--device"),
        (["--device", "cuda:0"], "CUDA is not available"),
        (["--out", "/no/such/dir/p.yaml"], "does not exist"),
        (["--slots", "1"], "--slots"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_profile_bad_input(ckpt, tmp_path, capsys, args, needle):
    if "cuda" in " ".join(args) and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    argv = ["profile", *ckpt, "--quick", "--out", str(tmp_path / "p.yaml"), *args]
    assert needle in _error(capsys, argv)


def test_profile_missing_checkpoint_and_out_is_a_directory(tmp_path, capsys):
    err = _error(capsys, ["profile", "--target", str(tmp_path / "none.safetensors"),
                          "--out", str(tmp_path / "p.yaml")])  # fmt: skip
    assert "no such target checkpoint" in err
    assert "is a directory" in _error(capsys, ["profile", "--out", str(tmp_path)])


def test_record_writes_records_that_replay_loads(ckpt, tmp_path, capsys):
    out = tmp_path / "r.npz"
    argv = ["record", *ckpt, "--domains", "math,chat", "--requests", "3", "--prompt-len", "16",
            "--max-new-tokens", "12", "--slots", "2", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    s = json.loads(capsys.readouterr().out)
    rec = read_records(out)
    assert rec.rounds == s["rounds"] and rec.requests == 6 and rec.gamma == 4
    assert set(rec.domains) == {"math", "chat"}
    runs = rec.meta["engine_runs"]["uniform"]  # default: uniform random verify lengths
    for d in ("math", "chat"):  # the engine's means are the records' rounds
        m = rec.domain == d
        acc, ell = rec.accepted[m], rec.verified[m]
        assert runs[d]["mean_accepted_len"] == pytest.approx(1 + np.minimum(acc, ell).mean())
        assert runs[d]["mean_verify_len"] == pytest.approx(ell.mean())
    assert rec.verified.min() >= 0 and rec.verified.max() <= 4 and np.unique(rec.verified).size > 1
    assert np.isfinite(rec.logits).all()
    assert main(["replay", "--acceptance", f"records:{out}", "--domain-mix", "math=1",
                 "--limit", "10", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["requests_completed"] == 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--domains", "poetry"], "unknown domain"),
        (["--max-new-tokens", "200"], "exceeds the context"),
        (["--check", "dspark", "--cost", "/no/such.yaml"], "no such file"),
        (["--policy", "clairvoyant"], "realized"),
        (["--drafter", "none"], "need a drafter"),
    ],
)
def test_record_bad_input(ckpt, tmp_path, capsys, args, needle):
    argv = ["record", *ckpt, "--out", str(tmp_path / "r.npz"), "--requests", "1",
            "--prompt-len", "16", "--max-new-tokens", "8", *args]  # fmt: skip
    assert needle in _error(capsys, argv)
