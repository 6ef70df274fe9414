"""Import vLLM's speculative-decoding counters from a Prometheus scrape (``spectune import
vllm-metrics``) as a one-domain parametric acceptance model.

vLLM exposes ``vllm:spec_decode_num_drafts_total``, ``vllm:spec_decode_num_draft_tokens_total``,
``vllm:spec_decode_num_accepted_tokens_total`` and
``vllm:spec_decode_num_accepted_tokens_per_pos_total{position="k"}`` (k = 0..K−1), one series per
engine (labels ``model_name``, ``engine``); they are summed over engines. ``per_pos[k]`` counts
drafts whose first k+1 tokens were accepted, so the unconditional rate at draft position k+1 is
``per_pos[k] / drafts`` and the conditional one ``per_pos[k] / per_pos[k−1]`` (``per_pos[−1] =
drafts``). A scrape of a variable-K deployment (``draft_tokens / drafts`` below K: a per-batch-size
K or adaptive verification, e.g. what ``spectune export --format vllm`` writes for a table or a
DSpark policy) mixes rounds of different lengths; it is refused with the reason. These are
round-weighted averages, which is what ``ParametricAcceptance`` is calibrated to, so replaying
the model under ``fixed:k=K`` reproduces the scrape's mean acceptance length
``1 + accepted / drafts``. The confidence-noise parameters cannot be identified from counters and
stay at their defaults (labelled "assumed"). ``--since`` subtracts an earlier scrape of the same
server (counters are cumulative since start-up).

The Prometheus text format (0.0.4 and OpenMetrics) is parsed here: ``# HELP``/``# TYPE``/comment
lines skipped, label values with ``\\``, ``\"`` and ``\n`` escapes, ``+Inf``/``NaN`` values and
optional timestamps. Any malformed line is one InputError naming the file and line.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiles.acceptance import ParametricAcceptance
from profiles.errors import InputError
from profiles.importers import provenance, read_text

VLLM = "vllm:spec_decode_"
VLLM_COUNTERS = ("num_drafts", "num_draft_tokens", "num_accepted_tokens")
VLLM_PER_POS = "num_accepted_tokens_per_pos"
RATE_CLIP = (1e-3, 1.0 - 1e-3)  # ParametricAcceptance needs rates strictly inside (0, 1)


# -- Prometheus text format -----------------------------------------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|\}|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str  # metric sample name, e.g. vllm:spec_decode_num_drafts_total
    labels: tuple[tuple[str, str], ...]  # sorted (label, value) pairs
    value: float
    line: int  # 1-based line in the scrape


def _labels(text: str, where: str) -> tuple[tuple[str, str], ...]:
    body, pos, out = text[1:], 0, {}
    if body.strip() == "}":
        return ()
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if not m:
            raise InputError(f"malformed label set {text!r}", where=where)
        value = re.sub(r"\\.", lambda e: _ESCAPES.get(e.group(0), e.group(0)), m.group(2))
        if m.group(1) in out:
            raise InputError(f"label {m.group(1)!r} given twice", where=where)
        out[m.group(1)] = value
        pos = m.end()
        if m.group(3) == "}":
            if body[pos:].strip():
                raise InputError(f"text after the label set {text!r}", where=where)
            return tuple(sorted(out.items()))
        if body[pos:].strip() == "}":
            return tuple(sorted(out.items()))
    raise InputError(f"unterminated label set {text!r}", where=where)


def parse_prometheus(text: str, path: str = "<scrape>") -> list[Sample]:
    """Samples of a Prometheus text exposition (0.0.4 / OpenMetrics); comments are skipped."""
    samples = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{i}"
        m = _SAMPLE.match(line)
        if not m:
            raise InputError(f"malformed sample line {_clip(line)!r}", where=where)
        labels = _labels(m.group(2), where) if m.group(2) else ()
        try:
            value = float(m.group(3))
        except ValueError:
            raise InputError(f"value {m.group(3)!r} is not a number", where=where) from None
        samples.append(Sample(m.group(1), labels, value, i))
    return samples


# -- vLLM spec-decode counters --------------------------------------------------------------------
@dataclass(frozen=True)
class VllmCounters:
    """Spec-decode counters of one scrape, summed over engines."""

    drafts: float
    draft_tokens: float
    accepted: float
    per_pos: tuple[float, ...]  # accepted tokens at positions 0..K-1
    models: tuple[str, ...]  # distinct model_name labels seen
    engines: int  # distinct label sets of num_drafts

    @property
    def mean_acceptance_length(self) -> float:
        return 1.0 + self.accepted / self.drafts


def vllm_counters(path: str | Path, model_name: str | None = None) -> VllmCounters:
    """Sum vLLM's spec-decode counters in a scrape (optionally of one ``model_name`` only)."""
    where = str(path)
    sums: dict[str, float] = defaultdict(float)
    per_pos: dict[int, float] = defaultdict(float)
    models, engines = set(), set()
    for s in parse_prometheus(read_text(path), where):
        if not s.name.startswith(VLLM):
            continue
        labels = dict(s.labels)
        if model_name is not None and labels.get("model_name", model_name) != model_name:
            continue
        base = s.name[len(VLLM) :].removesuffix("_total")
        if s.name.endswith(("_created", "_bucket", "_sum", "_count")):
            continue
        if not math.isfinite(s.value) or s.value < 0:
            raise InputError(f"{s.name} is {s.value}, expected a count", where=f"{where}:{s.line}")
        if "model_name" in labels:
            models.add(labels["model_name"])
        if base == VLLM_PER_POS:
            try:
                per_pos[int(labels["position"])] += s.value
            except (KeyError, ValueError):
                raise InputError(
                    f"{s.name} needs an integer 'position' label", where=f"{where}:{s.line}"
                ) from None
        elif base in VLLM_COUNTERS:
            sums[base] += s.value
            if base == "num_drafts":
                engines.add(tuple(kv for kv in s.labels if kv[0] != "model_name"))
    missing = [f"{VLLM}{c}_total" for c in VLLM_COUNTERS if c not in sums]
    if not per_pos:
        missing.append(f"{VLLM}{VLLM_PER_POS}_total")
    if missing:
        scope = f" for model_name {model_name!r}" if model_name else ""
        raise InputError(
            f"missing metric(s){scope}: {', '.join(missing)} (is speculative decoding enabled?)",
            where=where,
        )
    if model_name is None and len(models) > 1:
        raise InputError(
            f"the scrape has several models ({', '.join(sorted(models))}); "
            "choose one with --model-name",
            where=where,
        )
    if sorted(per_pos) != list(range(len(per_pos))):
        raise InputError(f"per-position positions {sorted(per_pos)} are not 0..K-1", where=where)
    return VllmCounters(
        sums["num_drafts"],
        sums["num_draft_tokens"],
        sums["num_accepted_tokens"],
        tuple(per_pos[k] for k in range(len(per_pos))),
        tuple(sorted(models)),
        len(engines),
    )


