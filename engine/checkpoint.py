"""Checkpoints: weights in safetensors (fp16 when committed), the config as JSON metadata.

A committed model is ``engine/checkpoints/<name>.safetensors`` with its model card
``<name>.md`` beside it. The metadata holds ``kind`` ("target" or a drafter kind), ``config`` (the
frozen dataclass as a plain dict) and ``info`` (training summary), so a model is rebuilt from the
file alone. Resumable training state (optimizer, step, RNG) is a separate ``.pt`` in the run dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def path_of(name: str) -> Path:
    """A checkpoint name ("target", "dspark", ...) or a path to a ``.safetensors`` file."""
    p = Path(name)
    if p.suffix == ".safetensors":
        return p
    return CHECKPOINTS / f"{name}.safetensors"


def save(
    path: Path,
    state: dict[str, torch.Tensor],
    kind: str,
    config: dict,
    info: dict | None = None,
    dtype: torch.dtype | None = torch.float16,
) -> None:
    """Write ``state`` (cast to ``dtype`` unless None) with kind, config and info metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach())
        .contiguous()
        .cpu()
        for k, v in state.items()
    }
    meta = {"kind": kind, "config": json.dumps(config), "info": json.dumps(info or {})}
    save_file(tensors, str(path), metadata=meta)


def read_meta(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {
        "kind": meta.get("kind", ""),
        "config": json.loads(meta.get("config", "{}")),
        "info": json.loads(meta.get("info", "{}")),
    }


def load_state(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors as float32 on ``device`` (committed files are fp16)."""
    state = load_file(str(path), device="cpu")
    return {k: (v.float() if v.is_floating_point() else v).to(device) for k, v in state.items()}


def load_target(name: str = "target", device: str | torch.device = "cpu"):
    """The target model of checkpoint ``name`` (float32, eval mode, no gradients)."""
    from engine.model import Target, TargetConfig

    path = path_of(name)
    meta = read_meta(path)
    if meta["kind"] != "target":
        raise ValueError(f"{path}: not a target checkpoint (kind {meta['kind']!r})")
    model = Target(TargetConfig(**meta["config"]))
    model.load_state_dict(load_state(path))
    model.requires_grad_(False)
    return model.to(device).eval()


def load_drafter(name: str, target, device: str | torch.device = "cpu"):
    """A drafter checkpoint on top of ``target`` (whose embedding and LM head it shares)."""
    from engine.drafter import Drafter, DrafterConfig

    path = path_of(name)
    meta = read_meta(path)
    cfg = DrafterConfig(**meta["config"])
    if meta["kind"] != cfg.kind:
        raise ValueError(f"{path}: kind {meta['kind']!r} differs from its config")
    drafter = Drafter(cfg, target.embed, target.head, target.cfg.dim)
    missing, unexpected = drafter.load_state_dict(load_state(path), strict=False)
    if unexpected or any(not k.startswith("shared.") for k in missing):
        raise ValueError(f"{path}: weights do not match the config ({missing}, {unexpected})")
    drafter.requires_grad_(False)
    return drafter.to(device).eval()
