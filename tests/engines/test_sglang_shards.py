"""SGLang's STS confidence shards import as spectune records (``engine/shards.py``).

The shards are written by SGLang 0.5.23's own ``StsDataRecorder`` (``dspark_sts.py``) when it is
installed, else in exactly its format (``torch.save({"logits": float32 [n, γ], "prefix_mask":
float32 [n, γ]}, f"{stem}.{k}.pt")``, ``prefix_mask = 1[j < num_correct_drafts]``, read from
``srt/speculative/dspark_components/dspark_sts.py``). SGLang's own STS fitter
(``benchmark/dspark_sts_fit.py``) then judges the import: its ECE before calibration on the
shards equals spectune's cumulative ECE at T = 1 on the imported records.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.engines import sglang_code

torch = pytest.importorskip("torch")

GAMMA = 5


def _rounds(seed: int, n: int):
    """Raw logits [n, γ] and accepted counts [n] of synthetic rounds (a fixture, not a model)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.5, 1.5, size=(n, GAMMA)).astype(np.float32)  # [n, γ]
    accepted = rng.integers(0, GAMMA + 1, size=n)  # [n]
    return logits, accepted


def _write_like_sglang(stem, batches, flush_every: int) -> None:
    """StsDataRecorder.record/flush, transcribed (see the module docstring)."""
    buf_l, buf_m, k = [], [], 0
    for logits, accepted in batches:
        buf_l.append(torch.tensor(logits, dtype=torch.float32))
        pos = torch.arange(GAMMA).view(1, -1)
        buf_m.append((pos < torch.tensor(accepted).view(-1, 1)).to(torch.float32))
        if len(buf_l) >= flush_every:
            torch.save({"logits": torch.cat(buf_l), "prefix_mask": torch.cat(buf_m)},
                       f"{stem}.{k}.pt")  # fmt: skip
            buf_l, buf_m, k = [], [], k + 1
    if buf_l:
        torch.save({"logits": torch.cat(buf_l), "prefix_mask": torch.cat(buf_m)}, f"{stem}.{k}.pt")


def _write_with_sglang(stem, batches, flush_every: int) -> None:
    """SGLang's own recorder writes the shards."""
    sts = sglang_code.module("sglang.srt.speculative.dspark_components.dspark_sts")
    rec = sts.StsDataRecorder(path_stem=str(stem), gamma=GAMMA, flush_every=flush_every)
    for logits, accepted in batches:
        rec.record(confidence_raw=torch.tensor(logits), num_correct_drafts=torch.tensor(accepted))
    rec.flush()


WRITERS = {"format": _write_like_sglang}
if sglang_code.root() is not None:
    WRITERS["sglang"] = _write_with_sglang


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_shards_import_as_records_round_for_round(tmp_path, capsys, writer):
    from profiles.builtin import load_acceptance
    from profiles.records import read_records
    from runner.cli import main

    batches = [_rounds(s, 3 + s % 4) for s in range(10)]  # 10 verify steps of 3..6 requests
    WRITERS[writer](tmp_path / "sts", batches, flush_every=4)
    assert sorted(p.name for p in tmp_path.glob("sts.*.pt")) == ["sts.0.pt", "sts.1.pt",
                                                                 "sts.2.pt"]  # fmt: skip
    out = tmp_path / "r.npz"
    assert main(["import", "sglang-shards", str(tmp_path / "sts"), "--out", str(out),
                 "--domain", "code", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    r = read_records(out)
    logits = np.concatenate([b[0] for b in batches])
    accepted = np.concatenate([b[1] for b in batches])
    assert np.array_equal(r.logits, logits) and np.array_equal(r.accepted, accepted)
    assert r.gamma == GAMMA and set(r.domain) == {"code"} and r.requests == len(accepted)
    assert summary["rounds"] == len(accepted) and summary["shards"] == 3
    assert "no request ids" in r.meta["source"] and len(r.meta["shards"]) == 3
    model = load_acceptance(f"records:{out}")
    assert model.expected_accepted_len("code") == pytest.approx(1 + accepted.mean())


@pytest.mark.skipif(sglang_code.root() is None, reason="sglang is not installed")
def test_sglangs_fitter_and_spectunes_calibration_read_the_same_targets(tmp_path):
    from engine.shards import read_shards
    from profiles.calibration import metrics

    batches = [_rounds(s, 40) for s in range(6)]
    _write_with_sglang(tmp_path / "sts", batches, flush_every=2)
    fit = sglang_code.module("sglang.benchmark.dspark_sts_fit")
    logits, mask = fit.load_collected_shards(data_glob=str(tmp_path / "sts.*.pt"))
    theirs = fit.fit_sts_temperatures(logits=logits, prefix_mask=mask,
                                      grid=fit.default_temperature_grid())  # fmt: skip
    r = read_shards(tmp_path / "sts")
    ours = metrics(r.logits, r.accepted, None)["cumulative"]["ece"]
    assert np.allclose(ours, theirs["ece_before"], atol=1e-6)  # same survival, same targets
    assert not any(math.isnan(x) for x in ours)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a torch file"), "not a torch shard"),
        (lambda p: torch.save({"logits": torch.zeros(2, 3)}, p), "expected a dict with"),
        (lambda p: torch.save({"logits": torch.zeros(2, 3), "prefix_mask": torch.zeros(2, 4)}, p),
         "must have the same shape"),
        (lambda p: torch.save({"logits": torch.full((1, 2), float("nan")),
                               "prefix_mask": torch.zeros(1, 2)}, p), "NaN"),
        (lambda p: torch.save({"logits": torch.zeros(1, 3),
                               "prefix_mask": torch.tensor([[0.0, 1.0, 0.0]])}, p), "1s then 0s"),
        (lambda p: torch.save({"logits": torch.zeros(1, 2, dtype=torch.int64),
                               "prefix_mask": torch.zeros(1, 2)}, p), "must be floats"),
        (lambda p: torch.save([1, 2], p), "expected a dict with"),
    ],
)  # fmt: skip
def test_bad_shards_are_one_input_error_naming_the_shard(tmp_path, make, message):
    from engine.shards import read_shards
    from profiles import InputError

    make(tmp_path / "s.0.pt")
    with pytest.raises(InputError, match=message) as err:
        read_shards(tmp_path / "s")
    assert str(err.value).startswith(str(tmp_path / "s.0.pt"))


def test_missing_or_mixed_shards_are_refused(tmp_path):
    from engine.shards import read_shards
    from profiles import InputError

    with pytest.raises(InputError, match="no SGLang STS shards"):
        read_shards(tmp_path / "s")
    _write_like_sglang(tmp_path / "s", [_rounds(0, 2)] * 3, flush_every=1)
    (tmp_path / "s.1.pt").unlink()
    with pytest.raises(InputError, match=r"shard s.1.pt is missing \(shards run 0..2\)"):
        read_shards(tmp_path / "s")
    torch.save({"logits": torch.zeros(1, 2), "prefix_mask": torch.zeros(1, 2)}, tmp_path / "s.1.pt")
    with pytest.raises(InputError, match="gamma 2 disagrees with earlier shards' gamma 5"):
        read_shards(tmp_path / "s")
