"""The Hugging Face Llama export (engine/hf.py): same logits as our engine through transformers."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from engine import checkpoint, hf  # noqa: E402
from engine.draftlm import init_from  # noqa: E402
from tests.engine.conftest import tiny_target  # noqa: E402


def _tokens(vocab: int, b: int = 2, s: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, vocab, (b, s), generator=g)  # [B, S]


def test_state_names_and_shapes_cover_every_weight():
    model = tiny_target()
    state = hf.llama_state(model)
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.parameters())
    c = model.cfg
    assert state["model.layers.0.self_attn.q_proj.weight"].shape == (c.dim, c.dim)
    assert state["model.layers.1.mlp.gate_proj.weight"].shape == (c.hidden, c.dim)
    # the fused projections split in order: q, k, v and gate, value
    qkv = model.blocks[0].attn.qkv.weight
    assert torch.equal(state["model.layers.0.self_attn.k_proj.weight"], qkv[c.dim : 2 * c.dim])
    up = model.blocks[1].mlp.up.weight
    assert torch.equal(state["model.layers.1.mlp.up_proj.weight"], up[c.hidden :])


def test_export_writes_config_and_weights(tmp_path):
    out = hf.export(tiny_target(), tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["vocab_size"] == 8
    assert (
        cfg["tie_word_embeddings"] is False
        and cfg["num_key_value_heads"] == cfg["num_attention_heads"]
    )
    assert (out / "model.safetensors").stat().st_size > 0
    with pytest.raises(ValueError, match="dtype"):
        hf.export(tiny_target(), tmp_path / "x", dtype="int8")


def _hf_logits(path, tokens):
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed (extra: vllm)"
    )
    model = transformers.LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(tokens).logits  # [B, S, V]


@pytest.mark.parametrize("which", ["tiny", "committed", "draft"])
def test_transformers_llama_logits_equal_ours(tmp_path, which):
    if which == "tiny":
        model = tiny_target()
    else:
        name = "target" if which == "committed" else "draft"
        if not checkpoint.path_of(name).exists():
            pytest.skip(f"no {name} checkpoint")
        model = checkpoint.load_target(name)
    tokens = _tokens(model.cfg.vocab)
    out = hf.export(model, tmp_path / which)
    theirs = _hf_logits(out, tokens)
    with torch.no_grad():
        ours, _ = model.forward_seq(tokens)
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def test_a_different_model_does_not_match(tmp_path):
    """The equality test can fail: the export of a draft built from other blocks differs."""
    model = tiny_target()
    other = init_from(model, (1, 0))  # blocks swapped
    tokens = _tokens(model.cfg.vocab)
    theirs = _hf_logits(hf.export(other, tmp_path / "o"), tokens)
    with torch.no_grad():
        ours, _ = model.forward_seq(tokens)
    assert (theirs - ours).abs().max() > 1e-2
