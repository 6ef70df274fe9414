"""Our target-architecture models as Hugging Face Llama checkpoints (what vLLM loads).

:class:`~engine.model.Target` is a Llama in all that matters, so the export is a renaming and a
split of the fused projections, with no change of any number:

- attention: fused ``qkv`` ``[3D, D]`` splits into ``q_proj``, ``k_proj``, ``v_proj`` (rows in
  that order, heads contiguous as ``view(N, 3, H, Dh)`` reads them); no bias; scale 1/√Dh;
- RoPE: our rotate-half convention (first half / second half of each head, frequencies
  ``base^(-2i/Dh)``) is HF Llama's ``rotate_half`` and vLLM's neox style, so no permutation;
- SwiGLU: fused ``up`` ``[2F, D]`` holds the gate in its first F rows and the value in the last F:
  ``gate_proj`` and ``up_proj``; ``down`` is ``down_proj``; activation SiLU;
- RMSNorm: ``x · rsqrt(mean(x²) + eps) · w`` with our eps as ``rms_norm_eps`` (HF computes it in
  float32, as we do when exported as float32);
- embeddings: our embedding and LM head are separate parameters, so ``tie_word_embeddings`` is
  false (nothing to tie); vocabulary 256 bytes, no special tokens (``bos``/``eos`` are null:
  prompts are token ids and generation ends by length).

Committed weights are fp16; they are written as float32 by default (exact upcast) so the exported
model's logits equal our engine's (tests/engine/test_hf.py checks through transformers).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine import checkpoint
from engine.model import Target

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def llama_config(model: Target, dtype: str = "float32") -> dict:
    """The ``config.json`` of a ``LlamaForCausalLM`` equal to ``model``."""
    c = model.cfg
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab,
        "hidden_size": c.dim,
        "intermediate_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.max_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_base,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "use_cache": True,
    }


def llama_state(model: Target) -> dict[str, torch.Tensor]:
    """Our weights under HF Llama names (fused projections split, nothing else changed)."""
    c = model.cfg
    s = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {"model.embed_tokens.weight": s["embed.weight"], "model.norm.weight": s["norm.weight"]}
    out["lm_head.weight"] = s["head.weight"]
    for i in range(c.layers):
        b, o = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = s[b + "attn.qkv.weight"].split(c.dim, dim=0)  # [D, D] each
        gate, up = s[b + "mlp.up.weight"].split(c.hidden, dim=0)  # [F, D] each
        out |= {
            o + "input_layernorm.weight": s[b + "norm1.weight"],
            o + "self_attn.q_proj.weight": q,
            o + "self_attn.k_proj.weight": k,
            o + "self_attn.v_proj.weight": v,
            o + "self_attn.o_proj.weight": s[b + "attn.out.weight"],
            o + "post_attention_layernorm.weight": s[b + "norm2.weight"],
            o + "mlp.gate_proj.weight": gate,
            o + "mlp.up_proj.weight": up,
            o + "mlp.down_proj.weight": s[b + "mlp.down.weight"],
        }
    return out


def export(model: Target | str, out: Path, dtype: str = "float32", source: str = "") -> Path:
    """Write ``out/config.json``, ``out/model.safetensors`` and ``out/generation_config.json``.

    ``model`` is a :class:`Target` or a target-architecture checkpoint name or path. Returns
    ``out``. The directory is created; files of an earlier export in it are replaced.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if isinstance(model, str):
        source = source or str(checkpoint.path_of(model))
        model = checkpoint.load_target(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(DTYPES[dtype]).contiguous() for k, v in llama_state(model).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "source": source})
    (out / "config.json").write_text(json.dumps(llama_config(model, dtype), indent=2) + "\n")
    gen = {"bos_token_id": None, "eos_token_id": None, "do_sample": True, "temperature": 1.0}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out
