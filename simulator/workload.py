"""The one way into a workload: ``open_workload(WorkloadSpec(...))`` (DESIGN §2).

A workload is a stream of ``Request`` in arrival order, read from a trace file (``traces``) or
drawn from a synthetic load (``synthetic``), then passed through the replay transforms in this
order: time window ``[start_s, start_s + duration_s)`` in trace seconds, first ``limit``
requests, token clamps, time compression ``arrival = (t - start_s) / rate_scale``, domain labels
(the row's own, else drawn from the mix), ids 0, 1, 2, ... It never holds the whole trace:
iterating reads the file again, row by row, and fills ``Workload.stats`` as it goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from profiles.errors import InputError
from simulator.request import Request
from simulator.synthetic import (
    BUILTIN,
    SYNTHETIC,
    DomainSampler,
    Streams,
    SyntheticLoad,
    request_rows,
)
from simulator.traces import TRACE_FORMATS, TraceFile, WorkloadStats, inspect_trace, read_trace

__all__ = ["DEFAULT_WORKLOAD", "Workload", "WorkloadSpec", "WorkloadStats", "fit_default",
           "open_workload", "parse_domain_mix"]  # fmt: skip

BUILTIN_PREFIX = "builtin:"
_SYNTHETIC_ONLY = ("request_rate", "burstiness", "num_requests")

DomainMix = tuple[tuple[str, float], ...]


DEFAULT_WORKLOAD = "builtin:azure-conv-like"  # what `spectune` replays when told nothing


@dataclass(frozen=True)
class WorkloadSpec:
    """Where requests come from and how to replay them (checked here; files checked on open)."""

    source: str  # a trace path, "builtin:azure-conv-like", "builtin:azure-code-like", "synthetic"
    format: str | None = None  # trace format; None = auto-detect (azure|burstgpt|mooncake|generic)
    rate_scale: float = 1.0  # > 1 compresses time (arrivals come faster): t' = t / rate_scale
    limit: int | None = None  # keep the first N requests (after the window)
    start_s: float | None = None  # time window start (trace seconds, before scaling)
    duration_s: float | None = None  # time window length (trace seconds, before scaling)
    max_prompt_tokens: int | None = None  # clamp prompts to this many tokens (counted)
    max_output_tokens: int | None = None  # clamp outputs to this many tokens (counted)
    skip_bad_rows: bool = False  # skip and count malformed rows instead of stopping
    domain_mix: DomainMix = ()  # domain weights for sources without labels; () = the default
    request_rate: float | None = None  # synthetic: req/s (inf = all at t=0); None = default
    burstiness: float | None = None  # synthetic: gamma shape (1 = Poisson); None = default
    num_requests: int | None = None  # synthetic: how many requests; None = default (1000)
    seed: int = 0  # seeds synthetic draws and domain labels

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise InputError("workload source is empty", where="source")
        synthetic = self.is_synthetic
        if synthetic and self.source != "synthetic":
            name = self.source[len(BUILTIN_PREFIX) :]
            if name not in BUILTIN:
                known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN)
                raise InputError(
                    f"unknown builtin workload {name!r} (known: {known})", where="source"
                )
        if self.format is not None:
            if self.format not in TRACE_FORMATS:
                raise InputError(f"unknown trace format {self.format!r}", where="format")
            if synthetic:
                raise InputError("format applies to trace files only", where="format")
        for name in _SYNTHETIC_ONLY:
            if not synthetic and getattr(self, name) is not None:
                hint = " (use rate_scale to speed up a trace)" if name == "request_rate" else ""
                raise InputError(f"applies to synthetic workloads only{hint}", where=name)
        _positive("rate_scale", self.rate_scale, allow_inf=False)
        _positive("duration_s", self.duration_s, allow_inf=False)
        _positive("request_rate", self.request_rate, allow_inf=True)
        _positive("burstiness", self.burstiness, allow_inf=False)
        if self.start_s is not None and not (
            _is_number(self.start_s) and 0 <= self.start_s < math.inf
        ):
            raise InputError(f"must be a finite time >= 0, got {self.start_s!r}", where="start_s")
        if not isinstance(self.skip_bad_rows, bool):
            raise InputError(
                f"must be true or false, got {self.skip_bad_rows!r}", where="skip_bad_rows"
            )
        for name in ("limit", "max_prompt_tokens", "max_output_tokens", "num_requests"):
            _whole(name, getattr(self, name), lowest=1)
        _whole("seed", self.seed, lowest=0)
        object.__setattr__(self, "domain_mix", _as_mix(self.domain_mix))

    @property
    def is_synthetic(self) -> bool:
        """True for "synthetic" and builtin workloads, False for trace files."""
        return self.source == "synthetic" or self.source.startswith(BUILTIN_PREFIX)


class Workload:
    """An iterable of ``Request`` in arrival order, streamed anew on each pass.

    ``stats`` is reset at the start of every pass and counts as rows stream; iterate one pass at
    a time.
    """

    def __init__(self, spec: WorkloadSpec, trace: TraceFile | None, load: SyntheticLoad | None):
        self.spec = spec
        self.stats = WorkloadStats()
        self._trace = trace
        self._load = load
        self._mix = spec.domain_mix or _default_mix(trace, load)
        self.label = _label(spec, trace, load)

    def __repr__(self) -> str:
        return f"Workload({self.label!r})"

    @property
    def expected(self) -> int | None:
        """Requests one pass yields, when known without reading the trace (progress totals);
        None for a trace without ``limit`` or a synthetic load cut by a time window."""
        spec = self.spec
        if self._load is None or spec.start_s or spec.duration_s is not None:
            return spec.limit if self._load is None else None
        n = self._load.num_requests
        return n if spec.limit is None else min(n, spec.limit)

    def __iter__(self) -> Iterator[Request]:
        spec, stats = self.spec, self.stats
        for name in WorkloadStats.__slots__:
            setattr(stats, name, 0)
        streams = Streams.from_seed(spec.seed)
        if self._load is not None:
            rows = request_rows(self._load, streams)
        else:
            rows = read_trace(self._trace, stats, spec.skip_bad_rows)
        draw = DomainSampler(self._mix, streams.domains).draw
        synthetic = self._load is not None  # traces count their rows as they read them
        start = spec.start_s or 0.0
        end = start + spec.duration_s if spec.duration_s is not None else math.inf
        limit = spec.limit if spec.limit is not None else math.inf
        scale = spec.rate_scale
        max_p = spec.max_prompt_tokens or math.inf
        max_o = spec.max_output_tokens or math.inf
        n = 0
        try:
            for t, prompt, output, domain in rows:
                if synthetic:
                    stats.rows_read += 1
                if t < start:
                    continue
                if t >= end:
                    break
                if prompt > max_p:
                    prompt = spec.max_prompt_tokens
                    stats.prompts_clamped += 1
                if output > max_o:
                    output = spec.max_output_tokens
                    stats.outputs_clamped += 1
                yield Request(n, (t - start) / scale, prompt, output, domain or draw())
                n += 1
                stats.requests = n
                if n >= limit:
                    break
        finally:
            rows.close()


def fit_default(spec: WorkloadSpec, cost: object) -> WorkloadSpec:
    """The default workload made to fit an engine with a short context: on a profile with a
    ``max_context`` (the CPU engine's 1,024 tokens) the default's prompts are clamped to 3/4 of
    it and outputs to 1/4 (counted and shown in the workload label) unless clamps are given.
    Any other workload is returned as is (requests too long for the engine are then rejected
    and counted, or trimmed with ``--clamp-to-context``)."""
    ctx = getattr(cost, "max_context", 0)
    if spec.source != DEFAULT_WORKLOAD or not ctx:
        return spec
    if spec.max_prompt_tokens is not None or spec.max_output_tokens is not None:
        return spec
    return replace(spec, max_prompt_tokens=ctx * 3 // 4, max_output_tokens=ctx // 4)


def open_workload(spec: WorkloadSpec) -> Workload:
    """Check what can be checked now (file readable, header, format) and return the workload."""
    if not spec.is_synthetic:
        trace = inspect_trace(spec.source, spec.format)
        if trace.has_domain and spec.domain_mix:
            raise InputError(
                "domain_mix given, but the trace labels its own domains", where="domain_mix"
            )
        return Workload(spec, trace, None)
    base = SYNTHETIC if spec.source == "synthetic" else BUILTIN[spec.source[len(BUILTIN_PREFIX) :]]
    overrides = {k: getattr(spec, k) for k in _SYNTHETIC_ONLY if getattr(spec, k) is not None}
    return Workload(spec, None, replace(base, **overrides))


def parse_domain_mix(text: str) -> DomainMix:
    """``"chat=0.6,code=0.3,math=0.1"`` -> normalised ``(("chat", 0.6), ...)``; ``"code"`` = 1."""
    pairs = []
    for item in text.split(","):
        name, sep, weight = item.partition("=")
        try:
            pairs.append((name.strip(), float(weight) if sep else 1.0))
        except ValueError:
            raise InputError(
                f"weight {weight.strip()!r} is not a number", where="domain_mix"
            ) from None
    return _as_mix(tuple(pairs))


def _as_mix(mix: object) -> DomainMix:
    """A domain mix from a string, mapping or pairs, validated and normalised to sum 1."""
    if isinstance(mix, str):
        return parse_domain_mix(mix)
    if not isinstance(mix, (Mapping, tuple, list)):
        raise InputError(f"expected name=weight pairs, got {mix!r}", where="domain_mix")
    pairs = list(mix.items()) if isinstance(mix, Mapping) else list(mix)
    if not pairs:
        return ()
    names: set[str] = set()
    for pair in pairs:
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2
        name, weight = pair if ok else (None, None)
        if not isinstance(name, str) or not name.strip() or any(c in name for c in ",= "):
            raise InputError(f"bad domain name {name!r} (want name=weight)", where="domain_mix")
        if name in names:
            raise InputError(f"domain {name!r} given twice", where="domain_mix")
        names.add(name)
        if not _is_number(weight):
            raise InputError(f"weight of {name!r} is not a number", where="domain_mix")
        if not (math.isfinite(weight) and weight >= 0):
            raise InputError(f"weight of {name!r} must be finite and >= 0", where="domain_mix")
    total = sum(w for _, w in pairs)
    if total <= 0:
        raise InputError("domain weights sum to 0", where="domain_mix")
    if math.isclose(total, 1.0, rel_tol=1e-9):  # already normalised: keep the numbers as written
        total = 1.0
    return tuple((name, float(w) / total) for name, w in pairs)


def _positive(name: str, value: float | None, *, allow_inf: bool) -> None:
    if value is None:
        return
    if not (_is_number(value) and value > 0) or (math.isinf(value) and not allow_inf):
        raise InputError(
            f"must be a {'' if allow_inf else 'finite '}number > 0, got {value}", where=name
        )


def _is_number(value: object) -> bool:
    """An int or float (not a bool), not NaN."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and not math.isnan(value)


def _whole(name: str, value: int | None, *, lowest: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise InputError(f"must be a whole number >= {lowest}, got {value!r}", where=name)


def _default_mix(trace: TraceFile | None, load: SyntheticLoad | None) -> DomainMix:
    """The domains when none is configured: the builtin's, "code" for Azure code, else chat."""
    if load is not None:
        return load.domain_mix
    if trace is not None and trace.format == "azure" and "code" in Path(trace.path).name.lower():
        return (("code", 1.0),)
    return (("chat", 1.0),)


def _label(spec: WorkloadSpec, trace: TraceFile | None, load: SyntheticLoad | None) -> str:
    """A one-line description for reports, e.g. "azure trace conv.csv (rate x2)"."""
    if load is not None:
        rate = "all at t=0" if math.isinf(load.request_rate) else f"{load.request_rate:.4g} req/s"
        head = f"{load.name} ({load.source}; {load.num_requests} requests, {rate}"
        head += f", burstiness {load.burstiness:.3g})"
    else:
        head = f"{trace.format} trace {Path(trace.path).name}"
    notes = []
    if spec.rate_scale != 1.0:
        notes.append(f"rate x{spec.rate_scale:g}")
    if spec.start_s is not None or spec.duration_s is not None:
        end = "end" if spec.duration_s is None else f"{(spec.start_s or 0) + spec.duration_s:g}s"
        notes.append(f"window {spec.start_s or 0:g}s-{end}")
    if spec.limit is not None:
        notes.append(f"first {spec.limit}")
    if spec.max_prompt_tokens is not None:
        notes.append(f"prompt <= {spec.max_prompt_tokens}")
    if spec.max_output_tokens is not None:
        notes.append(f"output <= {spec.max_output_tokens}")
    if spec.domain_mix:
        notes.append("domains " + ",".join(f"{n}={w:.3g}" for n, w in spec.domain_mix))
    return head + (f" ({', '.join(notes)})" if notes else "")
