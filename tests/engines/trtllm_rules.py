"""TensorRT-LLM's speculative-config rules, transcribed: its package cannot be installed here.

Read with the project's source tools from NVIDIA/TensorRT-LLM (stored snapshots; not installed):

- ``tensorrt_llm/llmapi/llm_args.py`` @ ``fcd3f31682808ae56118ae43c1d7864a3a945e6f``,
  ``DecodingBaseConfig.validate_draft_len_schedule_and_sort``: every batch-size key >= 1, every
  draft length >= 0 and <= ``max_draft_len``, and the smallest key's value equal to
  ``max_draft_len``; ``validate_max_concurrency_and_draft_len_schedule_mutually_exclusive``:
  ``max_concurrency`` and ``draft_len_schedule`` are mutually exclusive (``max_concurrency``
  alone is translated to ``{max_concurrency: max_draft_len}`` in modes with a dynamic draft
  length); ``EagleDecodingConfig.validate_eagle_config``: ``max_draft_len`` > 0.
- ``tensorrt_llm/_torch/speculative/utils.py`` ``get_draft_len_for_batch_size`` ("new
  semantics"): keys are upper bounds — a batch of R requests drafts the value of the smallest
  key >= R, and speculation is off (0) above the largest key.
- ``tensorrt_llm/_torch/speculative/interface.py`` ``SpeculativeDecodingMode.
  support_dynamic_draft_len``: MTP one-model, EAGLE3 one-model, MTP-EAGLE one-model, PARD,
  DFLASH, draft-target one-model and SA honour a schedule; DSpark is not among them.

The functions mirror those rules (same conditions, same order); the error texts are shortened.
"""

from __future__ import annotations

from bisect import bisect_left

SOURCE = "NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py @ fcd3f316"
DYNAMIC_MODES = ("MTP", "EAGLE3", "MTP_EAGLE_ONE_MODEL", "PARD", "DFLASH", "DRAFT_TARGET", "SA")


def validate(spec: dict) -> dict:
    """``DecodingBaseConfig``'s checks on a ``speculative_config`` mapping; returns it with the
    schedule sorted (as the validator returns it) or raises ``ValueError``."""
    top = spec.get("max_draft_len")
    if spec.get("decoding_type") in ("Eagle", "Eagle3") and not top:
        raise ValueError("max_draft_len must be > 0 for Eagle")
    sched = spec.get("draft_len_schedule")
    if sched is not None:
        for bs, k in sched.items():
            if bs < 1:
                raise ValueError(f"draft_len_schedule: batch size threshold must be >= 1, got {bs}")
            if k < 0:
                raise ValueError(f"draft_len_schedule: draft length must be >= 0, got {k}")
        first = min(sched)
        if top is not None and sched[first] != top:
            raise ValueError(f"draft_len_schedule[{first}] must equal max_draft_len")
        if top is not None and any(k > top for k in sched.values()):
            raise ValueError("draft_len_schedule: all draft lengths must be <= max_draft_len")
        spec = {**spec, "draft_len_schedule": dict(sorted(sched.items()))}
    if spec.get("max_concurrency") is not None and sched is not None:
        raise ValueError("max_concurrency and draft_len_schedule are mutually exclusive")
    return spec


def draft_len(spec: dict, batch_size: int) -> int:
    """Drafts per request TensorRT-LLM uses at ``batch_size`` under a validated config."""
    sched = spec.get("draft_len_schedule")
    if sched is None:
        cut = spec.get("max_concurrency")
        return 0 if cut is not None and batch_size > cut else int(spec["max_draft_len"])
    keys = sorted(sched)
    i = bisect_left(keys, batch_size)
    return int(sched[keys[i]]) if i < len(keys) else 0
