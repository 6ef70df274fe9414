"""Building an engine from committed checkpoint names, and the device it runs on."""

from __future__ import annotations

import torch

from engine import checkpoint
from engine.drafter import KINDS
from engine.engine import Engine
from policies.base import Policy
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
    policy: Policy | None,
    *,
    device: torch.device,
    temperature: float,
    slots: int = 8,
) -> tuple[Engine, Policy | None]:
    """An :class:`Engine` from checkpoint names, and the policy it decodes with: ``policy``, or
    ``fixed:k=γ`` of the drafter when None (None for plain decoding, drafter ``none``)."""
    from engine.decode import check_policy
    from policies.baseline import Fixed

    tpath = checkpoint.path_of(target)
    if not tpath.exists():
        raise InputError(f"{tpath}: no such target checkpoint")
    model = checkpoint.load_target(target, device)
    if drafter == "none":
        if policy is not None and policy.name != "none":
            raise InputError(f"policy {policy.spec} needs a drafter (drafter none decodes "
                             "without drafts)")  # fmt: skip
        return Engine(model, None, slots=slots, temperature=temperature), None
    if drafter not in KINDS and not checkpoint.path_of(drafter).exists():
        raise InputError(f"unknown drafter {drafter!r} (known: {', '.join(KINDS)})")
    dpath = checkpoint.path_of(drafter)
    if not dpath.exists():
        raise InputError(f"{dpath}: no such drafter checkpoint")
    d = checkpoint.load_drafter(drafter, model, device)
    policy = policy if policy is not None else Fixed(k=d.cfg.gamma)
    check_policy(policy)
    return Engine(model, d, slots=slots, temperature=temperature), policy
