"""What runs one decode step: the seam between the server model and an engine.

The server (``simulator/server.py``) owns admission, the batch, the policy call and metrics; a
backend owns what a step costs and what the drafter and target produce:

- ``prefill(entries)``: the prompts of ``[(slot, request)]`` complete in this step (called before
  the step's decode; a live engine runs the prefill here, its time counts in this step);
- ``join(slot, request)`` / ``leave(slot)``: a request enters or leaves the running batch;
- ``draft(slots) -> conf [R, γ]``: the drafter's confidences for the running requests;
- ``accepted(slots) -> A [R]``: accepted drafts if all γ were verified (oracle policies only);
- ``verify(slots, lengths) -> gained [R]``: tokens each request gains, ``min(A, ℓ) + 1``;
- ``step_time(StepShape) -> seconds`` of the step: its requests, verify batch tokens B, KV
  tokens, co-batched prefill tokens and ``longest`` (the most verify tokens of one request,
  ``1 + max ℓ``); ``kv_tokens`` counts the KV tokens attention reads on the backend's
  ``context_basis``: the sum over the batch (``total``) or requests × the longest context
  (``padded``), see ``profiles/cost.py``.

``ProfiledBackend`` answers from a cost model and an acceptance model. Each request draws its
own stream of (confidence, A) rows from a generator seeded by (seed, request id), so the j-th
decode step of a request sees the same draws under every policy (common random numbers): a
policy that verifies fewer drafts only truncates what the same rejection sampling would accept.
An acceptance model with a ``stream(capacity)`` (records, ``profiles/replay.py``) instead picks
each step's row from how the request's previous round ended (bonus or residual) and its token
position, so the backend tells it every outcome (``advance``) and reads one row per step.
The live backend (issue #6) runs the real engine behind the same calls.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from profiles.cost import CostModel
from simulator.request import Request

_ACCEPT_STREAM = 1  # spawn-key tag of the per-request acceptance streams
_BLOCK = 64  # decode steps drawn at a time per request
_WIDTH = 2 * _BLOCK  # ring columns per slot: the rows not yet read plus one block drawn ahead


class StepShape(NamedTuple):
    """What a step's price depends on (the arguments of ``CostModel.step_time``)."""

    requests: int  # requests in the decode batch R
    batch_tokens: int  # verify batch tokens B = Σ (1 + ℓ)
    kv_tokens: int  # KV tokens attention reads, on the backend's context_basis
    prefill_tokens: int = 0  # prompt tokens co-batched into the step
    longest: int = 0  # verify tokens of the longest request, 1 + max ℓ (0: unknown)


