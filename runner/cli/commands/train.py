"""Train the engine's models on offline corpora (stdlib code, pydoc prose, generated arithmetic).

``spectune train target`` trains the byte-level target LM; ``spectune train drafter --kind
dspark|dflash|ar|mtp1`` trains a drafter against the committed (frozen) target. Runs are seeded
and resumable: rerun the same command and it continues from ``--run-dir``. The result is written
to ``engine/checkpoints/<name>.safetensors`` (fp16) with a model card ``<name>.md``.
"""

from __future__ import annotations

import argparse
import sys

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli.options import add_force, bounded_float, bounded_int, seed_int, threads_int
from runner.cli.text import command_line

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
    from runner.paths import out_dir as out_dir_of

    if args.device != "cpu":  # checked before any work (drafter training may use CUDA)
        from engine.load import resolve_device

        resolve_device(args.device, args.threads)
    import torch

    from engine import checkpoint
    from engine.drafter import KINDS
    from engine.train import train

    torch.set_num_threads(args.threads)
    kinds = _kinds(args.what, args.kind, KINDS)
    name = {"target": "target", "draft-model": "draft"}.get(args.what, "+".join(kinds))
    ckpts = tuple(f"{k}.safetensors" for k in ("target", "draft", *KINDS))
    out_dir = out_dir_of(args.out_dir, NAME, "--out-dir", force=args.force, known=ckpts,
                         mark=False) if args.out_dir else checkpoint.CHECKPOINTS  # fmt: skip
    run_dir = out_dir_of(args.run_dir or f"runs/train/{name}", NAME, "--run-dir", force=True,
                         mark=False)  # fmt: skip
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "lr") if getattr(args, k)}
    for key, value in overrides.items():
        if value <= 0:
            raise InputError(f"--{key} must be positive, got {value}")
    desc = {"target": "train target", "draft-model": "distil draft"}.get(
        args.what, f"train {','.join(kinds)}")  # fmt: skip
    with _Steps(args, desc) as hook:
        done = train(args.what, kinds, seed=args.seed, overrides=overrides, target=args.target,
                     out_dir=out_dir, run_dir=run_dir, device=args.device, on_step=hook,
                     command=command_line())  # fmt: skip
    _print(args, done)
    return 0


def _kinds(what: str, text: str | None, known: tuple[str, ...]) -> list[str]:
    kinds = [k for k in (text or "").split(",") if k]
    if what == "drafter" and not kinds:
        raise InputError("train drafter needs --kind (dspark, dflash, ar and/or mtp1)")
    for k in kinds:
        if k not in known:
            raise InputError(f"--kind: unknown drafter {k!r} (known: {', '.join(known)})")
    return kinds


def _print(args: argparse.Namespace, done: dict[str, dict]) -> None:
    """The trained models (``done``: by name, from engine.train.train) as JSON or one line each."""
    if args.what != "drafter":  # one model: its summary is the object
        (only,) = done.values()
        if args.json:
            print(json_line(only))
        elif args.what == "target":
            print(f"wrote {only['checkpoint']} ({only['steps_done']} steps); held-out "
                  f"bits/byte: {only['heldout_bits_per_byte']}")  # fmt: skip
        else:
            print(f"wrote {only['checkpoint']} ({only['train']['steps']} steps); held-out "
                  f"teacher-forced: {only['heldout']}")  # fmt: skip
        return
    if args.json:
        print(json_line(done))
        return
    for i in done.values():
        taus = {d: v["expected_tau_teacher_forced"] for d, v in i["heldout"].items()}
        print(f"wrote {i['checkpoint']} ({i['steps_done']} steps); teacher-forced tau: {taus}")


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
