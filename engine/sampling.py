"""Lossless verification: speculative rejection sampling, and greedy matching at temperature 0.

For request r with ℓ verified drafts x_1..x_ℓ (DESIGN §4): accept x_k with probability
``min(1, p_t(x_k) / p_d(x_k))`` left to right; at the first rejection sample from the normalised
positive part of ``p_t − p_d``; if all ℓ pass, sample a bonus token from ``p_t`` at position ℓ+1.

Every random draw is indexed by draft position: ``u [R, K]`` for the accept tests and Gumbel noise
``[R, K+1, V]`` for the token sampled at each position. So verifying fewer drafts only truncates
the outcome (request r gains ``min(A, ℓ) + 1`` tokens, A = accepted count with all K verified),
the identity the simulator relies on. One batched computation, no Python loop over requests.
Shapes: R requests, Q = ℓmax + 1 target positions, K drafts, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Draws:
    """The random numbers of one verification step (position-indexed, see module doc)."""

    u: torch.Tensor  # [R, K] uniforms for the accept tests
    gumbel: torch.Tensor  # [R, K+1, V] Gumbel noise for the token sampled at each position

    @classmethod
    def new(cls, r: int, k: int, v: int, generator: torch.Generator | None, device) -> Draws:
        u = torch.rand((r, k), generator=generator, device=device)
        e = torch.empty((r, k + 1, v), device=device).exponential_(generator=generator)
        return cls(u, e.log_().neg_())  # Gumbel = -log(Exp(1))


def verify(
    target_logits: torch.Tensor,
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor | None,
    lengths: torch.Tensor,
    temperature: float,
    draws: Draws | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accept/resample for a batch.

    ``target_logits [R, Q, V]``: position i holds the target's logits after the anchor and i
    drafts (rows past ``lengths[r]`` are ignored); ``draft_tokens [R, K]`` and ``draft_probs
    [R, K, V]`` with K ≥ Q−1; ``lengths [R]`` drafts verified per request (ℓ ≤ Q−1).

    Returns ``accepted [R]`` (n = drafts accepted, ≤ ℓ), ``next_token [R]`` (the residual or
    bonus token at position n) and ``all_accepted [R]`` (A: accepted count over all Q−1
    positions, ignoring ``lengths``; equals n's upper bound when ℓ = Q−1).
    """
    r, q, _ = target_logits.shape
    x = draft_tokens[:, : q - 1]  # [R, Q-1]
    if temperature <= 0:
        best = target_logits.argmax(dim=-1)  # [R, Q]
        ok = best[:, :-1] == x
        full = ok.long().cumprod(dim=1).sum(dim=1)
        n = torch.minimum(full, lengths)
        return n, best.gather(1, n[:, None]).squeeze(1), full
    assert draws is not None and draft_probs is not None
    pt = torch.softmax(target_logits / temperature, dim=-1)  # [R, Q, V]
    pd = draft_probs[:, : q - 1]  # [R, Q-1, V]
    pt_x = pt[:, :-1].gather(2, x[..., None]).squeeze(-1)  # [R, Q-1]
    pd_x = pd.gather(2, x[..., None]).squeeze(-1)
    ok = draws.u[:, : q - 1] * pd_x < pt_x  # accept with probability min(1, p_t / p_d)
    full = ok.long().cumprod(dim=1).sum(dim=1)  # A over all Q-1 positions
    n = torch.minimum(full, lengths)  # [R]
    # token at position n: residual (p_t - p_d)+ if n < ℓ (a rejection), else bonus from p_t
    pt_n = pt.gather(1, n[:, None, None].expand(r, 1, pt.shape[-1])).squeeze(1)  # [R, V]
    pd_pad = torch.cat((pd, pt.new_zeros(r, 1, pt.shape[-1])), dim=1)  # [R, Q, V]
    pd_n = pd_pad.gather(1, n[:, None, None].expand(r, 1, pd.shape[-1])).squeeze(1)
    pd_n = pd_n * (n < lengths)[:, None]
    resid = (pt_n - pd_n).clamp_(min=0)
    resid = torch.where(resid.sum(-1, keepdim=True) > 0, resid, pt_n)  # p_t == p_d: fall back
    g = draws.gumbel.gather(1, n[:, None, None].expand(r, 1, draws.gumbel.shape[-1])).squeeze(1)
    token = (resid.log() + g).argmax(dim=-1)
    return n, token, full
