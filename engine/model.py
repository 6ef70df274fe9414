"""The target model: a byte-level decoder-only transformer (RoPE, RMSNorm, SwiGLU).

Two forward paths share the weights: :meth:`Target.forward_seq` over whole sequences ``[B, S]``
(training, causal attention, no cache) and :meth:`Target.forward` over a flattened token list
``[N]`` described by a :class:`~engine.cache.Layout`, reading and writing a
:class:`~engine.cache.KVCache` (prefill, plain decoding, batched verification with a different
number of tokens per request). Both can also return the hidden states of chosen layers, which the
drafters are conditioned on (DFlash's "KV injection", DSpark §2.2).

Shapes: B batch, S sequence, N flattened tokens, R requests, H heads, D dim, V vocab (256 bytes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.cache import KVCache, Layout


@dataclass(frozen=True)
class TargetConfig:
    """Size of the target model. Saved with every checkpoint (rebuilt by ``TargetConfig(**d)``)."""

    vocab: int = 256  # bytes
    dim: int = 256  # model width
    layers: int = 6  # transformer blocks
    heads: int = 4  # attention heads (head dim = dim / heads)
    hidden: int = 683  # SwiGLU hidden width
    max_len: int = 1024  # longest sequence (RoPE table and KV cache length)
    rope_base: float = 10000.0  # RoPE frequency base
    norm_eps: float = 1e-5  # RMSNorm epsilon

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError("dim must split into heads of even size")
        if min(self.vocab, self.dim, self.layers, self.heads, self.hidden, self.max_len) <= 0:
            raise ValueError("all sizes must be positive")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(max_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[max_len, head_dim/2]`` for rotary embeddings (rotate-half convention)."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., H, D]`` by ``cos, sin`` broadcastable to ``[..., 1, D/2]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward_seq(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.qkv(x).view(b, s, 3, self.heads, self.head_dim)  # [B, S, 3, H, D]
        qk = rope(qkv[:, :, :2], cos[:s, None, None], sin[:s, None, None])
        q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # [B, H, S, D]
        return self.out(y.transpose(1, 2).reshape(b, s, -1))

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        lay: Layout,
        cache: KVCache,
        layer: int,
    ) -> torch.Tensor:
        n = x.shape[0]
        qkv = self.qkv(x).view(n, 3, self.heads, self.head_dim)  # [N, 3, H, D]
        qk = rope(qkv[:, :2], cos, sin)  # cos, sin: [N, 1, 1, D/2]
        cache.write(layer, lay, qk[:, 1], qkv[:, 2])
        k, v = cache.read(layer, lay)  # [R, H, Kmax, D]
        q = lay.pad(qk[:, 0]).transpose(1, 2)  # [R, H, Qmax, D]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=lay.mask, is_causal=lay.causal)
        return self.out(lay.unpad(y.transpose(1, 2)).reshape(n, -1))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * hidden, bias=False)  # gate and value, fused
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * value)


class Block(nn.Module):
    def __init__(self, cfg: TargetConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.dim, cfg.hidden)


class Target(nn.Module):
    """The target LM. ``feature_layers`` (1-based block outputs) are returned for the drafter."""

    def __init__(self, cfg: TargetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        cos, sin = rope_tables(cfg.max_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(_init)
        for name, p in self.named_parameters():  # GPT-2 style scaled init of residual outputs
            if name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    def forward_seq(
        self, tokens: torch.Tensor, feature_layers: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, S, V]`` and features ``[B, S, m*D]`` (None if no layers asked)."""
        x = self.embed(tokens)
        feats = []
        for i, blk in enumerate(self.blocks, start=1):
            x = x + blk.attn.forward_seq(blk.norm1(x), self.cos, self.sin)
            x = x + blk.mlp(blk.norm2(x))
            if i in feature_layers:
                feats.append(x)
        return self.head(self.norm(x)), (torch.cat(feats, dim=-1) if feats else None)

    def forward(
        self,
        tokens: torch.Tensor,
        lay: Layout,
        cache: KVCache,
        feature_layers: tuple[int, ...] = (),
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[N, V]`` and features ``[N, m*D]`` for flattened ``tokens [N]``.

        Writes the tokens' keys and values into ``cache``; the caller moves the slot lengths.
        """
        cos = self.cos[lay.tok_pos][:, None, None]  # [N, 1, 1, D/2]
        sin = self.sin[lay.tok_pos][:, None, None]
        x = self.embed(tokens)
        feats = []
        for i, blk in enumerate(self.blocks, start=1):
            x = x + blk.attn(blk.norm1(x), cos, sin, lay, cache, i - 1)
            x = x + blk.mlp(blk.norm2(x))
            if i in feature_layers:
                feats.append(x)
        return self.head(self.norm(x)), (torch.cat(feats, dim=-1) if feats else None)

    def new_cache(self, slots: int, max_len: int | None = None) -> KVCache:
        p = self.head.weight
        return KVCache(
            self.cfg.layers,
            slots,
            self.cfg.heads,
            max_len or self.cfg.max_len,
            self.cfg.head_dim,
            device=p.device,
            dtype=p.dtype,
        )


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