class Backend(Protocol):
    gamma: int
    source: str
    context_basis: str  # "total" or "padded": how step_time's kv_tokens are counted

    def prefill(self, entries: list[tuple[int, Request]]) -> None: ...
    def join(self, slot: int, request: Request) -> None: ...
    def leave(self, slot: int) -> None: ...
    def draft(self, slots: np.ndarray) -> np.ndarray: ...
    def accepted(self, slots: np.ndarray) -> np.ndarray: ...
    def verify(self, slots: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...
    def step_time(self, step: StepShape) -> float: ...


class ProfiledBackend:
    """Step costs from a cost model, drafts and acceptance from an acceptance model."""

    def __init__(self, cost: CostModel, acceptance, capacity: int, seed: int, gamma: int) -> None:
        self.cost = cost
        self.context_basis = cost.context_basis
        self.acceptance = acceptance
        self.gamma = gamma
        self.seed = seed
        self.source = f"profiled ({cost.source}; acceptance {acceptance.source})"
        # Each slot's stream lives in a ring of _WIDTH rows indexed by the backend's step count,
        # so reading the running batch's rows is one gather at a scalar column.
        self._conf = np.zeros((capacity, _WIDTH, gamma))  # [slot, step % WIDTH, γ]
        self._acc = np.zeros((capacity, _WIDTH), dtype=np.int64)  # [slot, step % WIDTH]
        self._state: list = [None] * capacity  # (latent, rng) per slot
        self._due: dict[int, list[int]] = {}  # step -> slots whose rows run out at that step
        self._due_at = np.full(capacity, -1, dtype=np.int64)  # the step each slot's rows run out
        self._step = 0  # decode steps verified so far
        self.extrapolated_steps = 0  # steps priced outside the profile's envelope (any term)
        self.priced_steps = 0  # steps priced (decode steps and prefill-only steps)
        self.drafts: int | None = None  # drafts per request the policy needs (None: γ), set
        # by the server from Policy.draft_tokens; prices the draft pass (CostModel.draft_scale)
        self.inline = None  # the compiled path's streams (simulator/compiled.py, for
        # ParametricAcceptance): join seeds and draws in compiled code, the compiled loop draws
        # the later blocks itself; the same numbers as the generators below (None: numpy's)
        self._stream = acceptance.stream(capacity) if hasattr(acceptance, "stream") else None
        # a position replay (profiles/replay.py) reads where each request stands, which the
        # policy decides step by step: it cannot be drawn ahead, so the compiled path stays off
        self.compilable = self._stream is None

    def prefill(self, entries: list[tuple[int, Request]]) -> None:
        """Nothing to do: the cost model prices the prefill chunk in ``step_time``."""

    def join(self, slot: int, request: Request) -> None:
        if self.inline is not None:
            self.inline.join(slot, request, self._step)
            return
        seq = np.random.SeedSequence(self.seed, spawn_key=(_ACCEPT_STREAM, request.id))
        rng = np.random.Generator(np.random.PCG64(seq))
        if self._stream is not None:
            self._stream.join(slot, request.domain, rng)
            return
        self._state[slot] = (self.acceptance.start(request.domain, rng), rng)
        self._due_at[slot] = self._step
        # A request needs at most output − 1 decode steps: a short one draws only those (the
        # size depends on the request alone, so every policy sees the same stream).
        self._refill(slot, min(_BLOCK, max(request.output_tokens - 1, 1)))

    def leave(self, slot: int) -> None:
        self._state[slot] = None
        if self._stream is not None:
            self._stream.leave(slot)

    def _refill(self, slot: int, n: int = _BLOCK) -> None:
        """Draw the slot's next ``n`` steps into the ring after the rows it already has."""
        latent, rng = self._state[slot]
        start = int(self._due_at[slot])
        conf, acc = self.acceptance.draw(latent, n, rng)
        cols = (start + np.arange(n)) % _WIDTH
        self._conf[slot, cols] = conf[:, : self.gamma]
        self._acc[slot, cols] = np.minimum(acc, self.gamma)
        self._due_at[slot] = start + n
        self._due.setdefault(start + n, []).append(slot)

    def draft(self, slots: np.ndarray) -> np.ndarray:
        if self._stream is not None:
            return self._stream.rows(slots)[0][:, : self.gamma]
        return self._conf[slots, self._step % _WIDTH]

    def accepted(self, slots: np.ndarray) -> np.ndarray:
        if self._stream is not None:
            return np.minimum(self._stream.rows(slots)[1], self.gamma)
        return self._acc[slots, self._step % _WIDTH]

    def verify(self, slots: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if self._stream is not None:
            acc = self.accepted(slots)
            gained = np.minimum(acc, lengths) + 1
            self._stream.advance(slots, acc >= lengths, gained)
            self._step += 1
            return gained
        gained = np.minimum(self._acc[slots, self._step % _WIDTH], lengths)
        gained += 1
        self._tick()
        return gained

    def _tick(self, steps: int = 1) -> None:
        """Decode steps done, one at a time: refill the slots whose rows ran out."""
        if self.inline is not None:  # the compiled loop refills them
            self._step += steps
            return
        pop = self._due.pop
        for _ in range(steps):
            self._step += 1
            due = pop(self._step, None)
            if due:
                for slot in due:  # skip stale entries (a reused slot, a slot drawn ahead)
                    if self._state[slot] is not None and self._due_at[slot] == self._step:
                        self._refill(slot)

    # -- the compiled step path (simulator/compiled.py) reads the rings directly ---------------
    @property
    def conf_ring(self) -> np.ndarray:
        return self._conf  # [slot, step % WIDTH, γ]

    @property
    def acc_ring(self) -> np.ndarray:
        return self._acc  # [slot, step % WIDTH]

    @property
    def step_count(self) -> int:
        return self._step

    def prefetch(self, slots: np.ndarray, left: np.ndarray) -> int:
        """Draw ahead (the same blocks, from each request's own generator) so that every
        running slot has rows for the steps it may still need, up to a block; returns how many
        steps all of them can run."""
        ahead = self._due_at[slots] - self._step
        need = (ahead < _BLOCK) & (ahead < left)
        if not need.any():
            return int(ahead.min())
        for slot in slots[need].tolist():
            self._refill(slot)
        return int((self._due_at[slots] - self._step).min())

    def advance(self, steps: int, extrapolated: int) -> None:
        """``steps`` decode steps ran (compiled), ``extrapolated`` of them priced outside."""
        self._tick(steps)
        self.priced_steps += steps
        self.extrapolated_steps += extrapolated

    def step_time(self, step: StepShape) -> float:
        self.priced_steps += 1
        if self.cost.outside(step.requests, step.batch_tokens, step.kv_tokens, step.prefill_tokens):
            self.extrapolated_steps += 1
        return self.cost.step_time(*step, self.drafts)
