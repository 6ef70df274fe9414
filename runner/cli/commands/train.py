"""Train the engine's models on offline corpora (stdlib code, pydoc prose, generated arithmetic).

``spectune train target`` trains the byte-level target LM; ``spectune train drafter --kind
dspark|dflash|ar|mtp1`` trains a drafter against the committed (frozen) target. Runs are seeded
and resumable: rerun the same command and it continues from ``--run-dir``. The result is written
to ``engine/checkpoints/<name>.safetensors`` (fp16) with a model card ``<name>.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli.options import add_force, bounded_float, bounded_int, seed_int, threads_int

NAME = "train"
HELP = "train the engine's target LM or a drafter on offline corpora"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        choices=("target", "drafter", "draft-model"),
        help="which model to train (draft-model: a standalone Llama draft for vLLM, 'draft')",
    )
    parser.add_argument(
        "--kind", help="drafter kind(s), comma-separated: dspark,dflash,ar,mtp1 (one run)"
    )
    parser.add_argument("--steps", type=bounded_int(1, 10_000_000),
                        help="optimizer steps (default: per model)")  # fmt: skip
    parser.add_argument("--batch", type=bounded_int(1, 4096), help="sequences per step")
    parser.add_argument("--lr", type=bounded_float(0.0, 10.0, inclusive=False),
                        help="peak learning rate")  # fmt: skip
    parser.add_argument("--seed", type=seed_int, default=0, help="the one seed of the run")
    parser.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (drafter training)")
    parser.add_argument("--target", default="target", help="target checkpoint (name or path)")
    parser.add_argument(
        "--out-dir", help="where <name>.safetensors and <name>.md go (default engine/checkpoints)"
    )
    parser.add_argument("--run-dir", help="resumable state (default runs/train/<name>)")
    add_force(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the training summary as JSON")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from runner.paths import out_dir as out_dir_of

    if args.device != "cpu":  # checked before any work (drafter training may use CUDA)
        from engine.load import resolve_device

        resolve_device(args.device, args.threads)
    import torch

    from engine import checkpoint
    from engine.drafter import KINDS

    torch.set_num_threads(args.threads)
    kinds = [k for k in (args.kind or "").split(",") if k]
    if args.what == "drafter" and not kinds:
        raise InputError("train drafter needs --kind (dspark, dflash, ar and/or mtp1)")
    for k in kinds:
        if k not in KINDS:
            raise InputError(f"--kind: unknown drafter {k!r} (known: {', '.join(KINDS)})")
    name = {"target": "target", "draft-model": "draft"}.get(args.what, "+".join(kinds))
    ckpts = tuple(f"{k}.safetensors" for k in ("target", "draft", *KINDS))
    out_dir = out_dir_of(args.out_dir, NAME, "--out-dir", force=args.force, known=ckpts,
                         mark=False) if args.out_dir else checkpoint.CHECKPOINTS  # fmt: skip
    out = out_dir / f"{'draft' if args.what == 'draft-model' else 'target'}.safetensors"
    run_dir = out_dir_of(args.run_dir or f"runs/train/{name}", NAME, "--run-dir", force=True,
                         mark=False)  # fmt: skip
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "lr") if getattr(args, k)}
    for key, value in overrides.items():
        if value <= 0:
            raise InputError(f"--{key} must be positive, got {value}")
    command = "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.what == "target":
        from engine.model import TargetConfig
        from engine.train import TrainConfig, train_target

        cfg = dataclasses.replace(TrainConfig(seed=args.seed), **overrides)
        with _Steps(args, "train target") as hook:
            info = train_target(TargetConfig(), cfg, run_dir, out, command, on_step=hook)
    elif args.what == "draft-model":
        return _draft_model(args, overrides, run_dir, out, command)
    else:
        from engine.distill import DistillConfig, train_drafter

        target_path = checkpoint.path_of(args.target)
        if not target_path.exists():
            raise InputError(f"{target_path}: no target checkpoint (train the target first)")
        cfg = dataclasses.replace(DistillConfig(seed=args.seed), **overrides)
        outs = {k: out_dir / f"{k}.safetensors" for k in kinds}
        with _Steps(args, f"train {','.join(kinds)}") as hook:
            infos = train_drafter(
                kinds, target_path, cfg, run_dir, outs, command, args.device, on_step=hook
            )
        summary = {
            k: {"checkpoint": str(outs[k]), **{a: b for a, b in i.items() if a != "loss_curve"}}
            for k, i in infos.items()
        }
        if args.json:
            print(json_line(summary))
        else:
            for k, i in infos.items():
                taus = {d: v["expected_tau_teacher_forced"] for d, v in i["heldout"].items()}
                print(f"wrote {outs[k]} ({i['steps_done']} steps); teacher-forced tau: {taus}")
        return 0
    summary = {k: v for k, v in info.items() if k != "loss_curve"}
    if args.json:
        print(json_line({"checkpoint": str(out), **summary}))
    else:
        held = info["heldout_bits_per_byte"]
        print(f"wrote {out} ({info['steps_done']} steps); held-out bits/byte: {held}")
    return 0


class _Steps:
    """The training hook: a bar on a terminal; piped, one line per checkpoint (logs)."""

    def __init__(self, args: argparse.Namespace, desc: str) -> None:
        self.args, self.desc, self.bar = args, desc, None

    def __call__(self, done: int, total: int, losses: dict[str, float], saved: bool) -> None:
        from runner.cli.progress import bar

        if self.bar is None:  # the first step tells where a resumed run starts
            self.bar = bar(self.args, self.desc, total=total, unit="step", initial=done - 1)
        self.bar.update(1)
        self.bar.note(" ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        if saved and not self.bar.on and not self.args.quiet:  # piped: a log line instead
            text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            sys.stderr.write(f"step {done}/{total} loss {text}\n")
            sys.stderr.flush()

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *_) -> None:
        if self.bar is not None:
            self.bar.close()


def _draft_model(args, overrides: dict, run_dir: Path, out: Path, command: str) -> int:
    """``train draft-model``: distil the standalone draft LM (engine/draftlm.py)."""
    import dataclasses

    from engine import checkpoint
    from engine.draftlm import DistilConfig, distil

    if not checkpoint.path_of(args.target).exists():
        raise InputError(f"{checkpoint.path_of(args.target)}: no target checkpoint")
    target = checkpoint.load_target(args.target)
    cfg = dataclasses.replace(DistilConfig(seed=args.seed), **overrides)
    with _Steps(args, "distil draft") as hook:
        info = distil(target, cfg, run_dir, out, command, on_step=hook)
    if args.json:
        print(
            json_line(
                {"checkpoint": str(out), **{k: v for k, v in info.items() if k != "loss_curve"}}
            )
        )
    else:
        print(f"wrote {out} ({cfg.steps} steps); held-out teacher-forced: {info['heldout']}")
    return 0
