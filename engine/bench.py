"""A load generator for a running vLLM server: token-id prompts over the OpenAI-compatible
streaming completions API, open or closed loop, bounded in count and time.

:func:`jobs` turns simulator requests into :class:`Job` s: a held-out prompt of the request's
domain (byte token ids, chosen by request id from one seed, as the live backend does) of its
prompt length, and its output length; lengths were clamped to the model's context before (the
caller reports the clamps). :func:`run` sends them with ``aiohttp`` (a dependency of vLLM itself,
so present wherever the server is): ``POST /v1/completions`` with ``prompt`` = the token ids,
``max_tokens`` = ``min_tokens`` = the output length, ``ignore_eos``, ``stream``,
``return_token_ids`` (each chunk carries its new token ids) and no per-request seed (vLLM 0.32 on
CPU fails a seeded request whose prefill is chunked). Open loop: each job is sent at its arrival
time; closed loop (``concurrency`` N): N jobs in flight, the next sent when one finishes. New
sends stop at ``time_limit_s``; requests still running then are cancelled and counted.

Per request (:class:`Outcome`): send time, first token, finish, tokens received and the stream
chunks that carried tokens. One chunk is at most one engine step, but vLLM merges the deltas of
several steps when the client reads late (``RequestOutputCollector``), so ``chunks − 1`` is a
lower bound of the request's decode steps; the server's own counters (``/metrics``) give the
step and acceptance totals. Nothing here parses arguments or prints.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PROMPT_STREAM = 3  # spawn-key tag of per-request prompt choice (as engine/live.py)


@dataclass(frozen=True)
class Job:
    id: int
    arrival_s: float  # send time in the open loop (seconds after the start)
    prompt: tuple[int, ...]  # token ids
    output_tokens: int
    domain: str


@dataclass
class Outcome:
    id: int
    domain: str
    prompt_tokens: int
    output_tokens: int  # asked for
    sent: float = float("nan")  # seconds after the start
    first: float = float("nan")  # first token received
    finish: float = float("nan")  # last byte of the stream
    tokens: int = 0  # tokens received
    chunks: int = 0  # stream chunks that carried tokens
    gaps: list[float] = field(default_factory=list)  # seconds between token-bearing chunks
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.tokens == self.output_tokens


def jobs(requests: Iterable, seed: int, corpora: dict) -> list[Job]:
    """A :class:`Job` per simulator request: a held-out prompt of its domain, chosen by id."""
    out = []
    for req in requests:
        corpus = corpora.get(req.domain)
        if corpus is None:
            raise ValueError(f"no corpus for domain {req.domain!r} ({', '.join(corpora)})")
        data = corpus.data
        n = int(req.prompt_tokens)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PROMPT_STREAM, req.id)))
        start = int(rng.integers(0, len(data) - n))
        prompt = tuple(int(b) for b in data[start : start + n])
        out.append(Job(int(req.id), float(req.arrival_s), prompt, int(req.output_tokens),
                       req.domain))  # fmt: skip
    return out


@dataclass(frozen=True)
class Load:
    """How to send: open loop by arrivals (``concurrency`` 0) or closed loop at a concurrency."""

    concurrency: int = 0
    time_limit_s: float = 600.0  # no new sends after this; running requests then cancelled
    request_timeout_s: float = 300.0
    temperature: float = 1.0


def run(url: str, model: str, todo: list[Job], load: Load, on_done=None) -> list[Outcome]:
    """Send every job (see module doc); one :class:`Outcome` per job, in job order."""
    return asyncio.run(_run(url, model, todo, load, on_done))


async def _run(url: str, model: str, todo: list[Job], load: Load, on_done) -> list[Outcome]:
    import aiohttp

    outs = [Outcome(j.id, j.domain, len(j.prompt), j.output_tokens) for j in todo]
    timeout = aiohttp.ClientTimeout(total=load.request_timeout_s)
    conn = aiohttp.TCPConnector(limit=0)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:

        async def one(i: int) -> None:
            await _send(session, f"{url}/v1/completions", model, todo[i], outs[i], load, t0)
            if on_done is not None:
                on_done(outs[i])

        tasks: list[asyncio.Task] = []
        deadline = t0 + load.time_limit_s
        if load.concurrency:
            queue = iter(range(len(todo)))

            async def worker() -> None:
                for i in queue:
                    if time.perf_counter() >= deadline:
                        return
                    await one(i)

            tasks = [asyncio.create_task(worker()) for _ in range(load.concurrency)]
        else:
            for i, job in enumerate(todo):
                delay = t0 + job.arrival_s - time.perf_counter()
                if t0 + job.arrival_s >= deadline:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
        left = max(deadline - time.perf_counter(), 0.0)
        done, pending = await asyncio.wait(tasks, timeout=left) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for o in outs:
        if not o.error and o.tokens < o.output_tokens:
            o.error = "not sent (time limit)" if o.sent != o.sent else "cancelled at time limit"
    return outs


async def _send(session, url: str, model: str, job: Job, out: Outcome, load: Load, t0: float):
    body = {"model": model, "prompt": list(job.prompt), "max_tokens": job.output_tokens,
            "min_tokens": job.output_tokens, "ignore_eos": True, "stream": True,
            "return_token_ids": True, "temperature": load.temperature,
            "stream_options": {"include_usage": True}}  # fmt: skip
    out.sent = time.perf_counter() - t0
    last = None
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                out.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                n = _tokens(json.loads(data))
                if n:
                    now = time.perf_counter() - t0
                    if last is None:
                        out.first = now
                    else:
                        out.gaps.append(now - last)
                    last = now
                    out.tokens += n
                    out.chunks += 1
        out.finish = time.perf_counter() - t0
    except asyncio.CancelledError:
        out.error = "cancelled at time limit"
        raise
    except Exception as exc:  # network errors, timeouts, malformed stream: recorded per request
        out.error = f"{type(exc).__name__}: {exc}"[:200]


def _tokens(chunk: dict) -> int:
    choices = chunk.get("choices") or []
    return sum(len(c.get("token_ids") or []) for c in choices)


def scrape(url: str) -> str:
    """One scrape of the server's ``/metrics``."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        return r.read().decode("utf-8")
