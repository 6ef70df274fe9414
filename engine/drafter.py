"""Drafters conditioned on target hidden states: DSpark, DFlash, an AR head and MTP-1.

One module covers the four kinds (DSpark paper §2.2, §3.1, §3.2.1):

- ``dflash``: a parallel backbone. Target features of chosen layers are concatenated, projected
  and normalised into context states ``H_ctx`` (eq. 2); every draft layer attends to keys/values
  of ``H_ctx`` (the last ``window`` target positions) and of the block itself (eq. 3). The block is
  the anchor token followed by γ−1 mask embeddings; all γ positions predict (DSpark's variant),
  attending to each other bidirectionally. Logits ``U_k`` come from the target's frozen LM head.
- ``dspark``: the same backbone plus a low-rank Markov head ``B(x_{k−1}, ·) = W1[x_{k−1}] W2``
  (eq. 5) sampled left to right, and the confidence head ``σ(w·[h_k; W1[x_{k−1}]])`` (eq. 7).
- ``ar``: EAGLE-like: the same layer run causally over the drafted tokens, one pass per token.
- ``mtp1``: a block of one (the anchor only): one draft token per step.

The context keys/values live in a :class:`~engine.cache.KVCache` indexed like the target's, so
rejected positions roll back with the target's lengths. Shapes: R requests, K block (γ), W window,
V vocab, D dim, H heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.cache import KVCache, Layout
from engine.model import SwiGLU, rope, rope_tables

KINDS = ("dspark", "dflash", "ar", "mtp1")


@dataclass(frozen=True)
class DrafterConfig:
    """Size and kind of a drafter. Saved with every checkpoint."""

    kind: str = "dspark"  # dspark | dflash | ar | mtp1
    gamma: int = 7  # block size: draft tokens per step (mtp1: 1)
    dim: int = 256  # width; equals the target's (shared embedding and LM head)
    layers: int = 1  # draft transformer layers
    heads: int = 4  # attention heads
    hidden: int = 512  # SwiGLU hidden width
    feature_layers: tuple[int, ...] = (2, 4, 6)  # target blocks (1-based) whose outputs condition
    window: int = 64  # most recent target positions the drafter attends to
    markov_rank: int = 64  # rank r of the Markov head (dspark only)
    vocab: int = 256
    max_len: int = 1024  # RoPE table length (matches the target's)
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown drafter kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind == "mtp1" and self.gamma != 1:
            raise ValueError("mtp1 drafts exactly one token (gamma=1)")
        object.__setattr__(self, "feature_layers", tuple(self.feature_layers))

    @property
    def rank(self) -> int:
        return self.markov_rank if self.kind == "dspark" else 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Draft:
    """What a drafter proposes for R requests."""

    tokens: torch.Tensor  # [R, K] int64 draft tokens
    probs: torch.Tensor  # [R, K, V] draft distributions the tokens were sampled from
    conf_logits: torch.Tensor  # [R, K] raw confidence logits; conf = sigmoid(logit)


class DraftLayer(nn.Module):
    """Attention over [context; block] keys (shared K/V weights, eq. 3), then SwiGLU."""

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.norm1 = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.norm2 = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.dim, cfg.hidden)

    def context_kv(
        self, ctx: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[..., H, D]`` of context states ``ctx [..., dim]`` (rotated)."""
        d = self.heads * self.head_dim
        kv = F.linear(ctx, self.qkv.weight[d:])  # only the K and V rows of the fused weight
        k, v = kv.unflatten(-1, (2, self.heads, self.head_dim)).unbind(-3)
        return rope(k, cos, sin), v

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        ctx_k: torch.Tensor,
        ctx_v: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x [B, Q, dim]`` block states; ``ctx_k, ctx_v [B, H, C, D]``; mask ``[B,1,Q,C+Q]``."""
        b, q, _ = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, q, 3, self.heads, self.head_dim)
        qk = rope(qkv[:, :, :2], cos, sin)  # cos, sin: [B, Q, 1, 1, D/2]
        k = torch.cat((ctx_k, qk[:, :, 1].transpose(1, 2)), dim=2)  # [B, H, C+Q, D]
        v = torch.cat((ctx_v, qkv[:, :, 2].transpose(1, 2)), dim=2)
        y = F.scaled_dot_product_attention(qk[:, :, 0].transpose(1, 2), k, v, attn_mask=mask)
        x = x + self.out(y.transpose(1, 2).reshape(b, q, -1))
        return x + self.mlp(self.norm2(x))


class Drafter(nn.Module):
    """A drafter of any kind; ``embed``/``head`` are the target's, frozen and not saved."""

    def __init__(self, cfg: DrafterConfig, embed: nn.Embedding, head: nn.Linear, target_dim: int):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.ModuleDict({"embed": embed, "head": head})
        for p in self.shared.parameters():
            p.requires_grad_(False)
        m = len(cfg.feature_layers)
        self.ctx_proj = nn.Linear(m * target_dim, cfg.dim, bias=False)  # W_c of eq. 2
        self.ctx_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.mask_emb = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.layers = nn.ModuleList(DraftLayer(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        if cfg.rank:
            self.w1 = nn.Embedding(cfg.vocab, cfg.rank)  # Markov embedding W1
            self.w2 = nn.Linear(cfg.rank, cfg.vocab, bias=False)  # logit projection W2
            nn.init.normal_(self.w1.weight, std=0.02)
            nn.init.zeros_(self.w2.weight)
        self.conf = nn.Linear(cfg.dim + cfg.rank, 1)  # confidence head w (eq. 7)
        cos, sin = rope_tables(cfg.max_len, cfg.dim // cfg.heads, 10000.0)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._bias: dict[float, torch.Tensor] = {}  # T -> [V, V] W1 W2 / T, for inference

    # -- weights ------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("shared.")}

    def markov_bias(self, temperature: float = 1.0) -> torch.Tensor:
        """The full transition table ``[V, V] = W1 W2 / T`` (V = 256, so it is small); cached
        per temperature at inference (dividing a fresh [V, V] table each step costs more than
        the drafter's matmuls)."""
        t = temperature if temperature > 0 else 1.0
        if self.training:
            return self.w2(self.w1.weight) / t
        if t not in self._bias:
            self._bias[t] = self.w2(self.w1.weight) / t
        return self._bias[t]

    def train(self, mode: bool = True) -> Drafter:
        self._bias = {}
        return super().train(mode)

    # -- context (target features -> per-layer keys/values) -------------------------------------
    def context(self, feats: torch.Tensor) -> torch.Tensor:
        """Context states ``[..., dim]`` from concatenated target features ``[..., m*Dt]``."""
        return self.ctx_norm(self.ctx_proj(feats))

    def new_cache(self, slots: int, max_len: int, device, dtype) -> KVCache:
        cfg = self.cfg
        h = cfg.heads
        return KVCache(cfg.layers, slots, h, max_len, cfg.dim // h, device=device, dtype=dtype)

    def ingest(self, feats: torch.Tensor, lay: Layout, cache: KVCache) -> None:
        """Store context keys/values of target features ``[N, m*Dt]`` at the layout's positions."""
        ctx = self.context(feats)
        cos = self.cos[lay.tok_pos][:, None]  # [N, 1, D/2]
        sin = self.sin[lay.tok_pos][:, None]
        for i, layer in enumerate(self.layers):
            k, v = layer.context_kv(ctx, cos, sin)  # [N, H, D]
            cache.write(i, lay, k, v)

    # -- training -------------------------------------------------------------------------------
    def forward_train(
        self, x: torch.Tensor, feats: torch.Tensor, anchors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced blocks at many anchors of each sequence, in one pass.

        ``x [B, S+1]`` tokens, ``feats [B, S, m*Dt]`` target features of ``x[:, :S]``, ``anchors
        [B, n]`` positions (1 ≤ a ≤ S−K). Block position k (0-based) predicts ``x[a+k+1]`` from
        the context strictly before ``a`` (last ``window`` positions) and its block. Returns
        ``logits [B, n, K, V]`` (with the Markov bias of the true previous token) and
        ``conf_logits [B, n, K]`` (the confidence head sees detached features: a probe that
        does not change the drafts).
        """
        cfg = self.cfg
        b, s, k, dev = x.shape[0], feats.shape[1], cfg.gamma, x.device
        n = anchors.shape[1]
        blk_pos = (anchors[:, :, None] + torch.arange(k, device=dev)).reshape(b, n * k)
        prev = x.gather(1, blk_pos)  # [B, nK] x_{k-1}: the token at each block position
        if cfg.kind == "ar":
            h = self.shared.embed(prev)
        else:
            h = self.mask_emb.expand(b, n, k, cfg.dim).clone()
            h[:, :, 0] = self.shared.embed(x.gather(1, anchors))
            h = h.reshape(b, n * k, cfg.dim)
        ctx = self.context(feats)  # [B, S, dim]
        cos_c, sin_c = self.cos[:s][None, :, None], self.sin[:s][None, :, None]
        ctx_kv = []
        for layer in self.layers:
            ck, cv = layer.context_kv(ctx, cos_c, sin_c)  # [B, S, H, D]
            ctx_kv.append((ck.transpose(1, 2), cv.transpose(1, 2)))
        a_q = anchors[:, :, None].expand(b, n, k).reshape(b, n * k)  # anchor of each query
        j = torch.arange(s, device=dev)
        ctx_m = (j[None, None, :] < a_q[:, :, None]) & (
            j[None, None, :] >= a_q[:, :, None] - cfg.window
        )
        blk, kk = torch.arange(n * k, device=dev) // k, torch.arange(n * k, device=dev) % k
        blk_m = blk[:, None] == blk[None, :]
        if cfg.kind == "ar":
            blk_m &= kk[None, :] <= kk[:, None]
        mask = torch.cat((ctx_m, blk_m.expand(b, n * k, n * k)), dim=-1)[:, None]
        cos_b, sin_b = self.cos[blk_pos][:, :, None, None], self.sin[blk_pos][:, :, None, None]
        h = self._backbone(h, cos_b, sin_b, ctx_kv, mask)  # [B, nK, dim]
        logits = self.shared.head(h)
        conf_in = h.detach()
        if cfg.rank:
            markov = self.w1(prev)
            logits = logits + self.w2(markov)
            conf_in = torch.cat((conf_in, markov.detach()), dim=-1)
        conf = self.conf(conf_in).squeeze(-1)
        return logits.view(b, n, k, -1), conf.view(b, n, k)

    # -- inference ------------------------------------------------------------------------------
    def propose(
        self,
        anchors: torch.Tensor,
        slots: list[int],
        lengths: list[int],
        cache: KVCache,
        temperature: float,
        generator: torch.Generator | None,
    ) -> Draft:
        """Draft γ tokens after ``anchors [R]`` (at positions ``lengths``, not yet in cache)."""
        cfg, dev = self.cfg, anchors.device
        r, k = anchors.shape[0], cfg.gamma
        w = cfg.window
        length = torch.tensor(lengths, device=dev)
        blk_pos = length[:, None] + torch.arange(k, device=dev)  # [R, K]
        cos = self.cos[blk_pos][:, :, None, None]  # [R, K, 1, 1, D/2]
        sin = self.sin[blk_pos][:, :, None, None]
        if r == 1 and lengths[0] >= w:  # one request with a full window: cache views
            sl, a, b = slice(slots[0], slots[0] + 1), lengths[0] - w, lengths[0]
            ctx_ok = None
            ctx_kv = [(cache.k[i][sl, :, a:b], cache.v[i][sl, :, a:b]) for i in range(cfg.layers)]
        else:
            ctx_pos = length[:, None] - w + torch.arange(w, device=dev)  # [R, W]
            ctx_ok = ctx_pos >= 0
            ctx_pos = ctx_pos.clamp(min=0)
            sidx = torch.tensor(slots, device=dev)[:, None]
            ctx_kv = [
                (
                    cache.k[i][sidx, :, ctx_pos].transpose(1, 2),
                    cache.v[i][sidx, :, ctx_pos].transpose(1, 2),
                )
                for i in range(cfg.layers)
            ]  # [R, H, W, D]
            if min(lengths) >= w:
                ctx_ok = None
        if cfg.kind == "ar":
            return self._propose_ar(anchors, ctx_kv, ctx_ok, cos, sin, temperature, generator)
        x = self.mask_emb.expand(r, k, -1).clone()
        x[:, 0] = self.shared.embed(anchors)
        mask = None if ctx_ok is None else self._mask(ctx_ok, k, causal=False)
        h = self._backbone(x, cos, sin, ctx_kv, mask)  # [R, K, dim]
        u = self.shared.head(h)  # [R, K, V] base logits U_k
        noise = _gumbel(u.shape, generator, dev) if temperature > 0 else None
        if cfg.rank:
            tokens = self._markov_sample(u, anchors, temperature, noise)
            prev = torch.cat((anchors[:, None], tokens[:, :-1]), dim=1)  # [R, K] x_{k-1}
            logits = u + self.markov_bias()[prev]  # T = 1 table: p_d = softmax(logits / T)
            conf_in = torch.cat((h, self.w1(prev)), dim=-1)
        else:
            logits, conf_in = u, h
            tokens = _sample(logits, temperature, noise)
        return Draft(tokens, _probs(logits, temperature), self.conf(conf_in).squeeze(-1))

    def _markov_sample(self, u, anchors, temperature, noise) -> torch.Tensor:
        """Sample left to right: ``x_k ~ softmax((U_k + B[x_{k-1}]) / T)``; 3 ops per position.

        Gumbel-max: ``x_k = argmax(U_k/T + g_k + B[x_{k-1}]/T)``, with everything but the
        Markov row precomputed for all positions at once.
        """
        bias = self.markov_bias(temperature)
        rows = (u / temperature + noise).unbind(1) if temperature > 0 else u.unbind(1)
        prev, out = anchors, []
        for row in rows:
            prev = (row + bias[prev]).argmax(dim=-1)  # [R]
            out.append(prev)
        return torch.stack(out, dim=1)

    def _propose_ar(self, anchors, ctx_kv, ctx_ok, cos, sin, temperature, generator) -> Draft:
        """One causal pass per draft token over [anchor, drafts so far]."""
        r, k, dev = anchors.shape[0], self.cfg.gamma, anchors.device
        noise = _gumbel((r, k, self.cfg.vocab), generator, dev) if temperature > 0 else None
        if ctx_ok is None:  # every context position exists
            ctx_ok = torch.ones(r, self.cfg.window, dtype=torch.bool, device=dev)
        mask = self._mask(ctx_ok, k, causal=True)
        x = self.shared.embed(anchors)[:, None]  # [R, 1, dim]
        tokens, logits, hs = [], [], []
        for i in range(k):
            h = self._backbone(x, cos[:, : i + 1], sin[:, : i + 1], ctx_kv, mask[:, :, : i + 1, :])
            lg = self.shared.head(h[:, -1])  # [R, V]
            tok = _sample(lg, temperature, None if noise is None else noise[:, i])
            tokens.append(tok), logits.append(lg), hs.append(h[:, -1])
            x = torch.cat((x, self.shared.embed(tok)[:, None]), dim=1)
        lg = torch.stack(logits, dim=1)
        conf = self.conf(torch.stack(hs, dim=1)).squeeze(-1)
        return Draft(torch.stack(tokens, dim=1), _probs(lg, temperature), conf)

    def _backbone(self, x, cos, sin, ctx_kv, mask) -> torch.Tensor:
        for layer, (ck, cv) in zip(self.layers, ctx_kv, strict=True):
            q = x.shape[1]
            m = None if mask is None else mask[..., : ck.shape[2] + q]
            x = layer(x, cos, sin, ck, cv, m)
        return self.norm(x)

    @staticmethod
    def _mask(ctx_ok: torch.Tensor, k: int, causal: bool) -> torch.Tensor:
        """``[R, 1, K, W+K]``: context positions that exist; the block (causal for ``ar``)."""
        r, dev = ctx_ok.shape[0], ctx_ok.device
        blk = torch.ones(k, k, dtype=torch.bool, device=dev)
        if causal:
            blk = blk.tril()
        ctx = ctx_ok[:, None, None, :].expand(r, 1, k, ctx_ok.shape[1])
        return torch.cat((ctx, blk.expand(r, 1, k, k)), dim=-1)


def _gumbel(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard Gumbel noise ``-log(E)``, E ~ Exp(1) (argmax(logits/T + noise) samples)."""
    e = torch.empty(shape, device=device).exponential_(generator=generator)
    return e.log_().neg_()


def _sample(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None) -> torch.Tensor:
    """Gumbel-max sample from ``softmax(logits / T)``; argmax when T = 0 (or no noise)."""
    if temperature <= 0 or noise is None:
        return logits.argmax(dim=-1)
    return (logits / temperature + noise).argmax(dim=-1)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)
