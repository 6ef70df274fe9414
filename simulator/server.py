"""SimPy model of a continuous-batching speculative-decoding server (DESIGN §2, the decode step).

Two processes, one per actor:

- ``arrivals`` walks the workload (a stream, never a list) and puts each request in the FCFS
  queue at its arrival time;
- ``engine`` loops over steps: admit from the queue head while the concurrency cap and the KV
  budget allow; prefill admitted prompts in chunks (FCFS, at most ``max_prefill_tokens`` per
  step, as chunked prefill in vLLM and SGLang) and run one decode step over the running batch R:
  the backend drafts confidences ``conf [R, γ]``, the policy picks verify lengths ``ℓ [R]``, the
  target verifies ``B = Σ (1 + ℓ)`` tokens, each request gains ``min(A, ℓ) + 1`` tokens;
  simulated time advances by the backend's step time.

A request's first token comes from the step that finishes its prompt (TTFT); it decodes from
the next step on and leaves when it has all its output tokens (surplus accepted tokens of its
last step are dropped). KV admission reserves prompt + output + γ tokens per request; a request
that could never fit is counted in ``requests_rejected_too_long`` and skipped, never crashed on.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import numpy as np
import simpy

from policies.base import Policy, StepContext
from policies.history import History, lag_of
from profiles.errors import InputError
from simulator.backend import Backend, StepShape
from simulator.eligibility import declined
from simulator.metrics import Recorder
from simulator.request import Request

PREFILL_MODES = ("colocated", "disaggregated")


@dataclass(frozen=True)
class ServerConfig:
    """The serving engine's admission limits."""

    max_concurrency: int = 64  # running requests at most (decode batch size cap)
    kv_capacity_tokens: int = 0  # KV cache tokens; 0 = unlimited
    max_prefill_tokens: int = 2048  # chunked prefill: prompt tokens prefilled per step at most
    gamma: int = 7  # drafts proposed per request per step
    clamp_to_context: bool = False  # trim requests longer than the engine's context (counted)
    # "colocated": prompts are prefilled in chunks inside the decode steps of this server;
    # "disaggregated": a decode-only instance, each request arriving after its prefill time on
    # a prefill instance (the cost model's prefill term) with its KV ready (Mooncake, DeepSeek)
    prefill: str = "colocated"

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise InputError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.kv_capacity_tokens < 0:
            raise InputError(f"kv_capacity_tokens must be >= 0, got {self.kv_capacity_tokens}")
        if self.max_prefill_tokens < 1:
            raise InputError(f"max_prefill_tokens must be >= 1, got {self.max_prefill_tokens}")
        if not 1 <= self.gamma <= 64:
            raise InputError(f"gamma must be in 1..64, got {self.gamma}")
        if self.prefill not in PREFILL_MODES:
            raise InputError(f"prefill must be one of {', '.join(PREFILL_MODES)}, "
                             f"not {self.prefill!r}")  # fmt: skip


@dataclass
class Batch:
    """The decode batch: one entry per running request, in admission order (int64 arrays)."""

    slots: np.ndarray  # the request's batch slot
    left: np.ndarray  # output tokens it still has to generate
    verified: np.ndarray  # drafts verified so far
    gained: np.ndarray  # tokens gained so far (bonus included)
    joined: np.ndarray  # decode-step count when it joined (its steps = the count now − this)
    size: np.ndarray  # prompt + output tokens (its KV length is this minus the tokens left)

    @classmethod
    def of(cls, **columns: object) -> Batch:
        return cls(**{n: np.asarray(columns.get(n, ()), dtype=np.int64) for n in _COLUMNS})

    def extend(self, other: Batch) -> None:
        for n in _COLUMNS:
            setattr(self, n, np.concatenate((getattr(self, n), getattr(other, n))))

    def keep(self, mask: np.ndarray) -> None:
        for n in _COLUMNS:
            setattr(self, n, getattr(self, n)[mask])


_COLUMNS = tuple(f.name for f in fields(Batch))  # the batch's columns (the hot path's field list)


