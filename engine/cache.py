"""Preallocated KV caches with per-slot lengths, and the layout of one batched forward.

A cache holds ``[slots, H, S, D]`` keys and values per layer (gpt-fast layout, with a slot axis
instead of a batch axis so requests can join and leave between steps). Each slot has a length;
rolling back rejected tokens is setting the length, nothing to undo: positions past the length are
masked out and overwritten by the next write.

A :class:`Layout` describes one forward over a flattened token list: request ``r`` (in slot
``slots[r]``) contributes ``q[r]`` query tokens at positions ``lengths[r] .. lengths[r]+q[r]-1``.
Linear layers run on the flat ``[N, ...]`` tokens (N = Σ q, no padding to γ); only the attention
core views them as ``[R, Qmax]`` (a gather, skipped when every request has the same ``q``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class KVCache:
    """Keys and values ``[slots, H, S, D]`` for ``layers`` layers, plus a length per slot."""

    def __init__(
        self,
        layers: int,
        slots: int,
        heads: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (slots, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.lengths = [0] * slots  # tokens held per slot (host side: read on every step)
        self.max_len = max_len

    @property
    def slots(self) -> int:
        return len(self.lengths)

    def write(self, layer: int, lay: Layout, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store ``k, v [N, H, D]`` at the layout's (slot, position) pairs."""
        if lay.slot_range is not None and lay.single:
            s, start = lay.slot_range[0], lay.lengths[0]
            self.k[layer][s, :, start : start + k.shape[0]] = k.transpose(0, 1)
            self.v[layer][s, :, start : start + v.shape[0]] = v.transpose(0, 1)
        else:
            self.k[layer][lay.tok_slot, :, lay.tok_pos] = k
            self.v[layer][lay.tok_slot, :, lay.tok_pos] = v

    def read(self, layer: int, lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[R, H, Kmax, D]`` of the layout's slots (views when contiguous)."""
        if lay.slot_range is not None:
            a, b = lay.slot_range
            return self.k[layer][a:b, :, : lay.kmax], self.v[layer][a:b, :, : lay.kmax]
        return self.k[layer][lay.slot_idx, :, : lay.kmax], self.v[layer][
            lay.slot_idx, :, : lay.kmax
        ]


@dataclass
class Layout:
    """Where the N flattened tokens of one forward sit: slots, positions, padding, mask."""

    slots: list[int]  # R slots, in batch order
    lengths: list[int]  # [R] cache length of each slot before this forward
    q: list[int]  # [R] query tokens of each request
    tok_slot: torch.Tensor  # [N] slot of each token
    tok_pos: torch.Tensor  # [N] absolute position of each token
    slot_idx: torch.Tensor  # [R] slots as a tensor
    pad_idx: torch.Tensor | None  # [R, Qmax] index into the N tokens (None: q uniform, a view)
    unpad_idx: torch.Tensor | None  # [N] index into the R*Qmax padded rows
    mask: torch.Tensor | None  # [R, 1, Qmax, Kmax] bool, True = may attend (None: see causal)
    causal: bool  # no mask, plain causal attention (a fresh prefill); else None mask = see all
    kmax: int  # keys read per slot
    qmax: int
    slot_range: tuple[int, int] | None  # (a, b) when slots == range(a, b): cache views, no copy

    @property
    def single(self) -> bool:
        return len(self.slots) == 1

    @property
    def n(self) -> int:
        return int(self.tok_pos.shape[0])

    @classmethod
    def build(
        cls, slots: list[int], lengths: list[int], q: list[int], device: torch.device | str
    ) -> Layout:
        r = len(slots)
        qmax = max(q)
        kmax = max(ln + qi for ln, qi in zip(lengths, q, strict=True))
        pos = [ln + i for ln, qi in zip(lengths, q, strict=True) for i in range(qi)]
        tok_slot = [s for s, qi in zip(slots, q, strict=True) for _ in range(qi)]
        uniform = all(qi == qmax for qi in q)
        pad_idx = unpad_idx = None
        if not uniform:
            offsets, off = [], 0
            for qi in q:
                offsets.append(off)
                off += qi
            pad = [[offsets[j] + min(i, q[j] - 1) for i in range(qmax)] for j in range(r)]
            pad_idx = torch.tensor(pad, device=device)
            unpad_idx = torch.tensor(
                [j * qmax + i for j in range(r) for i in range(q[j])], device=device
            )
        # query i of request r may see keys 0 .. lengths[r] + i (causal within its own tokens)
        qpos = torch.tensor(
            [[ln + min(i, qi - 1) for i in range(qmax)] for ln, qi in zip(lengths, q, strict=True)],
            device=device,
        )  # [R, Qmax]
        causal = r == 1 and lengths[0] == 0 and qmax > 1  # a fresh prefill: plain causal
        mask = None
        if not causal and not (r == 1 and qmax == 1):  # one query token sees every key
            mask = torch.arange(kmax, device=device)[None, None, None, :] <= qpos[:, None, :, None]
        contiguous = slots == list(range(slots[0], slots[0] + r))
        return cls(
            slots=list(slots),
            lengths=list(lengths),
            q=list(q),
            tok_slot=torch.tensor(tok_slot, device=device),
            tok_pos=torch.tensor(pos, device=device),
            slot_idx=torch.tensor(slots, device=device),
            pad_idx=pad_idx,
            unpad_idx=unpad_idx,
            mask=mask,
            causal=causal,
            kmax=kmax,
            qmax=qmax,
            slot_range=(slots[0], slots[0] + r) if contiguous else None,
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, ...] -> [R, Qmax, ...]``."""
        if self.pad_idx is None:
            return x.view(len(self.slots), self.qmax, *x.shape[1:])
        return x[self.pad_idx]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """``[R, Qmax, ...] -> [N, ...]``."""
        flat = x.reshape(-1, *x.shape[2:])
        return flat if self.unpad_idx is None else flat[self.unpad_idx]