def counters_since(now: VllmCounters, before: VllmCounters, where: str) -> VllmCounters:
    """Counter deltas between two scrapes of the same server (``--since``)."""
    if len(now.per_pos) != len(before.per_pos):
        raise InputError("the two scrapes have different draft lengths", where=where)
    delta = [
        now.drafts - before.drafts,
        now.draft_tokens - before.draft_tokens,
        now.accepted - before.accepted,
    ]
    pos = [a - b for a, b in zip(now.per_pos, before.per_pos, strict=True)]
    if min(delta + pos) < 0:
        raise InputError(
            "a counter decreased since the earlier scrape (server restarted?)", where=where
        )
    return VllmCounters(*delta, tuple(pos), now.models, now.engines)


def conditional_rates(c: VllmCounters, where: str) -> tuple[list[float], list[str]]:
    """Per-position conditional acceptance from the counters, plus notes on any clipping."""
    k = len(c.per_pos)
    if c.drafts <= 0:
        raise InputError("num_drafts is 0: no speculative rounds in this scrape", where=where)
    tol = 0.01 * max(c.accepted, 1.0)
    if abs(sum(c.per_pos) - c.accepted) > tol:
        raise InputError(
            f"inconsistent counters: per-position accepted sum {sum(c.per_pos):g} "
            f"!= num_accepted_tokens {c.accepted:g}",
            where=where,
        )
    if c.draft_tokens > c.drafts * k * 1.01 or c.accepted > c.draft_tokens * 1.01:
        raise InputError(
            f"inconsistent counters: {c.drafts:g} drafts of at most {k} tokens, "
            f"{c.draft_tokens:g} draft tokens, {c.accepted:g} accepted",
            where=where,
        )
    if c.draft_tokens < 0.98 * c.drafts * k:
        raise InputError(
            f"variable-K deployment: {c.draft_tokens / c.drafts:.2f} draft tokens per draft < "
            f"K = {k} (dynamic K per batch size or adaptive verification); the per-position "
            "counters then mix rounds of different lengths and the conditional rates would be "
            "biased low, so this scrape is refused: import one from a fixed-K deployment",
            where=where,
        )
    reach = [c.drafts, *c.per_pos]
    rates, notes = [], []
    for j in range(k):
        if reach[j + 1] > reach[j] * 1.005 + 1:
            raise InputError(
                f"inconsistent counters: position {j} accepted {reach[j + 1]:g} "
                f"more often than position {j - 1} ({reach[j]:g})",
                where=where,
            )
        rate = reach[j + 1] / reach[j] if reach[j] > 0 else RATE_CLIP[0]
        clipped = min(max(rate, RATE_CLIP[0]), RATE_CLIP[1])
        if clipped != rate:
            notes.append(f"position {j + 1} rate {rate:.4g} clipped to {clipped:g}")
        rates.append(clipped)
    return rates, notes


