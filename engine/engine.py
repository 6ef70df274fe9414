"""The batched step API: target + drafter + KV caches with slots.

Requests join with :meth:`Engine.add` (prefill into a free slot) and leave with
:meth:`Engine.remove`; between those, each decode step is :meth:`Engine.draft` for the running
slots, a policy choosing verify lengths from the confidences, and :meth:`Engine.verify`, which
runs one target forward over ``Σ (1 + ℓ[r])`` flattened tokens and applies lossless rejection
sampling. Each call records its wall time in :attr:`Engine.last` (``prefill``, ``draft``,
``verify`` seconds) so a profiler can measure the three costs separately.

A slot's state is its cache length (tokens the target has processed), its anchor (the last
sampled token, not yet in the cache) and its generated tokens. Verification rolls back by
setting the length. The drafter's context keys/values for the tokens of a forward are written at
the start of the next :meth:`draft` (or :meth:`add`), so that cost counts as drafting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from engine.cache import Layout
from engine.drafter import Draft, Drafter
from engine.model import Target
from engine.sampling import Draws, verify


@dataclass
class Verdict:
    """Outcome of one verify step for R requests (host-side lists, batch order)."""

    accepted: list[int]  # drafts accepted per request, min(A, ℓ)
    tokens: list[list[int]]  # new tokens per request: accepted drafts + 1 residual/bonus token
    full_accepted: list[int] | None = None  # A: accepted if all γ drafts had been verified
    verify_tokens: int = 0  # B = Σ (1 + ℓ) tokens in the target forward


@dataclass
class Slot:
    length: int = 0  # tokens in the target cache
    anchor: int = -1  # last sampled token (input of the next step)
    prompt_len: int = 0
    generated: list[int] = field(default_factory=list)


class Engine:
    """Speculative decoding over slots. ``drafter=None`` decodes with the target alone."""

    def __init__(
        self,
        target: Target,
        drafter: Drafter | None = None,
        *,
        slots: int = 8,
        max_len: int | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.target, self.drafter = target.eval(), drafter
        self.temperature = temperature
        self.max_len = max_len or target.cfg.max_len
        p = target.head.weight
        self.device, self.dtype = p.device, p.dtype
        self.cache = target.new_cache(slots, self.max_len)
        self.features = ()
        self.ctx_cache = None
        if drafter is not None:
            drafter.eval()
            self.features = drafter.cfg.feature_layers
            self.ctx_cache = drafter.new_cache(slots, self.max_len, self.device, self.dtype)
        self.slots: dict[int, Slot] = {}
        self._pending: tuple[torch.Tensor, Layout] | None = None
        self.last: dict[str, float] = {}

    @property
    def gamma(self) -> int:
        return self.drafter.cfg.gamma if self.drafter is not None else 0

    def free_slots(self) -> list[int]:
        return [s for s in range(self.cache.slots) if s not in self.slots]

    # -- requests ------------------------------------------------------------------------------
    def add(self, prompt: list[int], generator: torch.Generator | None = None) -> int:
        """Prefill ``prompt`` into a free slot and sample its first token. Returns the slot."""
        return self.add_many([prompt], generator)[0]

    @torch.inference_mode()
    def add_many(
        self, prompts: list[list[int]], generator: torch.Generator | None = None
    ) -> list[int]:
        """Prefill several prompts in one forward (flattened, no padding). Returns their slots."""
        free = self.free_slots()
        if len(free) < len(prompts):
            raise RuntimeError(f"{len(prompts)} prompts but {len(free)} free slots")
        limit = self.max_len - self.gamma - 2
        if not all(0 < len(p) <= limit for p in prompts):
            raise ValueError(f"prompt lengths must be 1..{limit}")
        t0 = time.perf_counter()
        self._ingest()
        slots = free[: len(prompts)]
        q = [len(p) for p in prompts]
        lay = Layout.build(slots, [0] * len(slots), q, self.device)
        toks = torch.tensor([t for p in prompts for t in p], device=self.device)
        logits, feats = self.target(toks, lay, self.cache, self.features)
        self._pending = (feats, lay) if feats is not None else None
        last = torch.tensor(q, device=self.device).cumsum(0) - 1
        first = self._sample(logits[last], generator)
        for s, p, tok in zip(slots, prompts, first, strict=True):
            self.cache.lengths[s] = len(p)
            self.slots[s] = Slot(len(p), tok, len(p), [tok])
        self.last = {"prefill": self._elapsed(t0)}
        return slots

    def remove(self, slot: int) -> list[int]:
        """Free ``slot``; returns the tokens it generated."""
        self.cache.lengths[slot] = 0
        return self.slots.pop(slot).generated

    def room(self, slot: int) -> int:
        """How many more tokens the slot's cache can take (the step needs 1 + γ)."""
        return self.max_len - self.slots[slot].length

    # -- one decode step -------------------------------------------------------------------------
    @torch.inference_mode()
    def draft(self, slots: list[int], generator: torch.Generator | None = None) -> Draft:
        """Proposals of the drafter for ``slots``: tokens, probabilities, confidence logits."""
        if self.drafter is None:
            raise RuntimeError("engine has no drafter")
        t0 = time.perf_counter()
        self._ingest()
        anchors = torch.tensor([self.slots[s].anchor for s in slots], device=self.device)
        lengths = [self.slots[s].length for s in slots]
        d = self.drafter.propose(
            anchors, slots, lengths, self.ctx_cache, self.temperature, generator
        )
        self.last["draft"] = self._elapsed(t0)
        return d

    @torch.inference_mode()
    def verify(
        self,
        slots: list[int],
        draft: Draft | None,
        lengths: list[int] | None = None,
        generator: torch.Generator | None = None,
        *,
        full: bool = False,
    ) -> Verdict:
        """Verify ``lengths[r]`` drafts of each slot in one target forward; advance the slots.

        ``draft=None`` (or all lengths 0) is a plain decoding step. ``full=True`` runs the target
        over all γ drafts to also report A (the recorder's accepted count) while the outcome
        still follows ``lengths``; it costs a γ-token verification.
        """
        t0 = time.perf_counter()
        r = len(slots)
        k = 0 if draft is None else draft.tokens.shape[1]
        ell = [0] * r if lengths is None or draft is None else [int(x) for x in lengths]
        ell = [max(0, min(x, k, self.room(s) - 1)) for x, s in zip(ell, slots, strict=True)]
        q = [k + 1 if full else x + 1 for x in ell]
        q = [min(qi, self.room(s)) for qi, s in zip(q, slots, strict=True)]
        anchors = torch.tensor([self.slots[s].anchor for s in slots], device=self.device)
        if draft is None or max(q) == 1:
            toks = anchors
            dtoks = anchors[:, None][:, :0]  # [R, 0]
            dprobs = torch.empty((r, 0, self.target.cfg.vocab), device=self.device)
        else:
            dtoks, dprobs = draft.tokens, draft.probs
            rows = torch.cat((anchors[:, None], dtoks), dim=1)  # [R, 1+K]
            q_t = torch.tensor(q, device=self.device)
            toks = rows[torch.arange(k + 1, device=self.device)[None, :] < q_t[:, None]]  # [N]
        base = [self.slots[s].length for s in slots]
        lay = Layout.build(slots, base, q, self.device)
        logits, feats = self.target(toks, lay, self.cache, self.features)
        logits = lay.pad(logits)  # [R, Qmax, V]
        draws = None
        if self.temperature > 0:
            draws = Draws.new(r, dtoks.shape[1], logits.shape[-1], generator, self.device)
        ell_t = torch.tensor(ell, device=self.device)
        n, nxt, full_a = verify(logits, dtoks, dprobs, ell_t, self.temperature, draws)
        out = torch.stack((n, nxt, full_a)).tolist()  # the one host sync of the step
        self._pending = (feats, lay) if feats is not None else None
        tokens = []
        drafts = dtoks.tolist() if any(out[0]) else None
        for i, s in enumerate(slots):
            acc, new = out[0][i], out[1][i]
            slot = self.slots[s]
            drafted = drafts[i][:acc] if acc else []
            slot.generated += drafted + [new]
            slot.length += 1 + acc
            slot.anchor = new
            self.cache.lengths[s] = slot.length
            tokens.append(drafted + [new])
        self.last["verify"] = self._elapsed(t0)
        return Verdict(out[0], tokens, out[2] if full else None, sum(q))

    # -- helpers ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def flush(self) -> None:
        """Write the drafter context of the last forward now (untimed; the profiler's calls
        start from a flushed engine so one call's pending work never lands in the next's time)."""
        self._ingest()

    def _ingest(self) -> None:
        """Write the drafter's context keys/values of the last forward's tokens."""
        if self._pending is not None and self.drafter is not None:
            feats, lay = self._pending
            self.drafter.ingest(feats, lay, self.ctx_cache)
        self._pending = None

    def _sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> list[int]:
        """One token per row of ``logits [R, V]`` (argmax at temperature 0)."""
        if self.temperature <= 0:
            return logits.argmax(-1).tolist()
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0].tolist()

    def _elapsed(self, t0: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0
