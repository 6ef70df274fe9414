"""The real vLLM engine serving our exported target with our draft model (skips without vllm).

One vLLM instance (about a minute to start on a 2-core CPU) checks three things: greedy
speculative decoding reproduces our engine's greedy decoding token for token, vLLM's own
counters show a non-zero accepted length, and ``num_speculative_tokens_per_batch_size`` is
applied (4 running requests fall in the ``[3, 16, 2]`` row: 2 draft tokens per draft, not 4).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine import checkpoint, hf, vllm  # noqa: E402
from engine.data import Corpus  # noqa: E402
from engine.draftlm import init_from  # noqa: E402

if vllm.missing():
    pytest.skip(vllm.missing(), allow_module_level=True)


def _greedy(model, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model.forward_seq(torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt) :]


def test_vllm_speculative_decoding_with_our_models(tmp_path):
    target = checkpoint.load_target("target")
    draft_name = "draft" if checkpoint.path_of("draft").exists() else None
    draft = checkpoint.load_target(draft_name) if draft_name else init_from(target, (0, 1))
    tdir, ddir = hf.export(target, tmp_path / "t"), hf.export(draft, tmp_path / "d")
    spec = vllm.Spec(str(tdir), str(ddir), k=4, table=((1, 2, 4), (3, 16, 2)), max_num_seqs=8)
    llm = vllm.open_llm(spec)
    prompts = [list(p) for p in Corpus.load("code", "heldout").prompts(4, 64, seed=0)]
    outs = vllm.generate(llm, prompts, 24, temperature=0.0)
    assert outs == [_greedy(target, p, 24) for p in prompts]
    c = vllm.spec_counters(llm)
    assert c["num_drafts"] > 0 and c["num_accepted_tokens"] > 0
    assert c["mean_acceptance_length"] > 1.0
    # the table's K at R = 4 (the last steps, as requests finish, may run fewer requests)
    assert 2.0 <= c["draft_tokens_per_draft"] < 2.5
