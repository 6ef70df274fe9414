"""Validating loaders of the exported production formats: a fast first check of what the engines
check (the conformance suite in ``tests/engines/`` runs the engines' own code on every export).

``load_export(fmt, dir)`` reads ``export.json`` (the manifest ``runner.export.write_export``
writes) and every file it lists, and checks each as its engine does (rules read from its source,
versions in ``runner.targets.VERSIONS``):

- SGLang ``SpsCostTable`` (probes strictly increasing integers >= 1, as many positive steps/s,
  ``max_batch_tokens`` >= the last probe) or ``SpsAdditiveCostTable`` (sniffed by
  ``bias_seconds`` > 0), ``DSparkStsCalibration`` (positive temperatures, exactly
  ``--speculative-dspark-block-size`` of them), the adaptive ladder (integer-string batch-size
  keys with non-negative ``candidate_steps``);
- vLLM ``speculative_config``: ``method`` and ``model`` given, ``num_speculative_tokens`` > 0,
  rows ``[lo, hi, K]`` positive, ordered, disjoint, the first starting at 1;
- TensorRT-LLM ``speculative_config``: schedule keys >= 1, draft lengths in 0..max_draft_len, the
  smallest key's value equal to ``max_draft_len``, no ``max_concurrency`` beside a schedule;
- ``launch.sh`` present and executable.

Problems raise ``InputError`` naming the file and field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from profiles.errors import InputError

FORMATS = ("spectune", "sglang", "vllm", "trtllm", "sglang-adaptive")


def load_export(fmt: str, out: Path) -> dict[str, Any]:
    """Read an exported format back and check it as the engine would; file name → content."""
    from runner.scheduler import load_scheduler

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "spectune":
        return {"scheduler.yaml": load_scheduler(out / "scheduler.yaml")}
    manifest = _read(out / "export.json")
    if manifest.get("format") != fmt:
        raise InputError(f"this is a {manifest.get('format')!r} export, not {fmt!r}",
                         where=str(out / "export.json"))  # fmt: skip
    names = _need(manifest, "files", list, str(out / "export.json"))
    if "launch.sh" not in names:
        raise InputError("the manifest lists no launch.sh", where=str(out / "export.json"))
    sh = out / "launch.sh"
    if not sh.is_file() or not os.access(sh, os.X_OK):
        raise InputError("missing or not executable", where=str(sh))
    docs = {n: _read(out / n) for n in names if n != "launch.sh"}
    check = {"sps_table.json": _check_sps, "sts.json": _check_sts, "adaptive.json": _check_adaptive,
             "speculative_config.json": _check_vllm,
             "speculative_config.yaml": _check_trtllm}  # fmt: skip
    for name, doc in docs.items():
        if name not in check:
            raise InputError("not a file this format writes", where=str(out / name))
        check[name](doc, str(out / name))
    if "sts.json" in docs:
        argv = (manifest.get("launch") or {}).get("argv", [])
        flag = "--speculative-dspark-block-size"
        gamma = int(argv[argv.index(flag) + 1]) if flag in argv else None
        n = len(docs["sts.json"]["temperatures"])
        if gamma is not None and n != gamma:
            raise InputError(f"{n} temperatures for block size (gamma) {gamma}; SGLang refuses "
                             "that", where=str(out / "sts.json"))  # fmt: skip
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


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(doc: dict, key: str, where: str, *, low: int, increasing: bool) -> list[int]:
    v = _need(doc, key, list, where)
    if not v or not all(_int(x) and x >= low for x in v):
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
    if not isinstance(doc.get("dataset", ""), str) or not _int(doc.get("num_samples", 0)):
        raise InputError("dataset must be a string and num_samples an integer", where=where)
    for key in ("ece_before", "ece_after"):
        if key in doc:
            _floats(doc, key, len(doc[key]), where)


def _check_vllm(doc: dict, where: str) -> None:
    for key in ("method", "model"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise InputError(f"vLLM needs {key!r} (a placeholder the launch script fills is "
                             "fine)", where=where)  # fmt: skip
    k = _need(doc, "num_speculative_tokens", int, where)
    if k <= 0:
        raise InputError("num_speculative_tokens must be > 0 (no speculation is no speculative "
                         "config)", where=where)  # fmt: skip
    if "enable_adaptive_verification" in doc:
        _need(doc, "enable_adaptive_verification", bool, where)
    rows = doc.get("num_speculative_tokens_per_batch_size")
    if rows is None:
        return
    last = 0
    for row in rows if isinstance(rows, list) and rows else [None]:
        if not (isinstance(row, list) and len(row) == 3 and all(_int(x) for x in row)):
            raise InputError("num_speculative_tokens_per_batch_size rows must be [lo, hi, K] "
                             "integers", where=where)  # fmt: skip
        lo, hi, kk = row
        if not (last < lo <= hi) or kk < 0 or (last == 0 and lo != 1):
            raise InputError(f"row {row}: ranges must start at 1, be increasing and disjoint, "
                             "K >= 0", where=where)  # fmt: skip
        last = hi


def _check_trtllm(doc: dict, where: str) -> None:
    spec = _need(doc, "speculative_config", dict, where)
    w = f"{where}: speculative_config"
    top = _need(spec, "max_draft_len", int, w)
    if top < 1:
        raise InputError("max_draft_len must be >= 1", where=w)
    sched = spec.get("draft_len_schedule")
    if sched is not None:
        if "max_concurrency" in spec:
            raise InputError("max_concurrency and draft_len_schedule are mutually exclusive",
                             where=w)  # fmt: skip
        if not isinstance(sched, dict) or not sched:
            raise InputError("draft_len_schedule must map batch sizes to draft lengths", where=w)
        for bs, k in sched.items():
            if not (_int(bs) and bs >= 1 and _int(k) and 0 <= k <= top):
                raise InputError(f"draft_len_schedule entry {bs}: {k} must map a batch size "
                                 f">= 1 to a draft length in 0..{top}", where=w)  # fmt: skip
        first = min(sched)
        if sched[first] != top:
            raise InputError(f"draft_len_schedule[{first}] must equal max_draft_len {top}",
                             where=w)  # fmt: skip
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
