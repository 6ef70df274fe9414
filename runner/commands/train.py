"""Train the engine's models on offline corpora (stdlib code, pydoc prose, generated arithmetic).

``spectune train target`` trains the byte-level target LM; ``spectune train drafter --kind
dspark|dflash|ar|mtp1`` trains a drafter against the committed (frozen) target. Runs are seeded
and resumable: rerun the same command and it continues from ``--run-dir``. The result is written
to ``engine/checkpoints/<name>.safetensors`` (fp16) with a model card ``<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from profiles.errors import InputError

NAME = "train"
HELP = "train the engine's target LM or a drafter on offline corpora"

KINDS = ("dspark", "dflash", "ar", "mtp1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        choices=("target", "drafter", "draft-model"),
        help="which model to train (draft-model: a standalone Llama draft for vLLM, 'draft')",
    )
    parser.add_argument(
        "--kind", help="drafter kind(s), comma-separated: dspark,dflash,ar,mtp1 (one run)"
    )
    parser.add_argument("--steps", type=int, help="optimizer steps (default: per model)")
    parser.add_argument("--batch", type=int, help="sequences per step")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="the one seed of the run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (drafter training)")
    parser.add_argument("--target", default="target", help="target checkpoint (name or path)")
    parser.add_argument(
        "--out-dir", help="where <name>.safetensors and <name>.md go (default engine/checkpoints)"
    )
    parser.add_argument("--run-dir", help="resumable state (default runs/train/<name>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the training summary as JSON")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from engine import checkpoint

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    kinds = [k for k in (args.kind or "").split(",") if k]
    if args.what == "drafter" and not kinds:
        raise InputError("train drafter needs --kind (dspark, dflash, ar and/or mtp1)")
    for k in kinds:
        if k not in KINDS:
            raise InputError(f"--kind: unknown drafter {k!r} (known: {', '.join(KINDS)})")
    name = {"target": "target", "draft-model": "draft"}.get(args.what, "+".join(kinds))
    out_dir = Path(args.out_dir) if args.out_dir else checkpoint.CHECKPOINTS
    out = out_dir / f"{'draft' if args.what == 'draft-model' else 'target'}.safetensors"
    run_dir = Path(args.run_dir or f"runs/train/{name}")
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "lr") if getattr(args, k)}
    for key, value in overrides.items():
        if value <= 0:
            raise InputError(f"--{key} must be positive, got {value}")
    command = "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.what == "target":
        from engine.model import TargetConfig
        from engine.train import TrainConfig, train_target

        cfg = dataclasses.replace(TrainConfig(seed=args.seed), **overrides)
        info = train_target(TargetConfig(), cfg, run_dir, out, command, quiet=args.quiet)
    elif args.what == "draft-model":
        return _draft_model(args, overrides, run_dir, out, command)
    else:
        from engine.distill import DistillConfig, train_drafter

        target_path = checkpoint.path_of(args.target)
        if not target_path.exists():
            raise InputError(f"{target_path}: no target checkpoint (train the target first)")
        cfg = dataclasses.replace(DistillConfig(seed=args.seed), **overrides)
        outs = {k: out_dir / f"{k}.safetensors" for k in kinds}
        infos = train_drafter(
            kinds, target_path, cfg, run_dir, outs, command, args.device, quiet=args.quiet
        )
        summary = {
            k: {"checkpoint": str(outs[k]), **{a: b for a, b in i.items() if a != "loss_curve"}}
            for k, i in infos.items()
        }
        if args.json:
            print(json.dumps(summary))
        else:
            for k, i in infos.items():
                taus = {d: v["expected_tau_teacher_forced"] for d, v in i["heldout"].items()}
                print(f"wrote {outs[k]} ({i['steps_done']} steps); teacher-forced tau: {taus}")
        return 0
    summary = {k: v for k, v in info.items() if k != "loss_curve"}
    if args.json:
        print(json.dumps({"checkpoint": str(out), **summary}))
    else:
        held = info["heldout_bits_per_byte"]
        print(f"wrote {out} ({info['steps_done']} steps); held-out bits/byte: {held}")
    return 0


def _draft_model(args, overrides: dict, run_dir: Path, out: Path, command: str) -> int:
    """``train draft-model``: distil the standalone draft LM (engine/draftlm.py)."""
    import dataclasses

    from engine import checkpoint
    from engine.draftlm import DistilConfig, distil

    if not checkpoint.path_of(args.target).exists():
        raise InputError(f"{checkpoint.path_of(args.target)}: no target checkpoint")
    target = checkpoint.load_target(args.target)
    cfg = dataclasses.replace(DistilConfig(seed=args.seed), **overrides)
    info = distil(target, cfg, run_dir, out, command, quiet=args.quiet)
    if args.json:
        print(
            json.dumps(
                {"checkpoint": str(out), **{k: v for k, v in info.items() if k != "loss_curve"}}
            )
        )
    else:
        print(f"wrote {out} ({cfg.steps} steps); held-out teacher-forced: {info['heldout']}")
    return 0
