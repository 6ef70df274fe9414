"""A spectune cost profile of the real vLLM engine (``spectune profile --engine vllm:DIR``).

What is measured is vLLM's whole engine-core step (``LLMEngine.step()``, the core in its own
process as vllm serve runs it, :func:`engine.vllm.step_times`): schedule, one target forward
over the verify tokens, rejection sampling and the draft model's K proposals for the next
step — the quantity vLLM's own dynamic-speculation tooling and DSpark's Eq. 1 plan with. Samples:

- decode steps at R running requests and K speculative tokens (K = 0: no speculation), one
  vLLM instance per K (vLLM fixes K per instance); per instance every round visits every R in a
  freshly shuffled order, and each sample is the median of ``steps`` timed steps after
  ``warmup`` untimed ones; a reference sample (R = 1) opens and closes each instance (drift);
- prefill: the step that prefills one prompt of each chunk size alone, minus the one-request
  decode step of the same instance (what the chunk adds to a step).

The profile's default form is ``additive``: ``T(bs, M) = bias + α(bs) + θ(M)`` fitted by
least squares (relative error, non-negative terms, :func:`engine.costfit.fit_additive`) to every
decode sample with bs = R and M = R · (1 + K) verify tokens. The draft model's cost grows with K,
not only with R, so it is not a separate draft curve here: the fit prices the whole step (draft
curve 0). A 1D ``sps`` block (mean step time per distinct M) is kept beside it. The metadata
holds every sample, the fit's errors, provenance and the validity envelope.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass

import numpy as np

from engine import vllm
from profiles.cost import CostModel, Curve


@dataclass(frozen=True)
class VllmProfileConfig:
    """What the vLLM profiler measures."""

    requests: tuple[int, ...] = (1, 2, 4, 8, 16)  # running requests R per decode sample
    ks: tuple[int, ...] = (0, 1, 2, 4)  # speculative tokens K (0 = no draft model)
    prompt_len: int = 64  # prompt tokens of every decode request (the context measured at)
    steps: int = 6  # timed decode steps per sample (median kept)
    warmup: int = 2  # untimed decode steps first
    repeats: int = 3  # rounds over the R values per instance
    chunks: tuple[int, ...] = (16, 64, 256)  # prefill sizes (tokens)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.requests, default=0) < 1 or min(self.ks, default=-1) < 0:
            raise ValueError("requests must be >= 1 and ks >= 0")
        if min(self.steps, self.repeats, self.prompt_len, *self.chunks) < 1 or self.warmup < 0:
            raise ValueError("steps, repeats, prompt_len and chunks must be >= 1")


def prompts(count: int, length: int, rng: np.random.Generator) -> list[list[int]]:
    """Byte prompts from the held-out code corpus (what our models were trained on)."""
    from engine.data import Corpus

    corpus = Corpus.load("code", "heldout")
    return [list(map(int, row)) for row in corpus.batch(rng, count, length)]


def measure(target: str, draft: str, cfg: VllmProfileConfig, spec_kw: dict, tick=None) -> dict:
    """Every sample (see module doc) as plain lists; ``spec_kw`` passes Spec fields."""
    rng = np.random.default_rng(cfg.seed)
    samples = {"decode": [], "prefill": [], "reference": []}
    t0 = time.perf_counter()
    order = list(cfg.ks)
    rng.shuffle(order)
    for k in order:
        if k and not draft:
            raise ValueError("K > 0 needs a draft model (vllm:TARGET,draft=DIR)")
        spec = vllm.Spec(target, draft if k else "", k=k, max_num_seqs=max(cfg.requests),
                         seed=cfg.seed, **spec_kw)  # fmt: skip
        llm = vllm.open_llm(spec)
        one = prompts(1, cfg.prompt_len, rng)
        ref = {"k": k, "before_s": _median(vllm.step_times(llm, one, cfg.warmup, cfg.steps, "a"))}
        for rnd in range(cfg.repeats):
            rs = list(cfg.requests)
            rng.shuffle(rs)
            for r in rs:
                ts = vllm.step_times(llm, prompts(r, cfg.prompt_len, rng), cfg.warmup, cfg.steps,
                                     f"k{k}r{r}n{rnd}")  # fmt: skip
                samples["decode"].append(
                    {"k": k, "requests": r, "round": rnd, "seconds": _median(ts)}
                )
                _tick(tick)
            for c in rng.permutation(cfg.chunks):
                t = vllm.prefill_time(llm, prompts(1, int(c), rng)[0], f"p{k}c{c}n{rnd}")
                samples["prefill"].append({"k": k, "tokens": int(c), "round": rnd, "seconds": t})
                _tick(tick)
        ref["after_s"] = _median(vllm.step_times(llm, one, cfg.warmup, cfg.steps, "b"))
        samples["reference"].append(ref)
        del llm
        gc.collect()
    samples["wall_s"] = time.perf_counter() - t0
    return samples


def total_calls(cfg: VllmProfileConfig) -> int:
    return len(cfg.ks) * cfg.repeats * (len(cfg.requests) + len(cfg.chunks))


def cost_models(samples: dict, source: str) -> tuple[CostModel, CostModel, dict]:
    """The additive fit (default form) and the 1D table over M, with the fit's errors."""
    from engine.costfit import fit_additive

    d = samples["decode"]
    bs = np.array([s["requests"] for s in d], float)
    m = np.array([s["requests"] * (1 + s["k"]) for s in d], float)
    t = np.array([s["seconds"] for s in d], float)
    bs_probes = sorted({int(x) for x in bs})
    m_probes = sorted({int(x) for x in m})
    if len(bs_probes) < 2 or len(m_probes) < 2:
        raise ValueError("the fit needs at least two request counts and two batch sizes")
    fit = fit_additive(bs, m, t, bs_probes, m_probes)
    prefill = _prefill_curve(samples)
    max_b = int(m.max())
    add = CostModel.additive(fit.bias_s, fit.bs_probes, fit.alpha_s, fit.m_probes, fit.theta_s,
                             max_batch_tokens=max_b, prefill=prefill,
                             source=f"{source}; additive least-squares fit")  # fmt: skip
    means = [float(t[m == b].mean()) for b in m_probes]
    sps = CostModel.from_sps_table(m_probes, [1.0 / x for x in means], max_batch_tokens=max_b,
                                   prefill=prefill, source=f"{source}; mean per M")  # fmt: skip
    errors = {"rms_rel_error": fit.rms_rel_error, "max_rel_error": fit.max_rel_error,
              "points": fit.points}  # fmt: skip
    return add, sps, errors