def vllm_acceptance(
    path: str | Path,
    *,
    domain: str = "chat",
    model_name: str | None = None,
    since: str | Path | None = None,
) -> tuple[ParametricAcceptance, VllmCounters]:
    """A one-domain parametric acceptance model from a vLLM scrape (see module docstring)."""
    where = str(path)
    counters = vllm_counters(path, model_name)
    if since is not None:
        counters = counters_since(counters, vllm_counters(since, model_name), where)
    window = f" minus {Path(since).name}" if since is not None else ""
    return _model(counters, f"{Path(path).name}{window} (", where, domain), counters


def vllm_acceptance_over(
    windows, *, domain: str = "chat", model_name: str | None = None
) -> tuple[ParametricAcceptance, VllmCounters]:
    """As :func:`vllm_acceptance`, from the counters summed over several scrape windows
    ``[(after, before), ...]`` of one server (e.g. the loads of a fidelity run, not the requests
    run between them)."""
    if not windows:
        raise InputError("no scrape windows to import", where="vllm-metrics")
    total = None
    for after, before in windows:
        c = counters_since(vllm_counters(after, model_name), vllm_counters(before, model_name),
                           str(after))  # fmt: skip
        if total is not None and len(c.per_pos) != len(total.per_pos):
            raise InputError("the scrape windows have different draft lengths", where=str(after))
        total = c if total is None else VllmCounters(
            total.drafts + c.drafts, total.draft_tokens + c.draft_tokens,
            total.accepted + c.accepted,
            tuple(a + b for a, b in zip(total.per_pos, c.per_pos, strict=True)),
            tuple(sorted({*total.models, *c.models})), max(total.engines, c.engines),
        )  # fmt: skip
    names = ", ".join(f"{Path(a).parent.name}/{Path(a).name} minus {Path(b).name}"
                      for a, b in windows)  # fmt: skip
    label = f"summed over {len(windows)} scrape window(s) ({names}; "
    return _model(total, label, str(windows[0][0]), domain), total


def _model(counters: VllmCounters, label: str, where: str, domain: str) -> ParametricAcceptance:
    """The one-domain model of ``counters``; its source names them after ``label``."""
    rates, notes = conditional_rates(counters, where)
    model = counters.models[0] if len(counters.models) == 1 else "unlabelled model"
    source = (
        f"imported: vLLM metrics {label}{model}, {counters.engines} engine(s), "
        f"{counters.drafts:.0f} drafts, k={len(rates)}, mean acceptance length "
        f"{counters.mean_acceptance_length:.3f}" + (f"; {'; '.join(notes)}" if notes else "")
        + "); confidence noise assumed"
    )  # fmt: skip
    return ParametricAcceptance({domain: rates}, source=source)


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def acceptance_document(path: str | Path, *, domain: str = "chat", model_name: str | None = None,
                        since: str | Path | None = None,
                        command: str = "") -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """``spectune import vllm-metrics``: the acceptance profile (the model, the counters read
    and the files' provenance) and a summary of it."""
    from profiles.store import acceptance_to_dict

    model, c = vllm_acceptance(path, domain=domain, model_name=model_name, since=since)
    counters = {"drafts": c.drafts, "draft_tokens": c.draft_tokens, "accepted": c.accepted,
                "accepted_per_pos": list(c.per_pos), "engines": c.engines,
                "models": list(c.models)}  # fmt: skip
    meta = provenance("vllm-metrics", path, command=command, counters=counters)
    if since:
        meta["since"] = provenance("vllm-metrics", since)
    summary = {"kind": "vllm-metrics", "source": model.source, "draft_length": model.gamma,
               "mean_acceptance_length": c.mean_acceptance_length,
               "conditional_rates": list(model.rates[domain]), "domain": domain}  # fmt: skip
    return {**acceptance_to_dict(model), "metadata": meta}, summary
