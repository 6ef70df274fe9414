"""The closed loop: N users always busy, and the metrics of its steady window.

A closed loop at concurrency N (the paper's Figures 7–8) queues every request at t = 0 behind a
concurrency cap of N, so a finished request is replaced at once by the next. Its *steady window*
runs from the moment N requests have their first token to the last admission (after it the
batch only drains): throughput counts the tokens generated inside the window (a request's decode
tokens spread evenly over its decode span), per-request metrics use the requests that lived
entirely inside it (the percentiles of ``simulator/metrics.py``), and TTFT is first token −
admission (the queue in front of a closed loop is an artefact, not waiting users). With fewer
than ``MIN_WINDOW_REQUESTS`` requests inside the window the whole run is used instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from simulator.metrics import Recorder, percentiles
from simulator.request import Request
from simulator.workload import WorkloadSpec, open_workload

MIN_WINDOW_REQUESTS = 8  # fewer requests inside the steady window → whole-run fallback


def closed_loop(spec: WorkloadSpec, n: int) -> Iterator[Request]:
    """The first ``n`` requests of ``spec`` (a synthetic one drawn as if all at once), every
    arrival at t = 0."""
    if spec.is_synthetic:
        base = open_workload(replace(spec, request_rate=math.inf, num_requests=n))
    else:
        base = open_workload(replace(spec, limit=min(spec.limit or n, n)))
    return (Request(r.id, 0.0, r.prompt_tokens, r.output_tokens, r.domain)
            for r in itertools.islice(base, n))  # fmt: skip


def steady_metrics(recorder: Recorder, n: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Closed-loop metrics over the steady window of a run at concurrency ``n`` (see the module
    docstring); ``names`` are the metric keys reported None when nothing finished."""
    r = recorder.per_request()
    first, finish, admitted = r["first_token"], r["finish"], r["admitted"]
    out = r["output_tokens"]
    if first.size == 0:
        return {k: None for k in names} | {"window_s": 0.0, "window_requests": 0,
                                           "steady": False}  # fmt: skip
    t0 = float(np.sort(first)[min(n, first.size) - 1])
    t1 = float(admitted.max())
    inside = (first >= t0) & (finish <= t1)
    steady = t1 > t0 and int(inside.sum()) >= MIN_WINDOW_REQUESTS
    if not steady:  # too few requests for a steady state: whole run instead
        t0, t1 = float(first.min()), float(finish.max())
        inside = np.ones(first.size, dtype=bool)
    span = max(t1 - t0, 1e-12)
    decode = np.maximum(finish - first, 1e-12)
    overlap = np.clip(np.minimum(finish, t1) - np.maximum(first, t0), 0.0, None)
    tokens = ((first >= t0) & (first <= t1)) + (out - 1) * overlap / decode
    m: dict[str, Any] = {"throughput_tok_s": float(tokens.sum() / span)}
    for key, values in (("tps_per_user", r["tps_per_user"]), ("ttft_s", first - admitted),
                        ("tpot_s", r["tpot_s"])):  # fmt: skip
        m.update(percentiles(key, values[inside]))
    steps = r["decode_steps"][inside].sum()
    m["mean_verify_len"] = float(r["verified"][inside].sum() / steps) if steps else 0.0
    m["mean_accepted_len"] = (float((r["accepted"][inside].sum() + steps) / steps)
                              if steps else 0.0)  # fmt: skip
    m["mean_batch_size"] = float(overlap.sum() / span)
    m.update(window_s=span, window_requests=int(inside.sum()), steady=bool(steady))
    return m
