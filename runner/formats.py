"""Validating loaders of the exported production formats (the checks the engines apply).

``load_export(fmt, dir)`` reads what ``runner.export.write_export`` wrote and checks it the way
the consuming engine does (as read from its source): SGLang ``SpsCostTable`` (probes strictly
increasing integers >= 1, positive steps/s, ``max_batch_tokens`` >= the last probe) or
``SpsAdditiveCostTable`` (sniffed by ``bias_seconds``, which must be > 0), ``DSparkStsCalibration``
(non-empty positive temperatures, one per position), ``DSparkScheduleConfig`` bounds; vLLM
``speculative_config`` rows ``[lo, hi, K]``; TensorRT-LLM ``draft_len_schedule``; the SGLang
adaptive ladder (integer-string batch-size keys with ``candidate_steps``). Problems raise
``InputError`` naming the file and field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from profiles.errors import InputError

FORMATS = ("spectune", "sglang", "vllm", "trtllm", "sglang-adaptive")


def load_export(fmt: str, out: Path) -> dict[str, Any]:
    """Read an exported format back and check it as the engine would; file name → content."""
    from runner.scheduler import load_scheduler

    if fmt == "spectune":
        return {"scheduler.yaml": load_scheduler(out / "scheduler.yaml")}
    names = {"sglang": ("sps_table.json", "sts.json", "schedule.json"),
             "vllm": ("speculative_config.json",), "trtllm": ("speculative_config.yaml",),
             "sglang-adaptive": ("adaptive.json",)}  # fmt: skip
    if fmt not in names:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    docs = {n: _read(out / n) for n in names[fmt]}
    check = {
        "sps_table.json": _check_sps,
        "sts.json": _check_sts,
        "schedule.json": _check_schedule,
        "speculative_config.json": _check_vllm,
        "speculative_config.yaml": _check_trtllm,
        "adaptive.json": _check_adaptive,
    }
    for name, doc in docs.items():
        check[name](doc, str(out / name))
    if fmt == "sglang":
        gamma = docs["schedule.json"]["gamma"]
        if len(docs["sts.json"]["temperatures"]) != gamma:
            raise InputError(f"{len(docs['sts.json']['temperatures'])} temperatures for gamma "
                             f"{gamma}", where=str(out / "sts.json"))  # fmt: skip
    return docs


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError("missing export file", where=str(path))
    text = path.read_text(encoding="utf-8")
    from profiles.documents import parse_json, parse_yaml

    where = str(path)
    try:
        doc = parse_yaml(text, where) if path.suffix == ".yaml" else parse_json(text, where)
    except InputError as exc:
        problem = str(exc).removeprefix(f"{where}: ")
        raise InputError(f"cannot parse ({problem})", where=where) from None
    if not isinstance(doc, dict):
        raise InputError("expected an object at the top level", where=str(path))
    return doc


def _need(doc: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in doc:
        raise InputError(f"missing field {key!r}", where=where)
    v = doc[key]
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        raise InputError(f"field {key!r} has the wrong type ({type(v).__name__})", where=where)
    return v


def _ints(doc: dict, key: str, where: str, *, low: int, increasing: bool) -> list[int]:
    v = _need(doc, key, list, where)
    if not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= low for x in v):
        raise InputError(f"{key} must be a non-empty list of integers >= {low}", where=where)
    if increasing and any(b <= a for a, b in zip(v, v[1:], strict=False)):
        raise InputError(f"{key} must be strictly increasing", where=where)
    return v


def _floats(doc: dict, key: str, n: int, where: str, *, positive: bool = False) -> list[float]:
    v = _need(doc, key, list, where)
    if len(v) != n or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
        raise InputError(f"{key} must hold {n} finite numbers", where=where)
    if positive and any(x <= 0 for x in v):
        raise InputError(f"{key} must be positive", where=where)
    return v


def _check_sps(doc: dict, where: str) -> None:
    if "bias_seconds" in doc:  # SGLang sniffs the additive form by this key
        if not _need(doc, "bias_seconds", (int, float), where) > 0:
            raise InputError("bias_seconds must be > 0", where=where)
        for probes, values in (("bs_probes", "alpha_seconds"), ("m_probes", "theta_seconds")):
            n = len(_ints(doc, probes, where, low=0, increasing=True))
            _floats(doc, values, n, where)
        return
    xs = _ints(doc, "sample_batch_tokens", where, low=1, increasing=True)
    _floats(doc, "sample_steps_per_sec", len(xs), where, positive=True)
    if _need(doc, "max_batch_tokens", int, where) < xs[-1]:
        raise InputError("max_batch_tokens must be >= the largest probe", where=where)


def _check_sts(doc: dict, where: str) -> None:
    temps = _need(doc, "temperatures", list, where)
    _floats(doc, "temperatures", max(len(temps), 1), where, positive=True)
    if not isinstance(doc.get("dataset", ""), str) or not isinstance(doc.get("num_samples", 0),
                                                                      int):  # fmt: skip
        raise InputError("dataset must be a string and num_samples an integer", where=where)
    for key in ("ece_before", "ece_after"):
        if key in doc:
            _floats(doc, key, len(doc[key]), where)


def _check_schedule(doc: dict, where: str) -> None:
    gamma = _need(doc, "gamma", int, where)
    lo, hi = _need(doc, "min_verify_len", int, where), _need(doc, "max_verify_len", int, where)
    if gamma < 1 or not 0 <= lo <= (hi or gamma + 1) <= gamma + 1:
        raise InputError("need 0 <= min_verify_len <= max_verify_len (0 = gamma+1) <= gamma+1",
                         where=where)  # fmt: skip
    if _need(doc, "survival_eps", (int, float), where) < 0:
        raise InputError("survival_eps must be >= 0", where=where)


def _check_vllm(doc: dict, where: str) -> None:
    k = _need(doc, "num_speculative_tokens", int, where)
    if k < 0:
        raise InputError("num_speculative_tokens must be >= 0", where=where)
    if "enable_adaptive_verification" in doc:
        _need(doc, "enable_adaptive_verification", bool, where)
    rows = doc.get("num_speculative_tokens_per_batch_size")
    if rows is None:
        return
    last = 0
    for row in rows if isinstance(rows, list) else [None]:
        if not (isinstance(row, list) and len(row) == 3 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in row)):  # fmt: skip
            raise InputError("num_speculative_tokens_per_batch_size rows must be [lo, hi, K] "
                             "integers", where=where)  # fmt: skip
        lo, hi, kk = row
        if not (last < lo <= hi) or kk < 0:
            raise InputError(f"row {row}: ranges must be increasing and disjoint, K >= 0",
                             where=where)  # fmt: skip
        last = hi


def _check_trtllm(doc: dict, where: str) -> None:
    spec = _need(doc, "speculative_config", dict, where)
    w = f"{where}: speculative_config"
    top = _need(spec, "max_draft_len", int, w)
    sched = _need(spec, "draft_len_schedule", dict, w)
    for bs, k in sched.items():
        if not (isinstance(bs, int) and bs >= 1 and isinstance(k, int) and 0 <= k <= top):
            raise InputError(f"draft_len_schedule entry {bs}: {k} must map a batch size >= 1 "
                             f"to a draft length in 0..{top}", where=w)  # fmt: skip
    if "max_concurrency" in spec and _need(spec, "max_concurrency", int, w) < 1:
        raise InputError("max_concurrency must be >= 1", where=w)


def _check_adaptive(doc: dict, where: str) -> None:
    slots = {k: v for k, v in doc.items() if str(k).isdigit()}
    if not slots:
        raise InputError('needs at least one batch-size key, e.g. {"1": {"candidate_steps": '
                         '[1, 3]}}', where=where)  # fmt: skip
    for key, entry in slots.items():
        if not isinstance(entry, dict):
            raise InputError(f"slot {key} must be an object", where=where)
        _ints(entry, "candidate_steps", f"{where}: slot {key}", low=0, increasing=False)
