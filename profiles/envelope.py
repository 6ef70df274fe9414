"""What a cost model was measured over: its validity envelope and its monotone repair.

Every cost profile records the ranges its terms were measured (or generated) over (requests,
verify batch tokens, attended KV tokens, prefill tokens) and the engine's longest context per
request. The simulator counts the steps priced outside them, for every term, context included
(``extrapolated_step_share``), and ``spectune profiles`` reports the envelope and how many
probes the monotone repair lifted. :class:`Envelope` is the part of ``CostModel`` that answers
those questions (a mixin over its fields).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profiles.curve import Curve

if TYPE_CHECKING:
    from profiles.cost import CostModel


class Envelope:
    """Envelope and repair queries of a ``profiles.cost.CostModel`` (mixed into it)."""

    def envelope(self: CostModel) -> dict[str, list[float] | int | None]:
        """The ranges this model's terms were measured (or generated) over, ``[lo, hi]`` per
        axis from their probes (None: the term is not modelled), and the engine's maximum
        context per request (0: unknown). Steps priced outside are counted (:meth:`outside`)."""

        def span(c: Curve) -> list[float] | None:
            return None if c.y == (0.0,) and c.x == (0.0,) else [c.lo, c.hi]

        requests = [span(self.draft)] + ([span(self.alpha)] if self.kind == "additive" else [])
        requests = [r for r in requests if r]
        return {
            "requests": [min(r[0] for r in requests), max(r[1] for r in requests)]
            if requests
            else None,
            "batch_tokens": span(self.verify),
            "kv_tokens": span(self.context) if self._has_context else None,
            "prefill_tokens": span(self.prefill),
            "max_context": self.max_context,
        }

    def outside(
        self: CostModel, requests: int, tokens: int, kv_tokens: int = 0, prefill_tokens: int = 0
    ) -> bool:
        """True when pricing this step reads any term beyond its measured probes: verify batch
        tokens, requests (draft, alpha), attended KV tokens (the step's and the measured base
        ``requests × context_base`` the context term is relative to) or the prefill chunk."""
        if prefill_tokens and prefill_tokens > self._prefill_m.hi and self.prefill.y != (0.0,):
            return True
        if not requests:
            return False
        if self.extrapolates(requests, tokens + (prefill_tokens if self.prefill_fused else 0)):
            return True
        if self._has_context:
            lo, hi = self.context.lo, self.context.hi
            base = requests * self.context_base
            return not (lo <= kv_tokens <= hi) or bool(base and base > hi)
        return False

    def outside_terms(
        self: CostModel, requests: int, tokens: int, kv_tokens: int = 0, prefill_tokens: int = 0
    ) -> tuple[str, ...]:
        """Why :meth:`outside` is true for this step (empty when it is false): ``prefill``,
        ``batch_tokens``, ``requests``, ``kv_low`` / ``kv_high`` (the step's attended KV below
        or above the context curve's probes) and ``kv_base`` (the measured base
        ``requests × context_base`` beyond them). For audits; :meth:`outside` is the hot path."""
        out = []
        if prefill_tokens and prefill_tokens > self._prefill_m.hi and self.prefill.y != (0.0,):
            out.append("prefill")
        if requests:
            hi_tokens, hi_requests = self._hi
            if tokens + (prefill_tokens if self.prefill_fused else 0) > hi_tokens:
                out.append("batch_tokens")
            if 0 < hi_requests < requests:
                out.append("requests")
            if self._has_context:
                if kv_tokens < self.context.lo:
                    out.append("kv_low")
                if kv_tokens > self.context.hi:
                    out.append("kv_high")
                if requests * self.context_base > self.context.hi:
                    out.append("kv_base")
        return tuple(out)

    def extrapolates(self: CostModel, requests: int, tokens: int) -> bool:
        """True when the verify or draft lookup lies beyond the measured probes."""
        hi_tokens, hi_requests = self._hi
        return tokens > hi_tokens or 0 < hi_requests < requests

    def repaired(self: CostModel) -> dict[str, int]:
        """Measured probes each term's monotone repair lifted (see the module docstring)."""
        terms = {"verify": self.verify, "draft": self.draft, "prefill": self.prefill,
                 "context": self.context, "context_one": self.context_one}  # fmt: skip
        if self.kind == "additive":
            terms["alpha"] = self.alpha
        return {name: curve.dips() for name, curve in terms.items()}
