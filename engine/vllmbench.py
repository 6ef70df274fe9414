"""A replay against a live ``vllm serve``, summarised in the simulator's own schema.

:func:`replay` starts the server (:mod:`engine.serve`), scrapes ``/metrics``, sends the workload
(:mod:`engine.bench`), scrapes again, stops the server, and returns the simulator's
:class:`~simulator.metrics.Recorder` filled with the completed requests plus a summary with the
same keys as ``spectune replay`` (``requests_completed`` … ``wall``) and a ``vllm`` block.

Where each figure comes from (measured, never modelled):

- per request (client side, wall clock of this process): arrival = when the request was sent,
  TTFT, TPOT, ITL (mean time between the request's token-bearing stream chunks), E2E. The queue
  delay inside the server is not visible per request (``admitted`` is empty, ``queue_*`` null);
  ``decode_steps`` is the request's stream chunks after the first, a lower bound of its decode
  steps (vLLM merges deltas when the client reads late); per-request ``verified``/``accepted``
  are not visible and left empty;
- totals (the server's counters, after − before): ``mean_accepted_len`` = 1 + accepted / drafts
  (vLLM's mean acceptance length: tokens per request-step with bonus, as the simulator's),
  ``mean_verify_len`` = draft tokens / drafts, ``decode_steps`` = engine iterations
  (``vllm:iteration_tokens_total`` count, prefill steps included), ``mean_batch_tokens`` =
  tokens per iteration, ``mean_batch_size`` = drafts per iteration (requests drafting per step).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import bench, serve
from profiles.vllm import VllmCounters, counters_since, parse_prometheus, vllm_counters
from simulator.metrics import Recorder
from simulator.request import Request

NAN = float("nan")


@dataclass(frozen=True)
class Setup:
    """One live replay: the server, how to load it, and its start-up timeout."""

    serve: serve.ServeConfig
    load: bench.Load
    startup_timeout_s: float = 300.0


def replay(requests: list[Request], setup: Setup, out: Path, seed: int,
           on_done=None) -> tuple[dict[str, Any], Recorder]:  # fmt: skip
    """Serve, send, scrape (see module doc); ``server.log`` and both scrapes go to ``out``."""
    t0 = time.perf_counter()
    with Session(setup, out) as session:
        summary, rec = session.run(requests, setup.load, seed, out, on_done)
    summary["vllm"]["startup_s"] = round(session.startup_s, 2)
    summary["wall"] = {"wall_s": time.perf_counter() - t0, "load_s": summary["wall"]["load_s"]}
    return summary, rec


class Session:
    """``with Session(setup, out) as s: s.run(requests, load, seed, run_dir)`` — one running
    ``vllm serve`` (log in ``out/server.log``) that several workloads are replayed against in
    turn, each scraped before and after and summarised on its own (see module doc)."""

    def __init__(self, setup: Setup, out: Path) -> None:
        self.setup, self.log = setup, Path(out) / "server.log"
        self._served: serve.Served | None = None
        self.startup_s = 0.0
        self.last_outcomes: list[bench.Outcome] = []  # the last run's requests and logged steps
        self.last_steps: list[dict[str, float]] = []

    def __enter__(self) -> Session:
        self._served = serve.Served(self.setup.serve, self.log, self.setup.startup_timeout_s)
        self._served.__enter__()
        self.startup_s = self._served.startup_s
        return self

    def __exit__(self, *exc) -> None:
        if self._served is not None:
            self._served.stop()

    def scrape(self, path: Path) -> None:
        path.write_text(self._served.metrics())

    def run(self, requests: list[Request], load: bench.Load, seed: int, out: Path,
            on_done=None) -> tuple[dict[str, Any], Recorder]:  # fmt: skip
        """One workload: its scrapes, ``steps.csv`` (the server's steps during it) and summary
        in ``out``."""
        from engine.data import load_all

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        domains = tuple(sorted({r.domain for r in requests}))
        todo = bench.jobs(requests, seed, load_all("heldout", domains))
        before = len(steps(self.log))
        self.scrape(out / "metrics-before.prom")
        t1 = time.perf_counter()
        outs = bench.run(self._served.url, self.setup.serve.served_name, todo, load, on_done)
        sent_s = time.perf_counter() - t1
        self.scrape(out / "metrics-after.prom")
        time.sleep(0.3)  # the stat logger's last lines
        logged = steps(self.log)[before:]
        self.last_outcomes, self.last_steps = outs, logged
        return _summary(outs, todo, logged, self.setup, load, out, self.log, sent_s)


def _summary(outs, todo, logged, setup: Setup, load: bench.Load, out: Path, log: Path,
             sent_s: float) -> tuple[dict[str, Any], Recorder]:  # fmt: skip
    rec = recorder(outs)
    summary = rec.summary()
    if logged:
        _write_steps(out / "steps.csv", logged)
    summary.update(totals(out / "metrics-after.prom", out / "metrics-before.prom",
                          setup.serve.speculative is not None))  # fmt: skip
    failed = [o for o in outs if not o.ok]
    gaps = np.array([g for o in outs if o.ok for g in o.gaps])
    lag = [o.sent - j.arrival_s for o, j in zip(outs, todo, strict=True) if o.sent == o.sent]
    summary["vllm"] = {
        "argv": setup.serve.argv(0)[3:],  # after the launcher; port 0 = the free port chosen
        "speculative_config": setup.serve.speculative,
        "log": str(log),
        "scrapes": [str(out / "metrics-before.prom"), str(out / "metrics-after.prom")],
        "startup_s": None,
        "loop": f"closed, concurrency {load.concurrency}"
        if load.concurrency
        else "open (workload arrivals)",
        "time_limit_s": load.time_limit_s,
        "temperature": load.temperature,
        "requests_sent": sum(o.sent == o.sent for o in outs),
        "requests_failed": len(failed),
        "failures": sorted({o.error for o in failed})[:5],
        "stream_gap_p50_s": float(np.percentile(gaps, 50)) if gaps.size else None,
        "stream_gap_p99_s": float(np.percentile(gaps, 99)) if gaps.size else None,
        "send_lag_max_s": max(lag) if lag and not load.concurrency else None,
        "http_client": "aiohttp",
        "logged_steps": len(logged),
        "logged_step_ms_mean": float(np.mean([r["elapsed_ms"] for r in logged]))
        if logged
        else None,
    }
    summary["wall"] = {"wall_s": sent_s, "load_s": sent_s}
    return summary, rec


_ITERATION = re.compile(
    r"Iteration\((\d+)\): (\d+) context requests, (\d+) context tokens, (\d+) generation "
    r"requests, (\d+) generation tokens, iteration elapsed time: ([\d.]+) ms"
)
STEP_FIELDS = ("index", "ctx_requests", "ctx_tokens", "gen_requests", "gen_tokens", "elapsed_ms")


def steps(log: Path) -> list[dict[str, float]]:
    """vLLM's per-step log lines (``--enable-logging-iteration-details``) in ``log``, in order."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _ITERATION.search(line)
        if m and "(dummy)" not in line:
            vals = [int(x) for x in m.groups()[:5]] + [float(m.group(6))]
            out.append(dict(zip(STEP_FIELDS, vals, strict=True)))
    return out


def logged_decode_steps(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The logged steps that only decode (no prefill chunk in them)."""
    return [r for r in rows if r["gen_requests"] > 0 and not r["ctx_requests"]]


def decode_span_s(outs: list[bench.Outcome]) -> float:
    """Σ over the completed requests of first token → last token (client side): the decode
    steps' wall time, as a request's TPOT sees it."""
    return sum(o.finish - o.first for o in outs if o.ok and o.tokens > 1)


def speed_measurement(outs: list[bench.Outcome], rows: list[dict[str, float]]) -> dict[str, Any]:
    """Wall seconds per decode step of one-at-a-time requests (closed loop at concurrency 1):
    their decode span over the server's logged decode steps, with the steps' token counts
    (``[[tokens, steps], ...]``: 1 + K drafted) for pricing the same steps by a profile."""
    dec = [r for r in logged_decode_steps(rows) if r["gen_requests"] == 1]
    if not dec:
        raise ValueError("a speed reference needs the server's one-request decode steps in "
                         "its log (--enable-logging-iteration-details, concurrency 1)")  # fmt: skip
    tokens: dict[int, int] = {}
    for r in dec:
        tokens[int(r["gen_tokens"])] = tokens.get(int(r["gen_tokens"]), 0) + 1
    span = decode_span_s(outs)
    return {"requests": sum(o.ok for o in outs), "decode_steps": len(dec),
            "decode_span_s": span, "wall_per_step_s": span / len(dec),
            "logged_step_ms_mean": float(np.mean([r["elapsed_ms"] for r in dec])),
            "step_tokens": [[g, n] for g, n in sorted(tokens.items())]}  # fmt: skip


def table_check(rows: list[dict[str, float]], k_of) -> dict[str, float]:
    """Drafted tokens per draft the log shows against a batch-size → K table at the batch sizes
    the server ran: a decode request of step s verifies what was drafted at step s−1 with
    ``k_of(R)``, R = the requests scheduled at s−1 (vLLM's lookup index)."""
    drafts = verified = expected = 0.0
    for prev, cur in zip(rows, rows[1:], strict=False):
        if cur["index"] != prev["index"] + 1 or not cur["gen_requests"]:
            continue
        n = cur["gen_requests"]
        drafts += n
        verified += cur["gen_tokens"] - n
        expected += n * k_of(int(prev["ctx_requests"] + prev["gen_requests"]))
    if not drafts:
        return {"decode_requests": 0, "log_tokens_per_draft": None, "table_tokens_per_draft": None}
    return {"decode_requests": int(drafts), "log_tokens_per_draft": verified / drafts,
            "table_tokens_per_draft": expected / drafts}  # fmt: skip


def recorder(outs: list[bench.Outcome]) -> Recorder:
    """The simulator's recorder over the completed requests (see module doc for each column)."""
    rec = Recorder()
    for o in sorted((o for o in outs if o.ok), key=lambda o: o.sent):
        req = Request(o.id, o.sent, o.prompt_tokens, o.tokens, o.domain)
        rec.finish(req, NAN, o.first, o.finish, (max(o.chunks - 1, 0), NAN, NAN))
    return rec


def totals(after: Path, before: Path, speculative: bool) -> dict[str, Any]:
    """The summary keys the server's counters give (after − before)."""
    it = {k: _sum(after, k) - _sum(before, k) for k in
          ("vllm:iteration_tokens_total_count", "vllm:iteration_tokens_total_sum",
           "vllm:num_preemptions_total", "vllm:generation_tokens_total")}  # fmt: skip
    steps = it["vllm:iteration_tokens_total_count"]
    out: dict[str, Any] = {
        "decode_steps": int(steps),
        "mean_batch_tokens": it["vllm:iteration_tokens_total_sum"] / steps if steps else 0.0,
        "preemptions": int(it["vllm:num_preemptions_total"]),
        "engine_busy_fraction": None,
        "max_concurrency_seen": None,
    }
    if not speculative:
        none = {"mean_accepted_len": 1.0, "mean_verify_len": 0.0, "wasted_verify_tokens": 0,
                "mean_batch_size": None, "spec_decode": None}  # fmt: skip
        return {**out, **none}
    c = counters_since(vllm_counters(after), vllm_counters(before), str(after))
    return {
        **out,
        "mean_accepted_len": c.mean_acceptance_length if c.drafts else 1.0,
        "mean_verify_len": c.draft_tokens / c.drafts if c.drafts else 0.0,
        "wasted_verify_tokens": int(c.draft_tokens - c.accepted),
        "mean_batch_size": c.drafts / steps if steps else None,
        "spec_decode": _counters(c),
    }


def _counters(c: VllmCounters) -> dict[str, Any]:
    return {"drafts": int(c.drafts), "draft_tokens": int(c.draft_tokens),
            "accepted_tokens": int(c.accepted), "accepted_per_pos": [int(x) for x in c.per_pos],
            "draft_tokens_per_draft": c.draft_tokens / c.drafts if c.drafts else None}  # fmt: skip


def _write_steps(path: Path, rows: list[dict[str, float]]) -> None:
    lines = [",".join(STEP_FIELDS)] + [",".join(f"{r[f]:g}" for f in STEP_FIELDS) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def _sum(path: Path, name: str) -> float:
    return sum(s.value for s in parse_prometheus(path.read_text(), str(path)) if s.name == name)