def _prefill_curve(samples: dict) -> Curve:
    """Prefill seconds over chunk tokens: the prefill step minus the R = 1 decode step."""
    decode1 = {}
    for s in samples["decode"]:
        if s["requests"] == 1:
            decode1.setdefault(s["k"], []).append(s["seconds"])
    extra: dict[int, list[float]] = {}
    for s in samples["prefill"]:
        base = float(np.median(decode1.get(s["k"], [0.0])))
        extra.setdefault(s["tokens"], []).append(max(s["seconds"] - base, 0.0))
    xs = sorted(extra)
    return Curve(tuple(map(float, xs)), tuple(float(np.mean(extra[x])) for x in xs))


def document(samples: dict, add: CostModel, sps: CostModel, errors: dict, meta: dict,
             cfg: VllmProfileConfig, max_model_len: int) -> dict:  # fmt: skip
    """The profile YAML: additive form by default, the 1D table beside it, every sample."""
    from profiles.store import cost_to_dict

    doc = cost_to_dict(add)
    doc["sps"] = cost_to_dict(sps)["sps"]
    r = [s["requests"] for s in samples["decode"]]
    m = [s["requests"] * (1 + s["k"]) for s in samples["decode"]]
    gen = (cfg.warmup + cfg.steps + 2) * (1 + max(cfg.ks))
    doc["metadata"] = {
        **meta,
        "config": {**asdict(cfg)},
        "measured": "whole engine-core steps (LLMEngine.step, core in its own process); "
        "additive fit of T(bs=R, M=R(1+K)); draft model cost inside the fit (no draft curve)",
        "additive_fit": {
            k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in errors.items()
        },
        "envelope": {
            "requests": [min(r), max(r)],
            "batch_tokens": [min(m), max(m)],
            "speculative_tokens": [min(cfg.ks), max(cfg.ks)],
            "context_tokens": [cfg.prompt_len, cfg.prompt_len + gen],
            "prefill_tokens": [min(cfg.chunks), max(cfg.chunks)],
            "engine_max_context": max_model_len,
        },
        "wall_s": round(samples["wall_s"], 1),
        "samples": {k: v for k, v in samples.items() if k != "wall_s"},
    }
    return doc


def _median(ts: list[float]) -> float:
    return float(np.median(ts))


def _tick(tick) -> None:
    if tick is not None:
        tick(1)


def parse_engine(spec: str) -> tuple[str, str]:
    """``vllm:TARGET[,draft=DRAFT]`` -> (target, draft); each an exported HF directory or one of
    our checkpoints (name or ``.safetensors`` path), exported on the fly."""
    body = spec.removeprefix("vllm:")
    parts = [p for p in body.split(",") if p]
    if not parts or "=" in parts[0]:
        raise ValueError(f"--engine {spec!r}: expected vllm:TARGET[,draft=DIR]")
    draft = ""
    for p in parts[1:]:
        key, _, value = p.partition("=")
        if key != "draft" or not value:
            raise ValueError(f"--engine {spec!r}: unknown option {p!r} (known: draft=DIR)")
        draft = value
    return parts[0], draft


def resolve_model(name: str, scratch) -> str:
    """An HF directory for ``name``: itself if exported, else our checkpoint exported to scratch."""
    from pathlib import Path

    from engine import checkpoint, hf

    p = Path(name)
    if p.is_dir():
        return str(vllm.exported(p))
    path = checkpoint.path_of(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: neither an exported model directory nor a checkpoint")
    return str(hf.export(name, Path(scratch) / path.stem))


def profile(engine_spec: str, cfg: VllmProfileConfig, spec_kw: dict, meta: dict, tick=None):
    """Measure vLLM for ``engine_spec``; returns the profile document."""
    import tempfile

    from engine import provenance

    target, draft = parse_engine(engine_spec)
    with tempfile.TemporaryDirectory(prefix="spectune-hf-") as scratch:
        tdir = resolve_model(target, scratch)
        ddir = resolve_model(draft, scratch) if draft else ""
        load_before = provenance.load_average()
        samples = measure(tdir, ddir, cfg, spec_kw, tick)
    import datetime

    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    source = (f"measured: vLLM {vllm.version()} ({engine_spec.removeprefix('vllm:')}) on cpu, "
              f"{date[:10]}, commit {provenance.git_commit()[:12]}")  # fmt: skip
    add, sps, errors = cost_models(samples, source)
    meta = {**meta, "vllm": vllm.version(), "date": date, "commit": provenance.git_commit(),
            "target": target, "draft": draft, "engine": engine_spec,
            "load_average": {"before": load_before, "after": provenance.load_average()},
            "cpu": provenance._cpu()}  # fmt: skip
    return document(samples, add, sps, errors, meta, cfg, spec_kw.get("max_model_len", 1024))
