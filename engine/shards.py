"""SGLang's STS confidence shards as spectune acceptance records (``spectune import
sglang-shards STEM``).

SGLang 0.5.23 collects them when ``SGLANG_DSPARK_STS_COLLECT_PATH=STEM`` is set
(``srt/speculative/dspark_components/dspark_observability.py``): every verify step its
``StsDataRecorder`` (``dspark_sts.py``) buffers the confidence head's raw logits and a prefix
mask, and every ``flush_every`` steps ``torch.save``\\ s ``{"logits": float32 [n, γ],
"prefix_mask": float32 [n, γ]}`` to ``{STEM}.{k}.pt``, k = 0, 1, ...; ``prefix_mask[i, j] =
1[j < num_correct_drafts_i]``, the drafts the target's argmax matched (greedy acceptance,
``compute_dflash_correct_drafts_and_bonus``). ``benchmark/dspark_sts_fit.py`` fits STS on them.

Each row becomes one records round: ``logits`` as recorded, ``accepted = Σ_j prefix_mask``. The
shards carry no request ids, steps or domains, so every round is its own request (within-request
correlation is lost: a replay draws rounds independently) in one ``--domain``; the records' meta
says so. Shards are read with ``torch.load(weights_only=True)`` (tensors only, no code); every
problem is one InputError naming the shard. This module imports torch (the engine extra).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from profiles.errors import InputError
from profiles.records import Records, _version


def shard_paths(stem: str | Path) -> list[Path]:
    """``{stem}.{k}.pt`` for k = 0..K−1 (all present), or ``[stem]`` when it is one ``.pt``."""
    p = Path(stem)
    if p.suffix == ".pt" and p.is_file():
        return [p]
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("no such directory for the shards", where=str(parent))
    pattern = re.compile(re.escape(p.name) + r"\.(\d+)\.pt")
    found = {int(m.group(1)): parent / m.group(0)
             for m in map(pattern.fullmatch, (f.name for f in parent.iterdir())) if m}  # fmt: skip
    if not found:
        raise InputError(f"no SGLang STS shards {p.name}.0.pt, {p.name}.1.pt, ... found "
                         "(STEM is SGLANG_DSPARK_STS_COLLECT_PATH)", where=str(parent))  # fmt: skip
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise InputError(f"shard {p.name}.{missing[0]}.pt is missing (shards run 0..{max(found)})",
                         where=str(parent))  # fmt: skip
    return [found[k] for k in range(len(found))]


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 [n, γ], prefix mask [n, γ]) of one shard, validated."""
    where = str(path)
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle, zip, EOF and torch errors alike)
        raise InputError(f"not a torch shard ({type(exc).__name__})", where=where) from None
    if not isinstance(shard, dict) or not {"logits", "prefix_mask"} <= set(shard):
        raise InputError("expected a dict with 'logits' and 'prefix_mask' tensors (SGLang's "
                         "StsDataRecorder)", where=where)  # fmt: skip
    logits, mask = shard["logits"], shard["prefix_mask"]
    if not (isinstance(logits, torch.Tensor) and isinstance(mask, torch.Tensor)):
        raise InputError("'logits' and 'prefix_mask' must be tensors", where=where)
    if logits.ndim != 2 or logits.shape != mask.shape or logits.shape[0] == 0:
        raise InputError(f"logits {tuple(logits.shape)} and prefix_mask {tuple(mask.shape)} "
                         "must have the same shape [n >= 1, gamma]", where=where)  # fmt: skip
    if not logits.is_floating_point():
        raise InputError(f"logits must be floats, got {logits.dtype}", where=where)
    z = logits.detach().to(torch.float32).numpy()  # [n, γ]
    m = mask.detach().to(torch.float64).numpy()  # [n, γ]
    if not np.isfinite(z).all():
        raise InputError("logits contain NaN or infinity", where=where)
    if not np.isin(m, (0.0, 1.0)).all() or (np.diff(m, axis=1) > 0).any():
        raise InputError("prefix_mask rows must be 1s then 0s (drafts accepted before the "
                         "first rejection)", where=where)  # fmt: skip
    return z, m


def read_shards(stem: str | Path, domain: str = "chat", command: str = "") -> Records:
    """Records (one round per shard row, see the module docstring) from SGLang's STS shards."""
    if not domain:
        raise InputError("--domain must not be empty")
    paths, logits, accepted, files = shard_paths(stem), [], [], []
    gamma = None
    for path in paths:
        z, m = _load(path)
        if gamma is not None and z.shape[1] != gamma:
            raise InputError(f"gamma {z.shape[1]} disagrees with earlier shards' gamma {gamma}",
                             where=str(path))  # fmt: skip
        gamma = z.shape[1]
        logits.append(z)
        accepted.append(m.sum(axis=1).astype(np.int16))
        files.append({"file": path.name, "rows": int(z.shape[0]),
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})  # fmt: skip
    z, a = np.concatenate(logits), np.concatenate(accepted)
    n = int(z.shape[0])
    meta: dict[str, Any] = {
        "gamma": int(gamma or 0),
        "source": f"imported: SGLang StsDataRecorder shards {Path(stem).name} ({len(paths)} "
        f"shard(s), {n} rounds; greedy acceptance; no request ids, so each round is its own "
        "request)",
        "shards": files,
        "spectune_version": _version(),
        "command": command,
    }
    # the prefix mask covers all γ positions, so each round's A is what verifying all γ drafts
    # gains: ℓ = γ for every row (each its own request, so replay's conditioning is moot)
    full = np.full(n, z.shape[1], dtype=np.int16)
    return Records(np.full(n, domain), np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                   z, a, meta, verified=full)  # fmt: skip


def summary(records: Records) -> dict[str, Any]:
    """What ``import sglang-shards`` prints: rounds, γ, mean accepted drafts, shards."""
    return {"rounds": records.rounds, "gamma": records.gamma,
            "mean_accepted": float(records.accepted.mean()),
            "shards": len(records.meta.get("shards", []))}  # fmt: skip
