"""SGLang STS files on any acceptance model (``?temps=``), and γ mismatches refused.

The STS fixture ``data/sglang_sts.json`` is hand-made in SGLang's ``DSparkStsCalibration`` format
(numbers invented); SGLang's own loader judges the reader in ``tests/engines/test_sglang.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit

from profiles import InputError
from profiles.builtin import load_acceptance
from profiles.calibration import StsCalibration
from profiles.sts import Tempered, read_sglang_sts

DATA = Path(__file__).parent / "data"
STS3 = DATA / "sglang_sts.json"  # 3 temperatures


def _sts(tmp_path, temps, name="sts.json", **extra) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"temperatures": list(temps), **extra}))
    return path


def test_reads_sglangs_fields_and_writes_them_back():
    sts = read_sglang_sts(STS3)
    assert sts == StsCalibration("cumulative", (1.42, 1.31, 1.18), "/data/sts/shard.*.pt", 48213,
                                 (0.057, 0.082, 0.058), (0.02, 0.017, 0.008))  # fmt: skip
    assert sts.to_sglang() == json.loads(STS3.read_text())
    assert StsCalibration(temperatures=(2.0,)).to_sglang() == {"temperatures": [2.0]}  # defaults


def test_tempered_confidences_are_the_heads_logits_over_t(tmp_path):
    base = load_acceptance("paper:qwen3-8b-dspark")
    temps = (0.5, 1.0, 2.0, 3.0, 1.5, 0.8, 4.0)
    model = Tempered(base, temps, "x.json")
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    conf0, acc0 = base.draw(base.start("chat", a), 50, a)
    conf1, acc1 = model.draw(model.start("chat", b), 50, b)
    assert np.array_equal(acc0, acc1)  # calibration moves confidences, not acceptance
    assert conf1 == pytest.approx(expit(logit(conf0) / np.asarray(temps)), rel=1e-9)
    assert model.gamma == 7 and model.source.endswith("+ STS temperatures from x.json")


@pytest.mark.parametrize("form", ["paper", "yaml"])
def test_temps_attach_to_parametric_and_imported_models(tmp_path, form):
    from profiles.store import acceptance_to_dict, write_yaml

    temps = (1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7)
    sts = _sts(tmp_path, temps, dataset="prod", num_samples=9)
    spec = "paper:qwen3-8b-dspark"
    if form == "yaml":  # e.g. what `spectune import vllm-metrics` writes
        write_yaml(tmp_path / "acc.yaml", acceptance_to_dict(load_acceptance(spec)))
        spec = str(tmp_path / "acc.yaml")
    model = load_acceptance(f"{spec}?temps={sts}")
    assert isinstance(model, Tempered) and model.temperatures == temps
    from runner.scheduler import sts_of  # what tune puts in the scheduler, and export writes

    cfg = sts_of(model, 7)
    assert cfg.temperatures == temps and cfg.dataset == "prod" and cfg.num_samples == 9


def test_the_tuned_sts_exports_in_sglangs_keys(tmp_path):
    from runner.export import write_export
    from runner.scheduler import sts_of
    from tests.engines.conftest import scheduler

    temps = (1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7)
    sts = _sts(tmp_path, temps, dataset="prod", num_samples=9, ece_before=[0.1] * 7,
               ece_after=[0.01] * 7)  # fmt: skip
    spec = f"paper:qwen3-8b-dspark?temps={sts}"
    cfg = scheduler("dspark_lagged", "builtin:h100-8b", sts=sts_of(load_acceptance(spec), 7))
    write_export(cfg, "sglang", tmp_path / "out", simulate=False)
    assert read_sglang_sts(tmp_path / "out" / "sts.json") == read_sglang_sts(sts)


def test_gamma_mismatch_is_an_error_on_every_form(tmp_path):
    from profiles.records import synthesize, write_records

    for spec in ("paper:qwen3-8b-dspark", "builtin:cpu-tiny-dspark"):
        with pytest.raises(InputError, match="3 temperatures but"):
            load_acceptance(f"{spec}?temps={STS3}")
    write_records(tmp_path / "r.npz", synthesize(load_acceptance("paper:qwen3-8b-dspark"), 2, 4, 0))
    with pytest.raises(InputError, match="3 temperatures but the records have gamma 7"):
        load_acceptance(f"records:{tmp_path / 'r.npz'}?temps={STS3}")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1.0]", "expected a JSON object"),
        ("{}", "missing field 'temperatures'"),
        ('{"temperatures": []}', "is empty"),
        ('{"temperatures": [1, 0]}', "must all be positive"),
        ('{"temperatures": [1, NaN]}', "NaN"),
        ('{"temperatures": [1, "hot"]}', "list of numbers"),
        ('{"temperatures": [1, true]}', "list of numbers"),
        ('{"temperatures": [1], "num_samples": 2.5}', "'num_samples' must be an integer"),
        ('{"temperatures": [1], "dataset": 3}', "'dataset' must be a string"),
        ('{"temperatures": [1], "ece_after": [null]}', "'ece_after' must be a list of numbers"),
    ],
)
def test_bad_sts_files_are_one_input_error_naming_the_file(tmp_path, text, message):
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_sglang_sts(tmp_path / "s.json")
    assert str(err.value).startswith(str(tmp_path / "s.json"))


def test_bad_temps_options_are_refused():
    with pytest.raises(InputError, match="the only option is"):
        load_acceptance("paper:qwen3-8b-dspark?temp=x.json")
    with pytest.raises(InputError, match="the only option is"):
        load_acceptance("paper:qwen3-8b-dspark?temps=")
    with pytest.raises(InputError, match="no such file"):
        load_acceptance("paper:qwen3-8b-dspark?temps=/nonexistent/sts.json")


def test_import_sglang_sts_writes_a_calibration_any_model_takes(tmp_path, capsys):
    from runner.cli import main
    from runner.scheduler import sts_of

    temps = (1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7)
    src = _sts(tmp_path, temps, dataset="prod/*.pt", num_samples=77)
    out = tmp_path / "c.yaml"
    assert main(["import", "sglang-sts", str(src), "--out", str(out)]) == 0
    assert "temperatures 1.300 1.200" in capsys.readouterr().out
    spec = f"paper:qwen3-8b-dspark?temps={out}"
    model = load_acceptance(spec)
    assert model.temperatures == temps
    cfg = sts_of(model, 7)
    assert (cfg.dataset, cfg.num_samples, cfg.variant) == ("prod/*.pt", 77, "cumulative")
