"""Building an engine from committed checkpoints and CLI-style names (device, drafter, policy)."""

from __future__ import annotations

import torch

from engine import checkpoint
from engine.drafter import KINDS
from engine.engine import Engine
from profiles.errors import InputError


def resolve_device(name: str, threads: int = 1) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA only when asked and present."""
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, not {name!r}")
    return device


def build_engine(
    target: str,
    drafter: str,
    policy_spec: str | None,
    *,
    device: torch.device,
    temperature: float,
    slots: int = 8,
):
    """An :class:`Engine` and a policy (None for plain decoding) from names."""
    from engine.decode import check_policy
    from policies import make_policy

    tpath = checkpoint.path_of(target)
    if not tpath.exists():
        raise InputError(f"{tpath}: no such target checkpoint")
    model = checkpoint.load_target(target, device)
    if drafter == "none":
        if policy_spec and make_policy(policy_spec).name != "none":
            raise InputError("--policy needs a drafter (--drafter none decodes without drafts)")
        return Engine(model, None, slots=slots, temperature=temperature), None
    if drafter not in KINDS and not checkpoint.path_of(drafter).exists():
        raise InputError(f"--drafter: unknown drafter {drafter!r} (known: {', '.join(KINDS)})")
    dpath = checkpoint.path_of(drafter)
    if not dpath.exists():
        raise InputError(f"{dpath}: no such drafter checkpoint")
    d = checkpoint.load_drafter(drafter, model, device)
    policy = make_policy(policy_spec or f"fixed:k={d.cfg.gamma}")
    check_policy(policy)
    return Engine(model, d, slots=slots, temperature=temperature), policy
