"""The vLLM cost profile's document (engine/vllmcost.py) from synthetic samples (no vLLM needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from engine import vllmcost  # noqa: E402
from profiles.store import read_cost, write_yaml  # noqa: E402


def _samples() -> dict:
    """Synthetic step times (labelled so): 2 ms + 0.3 ms per request + 0.1 ms per verify token."""
    dec = [{"k": k, "requests": r, "round": 0, "seconds": 2e-3 + 3e-4 * r + 1e-4 * r * (1 + k)}
           for k in (0, 2) for r in (1, 4, 8)]  # fmt: skip
    pre = [{"k": k, "tokens": c, "round": 0, "seconds": 2.4e-3 + 1e-5 * c}
           for k in (0, 2) for c in (16, 128)]  # fmt: skip
    return {"decode": dec, "prefill": pre, "reference": [], "wall_s": 1.0}


def test_profile_document_loads_in_both_forms(tmp_path):
    cfg = vllmcost.VllmProfileConfig(requests=(1, 4, 8), ks=(0, 2), chunks=(16, 128))
    add, sps, err = vllmcost.cost_models(_samples(), "synthetic: test")
    assert err["rms_rel_error"] < 0.02  # the additive form holds these samples exactly
    assert add.step_time(4, 12, 0, 0) == pytest.approx(2e-3 + 3e-4 * 4 + 1e-4 * 12, rel=0.02)
    doc = vllmcost.document(_samples(), add, sps, err, {"engine": "vllm:x"}, cfg, 1024)
    assert doc["form"] == "additive" and doc["metadata"]["envelope"]["requests"] == [1, 8]
    assert doc["metadata"]["envelope"]["batch_tokens"] == [1, 24]
    write_yaml(tmp_path / "p.yaml", doc)
    cost = read_cost(tmp_path / "p.yaml")
    assert cost.kind == "additive" and cost.max_batch_tokens == 24
    assert read_cost(tmp_path / "p.yaml", form="sps").kind == "sps"
    # the prefill step minus the same instance's R = 1 decode step (2.4 ms at K = 0, 2.6 at K = 2)
    assert cost.prefill_time(128) == pytest.approx(1.28e-3 - 1e-4, rel=0.01)


@pytest.mark.parametrize("spec", ["vllm:", "vllm:draft=x", "vllm:t,foo=1", "vllm:t,draft="])
def test_bad_engine_specs_are_refused(spec):
    with pytest.raises(ValueError, match="--engine"):
        vllmcost.parse_engine(spec)


def test_engine_spec_parses():
    assert vllmcost.parse_engine("vllm:/m/t,draft=/m/d") == ("/m/t", "/m/d")
    assert vllmcost.parse_engine("vllm:target") == ("target", "")