class Server:
    """One simulated server: build it, then :meth:`run` a workload through it."""

    def __init__(
        self,
        config: ServerConfig,
        policy: Policy,
        backend: Backend,
        *,
        cost: object = None,
        seed: int = 0,
        on_request: Callable[[Request], None] | None = None,
        compiled: bool = True,
    ) -> None:
        self.config, self.policy, self.backend = config, policy, backend
        self.env = simpy.Environment()
        self.recorder = Recorder()
        self.queue: deque[Request] = deque()
        self.on_request = on_request  # called per arrival (progress bars)
        self._wake: simpy.Event | None = None
        self._arrivals_done = False
        cap = config.max_concurrency
        self._free = list(range(cap - 1, -1, -1))  # free slots, pop() gives the lowest
        self._req: list[Request | None] = [None] * cap
        self._admitted = np.zeros(cap)  # admission time per slot
        self._first = np.zeros(cap)  # first-token time per slot
        self._stats: list[tuple[int, int, int]] = [(0, 0, 0)] * cap  # steps, verified, accepted
        self.batch = Batch.of()  # the running requests
        self._kv_running = 0  # Σ KV length over the decode batch
        self._tokens = 0  # decode tokens generated so far (the running rate's numerator)
        self._decode_s = 0.0  # busy seconds of decode work, prefill excluded (its denominator)
        self._prefill_time = getattr(cost, "prefill_time", lambda tokens: 0.0)
        # Disaggregated prefill: an admitted request's prompt runs on a prefill instance (its
        # own forward, no queue there) while its KV space waits here; it decodes from the first
        # step after its KV arrives, its first token the prefill's. Heap of (ready, slot, req).
        self._disaggregated = config.prefill == "disaggregated"
        self._transfers: list[tuple[float, int, Request]] = []
        # How the step's attended KV tokens are counted (see profiles/cost.py): the sum over the
        # batch, or requests × the longest context for engines that pad to it.
        self._padded = getattr(backend, "context_basis", "total") == "padded"
        self._kv_used = 0
        self._prefilling: deque[list] = deque()  # [slot, request, prompt tokens left], FCFS
        self.now = 0.0  # the engine's clock (simulated seconds), see _engine
        self.ctx = StepContext(
            cost=cost,  # the cost model cost-aware policies plan with
            rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,))),
        )
        if hasattr(backend, "drafts"):  # a profiled backend prices the draft pass the policy needs
            backend.drafts = policy.draft_tokens(config.gamma)
        self.history = History(cap, config.gamma, lag_of(policy))  # what the policy sees
        # The compiled step path (simulator/compiled.py) where simulator/eligibility.py finds it
        # applies; ``compiled=False`` keeps the reference step for every step.
        self._fast = None
        self.fast_declined = "compiled=False"  # why the reference step runs (None: it does not)
        if compiled:
            self.fast_declined = declined(policy, backend, cost, config)
        if self.fast_declined is None:
            try:  # numba is imported only when used (and a checkout without it runs the reference)
                from simulator.compiled import FastPath
            except ImportError:
                self.fast_declined = "numba is not installed"
            else:
                lag = self.history.lag
                self._fast = FastPath.build(policy, backend, cost, config.gamma, lag)

    # -- processes ---------------------------------------------------------------------------------
    def run(self, workload: Iterable[Request]) -> Recorder:
        self.env.process(self._arrivals(workload))
        self.env.process(self._engine())
        self.env.run()
        return self.recorder

    def _arrivals(self, workload: Iterable[Request]):
        env = self.env
        for req in workload:
            if req.arrival_s > env.now:
                yield env.timeout(req.arrival_s - env.now)
            if self.on_request:
                self.on_request(req)
            self.queue.append(req)
            if self._wake is not None and not self._wake.triggered:
                self._wake.succeed()
        self._arrivals_done = True
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _engine(self):
        """The step loop. ``self.now`` is the engine's clock; it may run ahead of ``env.now``
        while no other event is due (a step that ends before the next arrival needs no SimPy
        event), and it syncs with SimPy before any step whose start an arrival could change.
        The schedule is exactly that of yielding one timeout per step."""
        env, rec = self.env, self.recorder
        while True:
            if env.peek() <= self.now:  # something (an arrival) is due: let SimPy run it first
                yield env.timeout(self.now - env.now)
            self._admit()
            chunk, prefilled = self._schedule_prefill()
            if not chunk and not prefilled and not self.batch.slots.size:
                if self._arrivals_done and not self.queue and not self._transfers:
                    return
                if self.now > env.now:
                    yield env.timeout(self.now - env.now)
                    continue
                self._wake = env.event()
                if self._transfers:  # disaggregated: the next KV to arrive, or an arrival
                    yield self._wake | env.timeout(self._transfers[0][0] - env.now)
                else:
                    yield self._wake
                self._wake = None
                self.now = env.now
                continue
            if prefilled:
                self.backend.prefill(prefilled)
            if self._fast is not None and self.batch.slots.size:  # decode steps up to an event
                left = self._fast.steps(self, chunk, env.peek(), bool(prefilled))
            else:
                dt, left = self._decode_step(chunk)
                self.now += dt
                rec.busy_s += dt
            self._complete(left)
            self._start_decoding(prefilled)

    # -- admission and chunked prefill -------------------------------------------------------------
    def _admit(self) -> None:
        """Move requests from the queue head into slots while the cap and the KV budget allow."""
        cfg, queue = self.config, self.queue
        while queue and self._free:
            req = queue[0]
            need = req.prompt_tokens + req.output_tokens + cfg.gamma
            if cfg.kv_capacity_tokens and need > cfg.kv_capacity_tokens:
                queue.popleft()
                self.recorder.rejected_too_long += 1
                continue
            if cfg.kv_capacity_tokens and self._kv_used + need > cfg.kv_capacity_tokens:
                break
            queue.popleft()
            self._kv_used += need
            slot = self._free.pop()
            self._req[slot] = req
            self._admitted[slot] = self.now
            if self._disaggregated:
                ready = self.now + (
                    self._prefill_time(req.prompt_tokens) if req.prompt_tokens else 0.0
                )
                heapq.heappush(self._transfers, (ready, slot, req))
                self._first[slot] = ready
            else:
                self._prefilling.append([slot, req, req.prompt_tokens])

    def _schedule_prefill(self) -> tuple[int, list[tuple[int, Request]]]:
        """This step's prefill chunks, FCFS within the token budget; returns the tokens and the
        requests whose prompt completes in this step."""
        if self._disaggregated:  # no prefill here: the requests whose KV has arrived
            done = []
            while self._transfers and self._transfers[0][0] <= self.now:
                _, slot, req = heapq.heappop(self._transfers)
                done.append((slot, req))
            return 0, done
        budget, done = self.config.max_prefill_tokens, []
        for entry in self._prefilling:
            if budget == 0:
                break
            take = min(entry[2], budget)
            entry[2] -= take
            budget -= take
            if entry[2] == 0:
                done.append((entry[0], entry[1]))
        for _ in done:
            self._prefilling.popleft()
        return self.config.max_prefill_tokens - budget, done

    def _start_decoding(self, prefill: list[tuple[int, Request]]) -> None:
        """Prefilled requests got their first token at this instant; they decode from now on."""
        if not prefill:
            return
        now, joined = self.now, []
        for slot, req in prefill:
            if not self._disaggregated:  # disaggregated: the prefill's, set at admission
                self._first[slot] = now
            if req.output_tokens <= 1:
                self._stats[slot] = (0, 0, 0)
                self._retire(slot)
            else:
                self.backend.join(slot, req)
                joined.append(slot)
        if joined:
            reqs = [self._req[s] for s in joined]
            zeros = [0] * len(joined)
            self.batch.extend(Batch.of(
                slots=joined, left=[r.output_tokens - 1 for r in reqs], verified=zeros,
                gained=zeros, joined=[self.recorder.decode_steps] * len(joined),
                size=[r.prompt_tokens + r.output_tokens for r in reqs]))  # fmt: skip
            self._kv_running += sum(r.prompt_tokens + 1 for r in reqs)
        self.recorder.max_running = max(self.recorder.max_running, self.batch.slots.size)

    # -- one decode step ---------------------------------------------------------------------------
    def _decode_step(self, prefill_tokens: int) -> tuple[float, np.ndarray]:
        """Decide and account one step; returns its duration and a mask of finishing requests."""
        batch, backend = self.batch, self.backend
        slots = batch.slots
        r = slots.size
        if not r:
            return backend.step_time(StepShape(0, 0, 0, prefill_tokens)), None
        left = batch.left
        kv = r * int((batch.size - left).max()) if self._padded else self._kv_running
        ctx = self._context(slots, conf := backend.draft(slots))  # conf [R, γ]
        ctx.kv_tokens, ctx.prefill_tokens = kv, prefill_tokens
        busy = self._decode_s
        ctx.rate = self._tokens / busy if busy > 0 else 0.0  # running tokens per decode second
        lengths = self.policy.decide(conf, None, ctx)  # [R]
        gained = backend.verify(slots, lengths)  # [R] = min(A, ℓ) + 1
        if "history" in self.policy.reads:
            self.history.count(slots, gained - 1, lengths)
        verified = int(lengths.sum())
        shape = StepShape(r, r + verified, kv, prefill_tokens, int(lengths.max()) + 1)
        dt = backend.step_time(shape)
        self._decode_s += dt - (self._prefill_time(prefill_tokens) if prefill_tokens else 0.0)
        self.recorder.step(r, r + verified, verified, int(gained.sum()))
        take = np.minimum(gained, left)
        left -= take
        batch.verified += lengths
        batch.gained += gained
        self._kv_running += int(take.sum())
        self._tokens += int(take.sum())
        return dt, left

    def _context(self, slots: np.ndarray, conf: np.ndarray) -> StepContext:
        ctx, reads = self.ctx, self.policy.reads
        ctx.step += 1
        if "realized" in reads:
            ctx.accepted = self.backend.accepted(slots)
        for key, value in self.history.inputs(self.policy, slots, ctx.step).items():
            setattr(ctx, key, value)
        self.history.record(slots, ctx.step, conf)
        return ctx

    def _complete(self, left: np.ndarray | None) -> None:
        """Retire the running requests with no tokens left (``left`` aligned with the batch)."""
        if left is None or left.min() > 0:
            return
        done = left == 0
        keep = ~done
        b = self.batch
        ver, gain, joined_at = b.verified, b.gained, b.joined
        for i in np.flatnonzero(done).tolist():
            slot = int(b.slots[i])
            steps = self.recorder.decode_steps - int(joined_at[i])
            self._stats[slot] = (steps, int(ver[i]), int(gain[i]) - steps)
            self._kv_running -= self._req[slot].prompt_tokens + self._req[slot].output_tokens
            self.backend.leave(slot)
            self._retire(slot)
        b.keep(keep)

    def _retire(self, slot: int) -> None:
        req = self._req[slot]
        self.recorder.finish(
            req, self._admitted[slot], self._first[slot], self.now, self._stats[slot]
        )
        self._kv_used -= req.prompt_tokens + req.output_tokens + self.config.gamma
        self._req[slot] = None
        self.history.clear(slot)
        self._free.append(slot)
