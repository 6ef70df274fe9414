"""An analytic (roofline) cost generator for users without their hardware at hand.

Labelled ``analytic`` in every output: nothing here is measured. A verify step over B tokens,
padded up to the next CUDA-graph bucket, costs

    overhead + max(weight_bytes / (bw · bw_eff), 2 · params · B_padded / (peak · mfu))

so the curve is flat while memory-bound and grows in padding steps once compute-bound; the context
term adds the KV-cache read, ``kv_tokens · kv_bytes_per_token / (bw · bw_eff)``. The drafter is
costed the same way with its own parameter count over R·γ tokens (γ from ``draft_tokens``), and
prefill as compute over the prompt tokens; a co-located prefill chunk is fused into the step's
verify forward (``prefill_fused``: B + chunk tokens, as vLLM V1 and SGLang's mixed chunks run
it). Defaults (an 8B dense model in bf16 on one H100 SXM: 3.35 TB/s HBM, 989 TFLOP/s dense bf16
— NVIDIA's datasheet figures) are for illustration; efficiencies, overheads and bucket sizes are
assumptions, stated in the label.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from profiles.cost import CostModel
from profiles.curve import Curve
from profiles.errors import InputError


@dataclass(frozen=True)
class Roofline:
    params_b: float = 8.0  # target parameters, billions
    bytes_per_param: float = 2.0  # weight bytes per parameter (bf16 = 2)
    hbm_tb_s: float = 3.35  # memory bandwidth, TB/s (H100 SXM datasheet)
    peak_tflops: float = 989.0  # dense peak, TFLOP/s (H100 SXM bf16 datasheet)
    mfu: float = 0.6  # achieved fraction of peak in matmuls (assumption)
    bw_eff: float = 0.8  # achieved fraction of bandwidth (assumption)
    overhead_ms: float = 1.0  # fixed per-step launch/scheduling time (assumption)
    kv_kib_per_token: float = 128.0  # KV bytes per cached token (8B GQA: 32 layers·8 heads·128·2·2)
    draft_params_b: float = 0.4  # drafter parameters, billions (assumption)
    draft_overhead_ms: float = 0.3  # drafter launch time per step (assumption)
    draft_tokens: int = 7  # positions the drafter computes per request (γ)
    max_batch_tokens: int = 4096  # largest verify batch
    bucket_step: int = 8  # CUDA-graph buckets: 1,2,4,8 then every bucket_step up to 256, 64 above

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise InputError(f"analytic profile: {f.name} must be > 0")

    def buckets(self) -> np.ndarray:
        small = [1, 2, 4, 8]
        mid = list(range(8 + self.bucket_step, 257, self.bucket_step))
        big = list(range(320, self.max_batch_tokens + 64, 64))
        return np.unique(np.asarray(small + mid + big))

    def _seconds(self, params_b: float, tokens: np.ndarray, overhead_ms: float) -> np.ndarray:
        mem = params_b * 1e9 * self.bytes_per_param / (self.hbm_tb_s * 1e12 * self.bw_eff)
        compute = 2.0 * params_b * 1e9 * tokens / (self.peak_tflops * 1e12 * self.mfu)
        return overhead_ms * 1e-3 + np.maximum(mem, compute)

    def label(self) -> str:
        return (
            f"analytic roofline, not measured: {self.params_b:g}B params"
            f" x {self.bytes_per_param:g} B, {self.hbm_tb_s:g} TB/s x {self.bw_eff:g},"
            f" {self.peak_tflops:g} TFLOP/s x {self.mfu:g}, overhead {self.overhead_ms:g} ms,"
            " CUDA-graph buckets"
        )


def analytic_cost(**params: float) -> CostModel:
    """A roofline cost model (see module docstring); keyword arguments are Roofline fields."""
    rf = Roofline(**params)
    edges = rf.buckets()
    # Sample each bucket at its first and last batch size so the step shape is kept exactly.
    lo = np.concatenate([[1], edges[:-1] + 1])
    xs = np.unique(np.concatenate([lo, edges]))
    padded = edges[np.searchsorted(edges, xs)]
    verify = rf._seconds(rf.params_b, padded.astype(float), rf.overhead_ms)
    reqs = np.arange(1, 1025)
    draft = rf._seconds(rf.draft_params_b, reqs * float(rf.draft_tokens), rf.draft_overhead_ms)
    prompt = np.array([1, 128, 512, 2048, 8192, 32768], dtype=float)
    prefill = rf._seconds(rf.params_b, prompt, rf.overhead_ms)
    kv_s_per_token = rf.kv_kib_per_token * 1024 / (rf.hbm_tb_s * 1e12 * rf.bw_eff)
    return CostModel.from_sps_table(
        xs.tolist(),
        (1.0 / verify).tolist(),
        max_batch_tokens=rf.max_batch_tokens,
        source=rf.label(),
        draft=Curve(tuple(map(float, reqs)), tuple(map(float, draft))),
        prefill=Curve(tuple(prompt), tuple(map(float, prefill))),
        context=Curve((0.0, 1e6), (0.0, 1e6 * kv_s_per_token)),
        prefill_fused=True,  # GPU engines run a chunk and the verify tokens as one forward
    )


def parse_analytic(text: str) -> dict[str, float]:
    """``params_b=8,hbm_tb_s=3.35`` → keyword arguments for :func:`analytic_cost`."""
    known = {f.name: f.type for f in fields(Roofline)}
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise InputError(f"analytic profile: unknown or malformed parameter {item!r} "
                             f"(parameters: {', '.join(known)})")  # fmt: skip
        try:
            out[key] = int(value) if known[key] in (int, "int") else float(value)
        except ValueError:
            raise InputError(f"analytic profile: {key}={value!r} is not a number") from None
    return out
