"""Measure the engine's step costs into a cost profile the simulator loads (``--profile FILE``).

Verify time over batch tokens B (dense at small B, sparser above, up to the engine's max batch
tokens) and over context length, draft time over requests, prefill time over prompt tokens; each
point is the mean of timed repeats after a warm-up, its median and inter-quartile range kept in the
metadata. The file holds the 1D SPS table (``form: sps``, loaded by default) and the additive fit
``T(bs, M) = bias + α(bs) + θ(M)`` beside it (``--profile FILE.yaml?form=additive``), with the
device, threads, torch version, date, load average and project commit. Timings on a shared
machine are noisy: run it when the machine is quiet and keep ``--threads`` explicit.

  spectune profile --engine builtin:tiny --quick --out cpu-tiny.yaml
  spectune replay --profile cpu-tiny.yaml

``--engine vllm:TARGET[,draft=DIR]`` profiles the real vLLM (engine/vllmcost.py); with
``--served``, the served engine's own per-step log (engine/vllmserved.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from profiles.documents import json_line
from profiles.errors import InputError
from runner.cli import progress
from runner.cli.engines import engine_checkpoints
from runner.cli.options import (
    MAX_SLOTS,
    add_force,
    bounded_int,
    positive_int,
    seed_int,
    threads_int,
)
from runner.cli.text import command_line
from runner.paths import out_file

NAME = "profile"
HELP = "measure the engine's verify/draft/prefill costs into a cost profile (YAML)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="builtin:tiny",
                   help="builtin:tiny (committed checkpoints) or vllm:TARGET[,draft=DIR] (the "
                   "real vLLM; TARGET/DIR: exported HF dir or checkpoint name)")  # fmt: skip
    p.add_argument("--drafter", help="drafter checkpoint name or path (default dspark)")
    p.add_argument("--target", help="target checkpoint name or path (default: the engine's)")
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="profile to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=threads_int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quick", action="store_true", help="fewer points and repeats (~1 minute)")
    p.add_argument("--slots", type=bounded_int(2, MAX_SLOTS, "each slot holds a KV cache"),
                   default=32,
                   help="largest batch of requests measured (default 32)")  # fmt: skip
    p.add_argument(
        "--repeats", type=positive_int, help="timed repeats per point (default 9, quick 5)"
    )
    p.add_argument("--context-requests", type=positive_int, metavar="R",
                   help="most requests in a context point's batch (default: the slots; the "
                   "points run R = 1, 4, 16, ... up to it, so the context term covers the KV "
                   "range of every batch the slots allow)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, help="seed of prompts and measuring order")
    p.add_argument("--served", action="store_true",
                   help="vllm: profile the served engine (vllm serve, its per-step log) instead "
                   "of an in-process engine core (engine/vllmserved.py)")  # fmt: skip
    add_force(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")


def run(args: argparse.Namespace) -> int:
    if args.served and not args.engine.startswith("vllm:"):
        raise InputError("--served profiles a vLLM server: use --engine vllm:TARGET,draft=DIR")
    if args.engine.startswith("vllm:"):
        return _vllm(
            args, out_file(args.out, force=args.force), progress.bar(args, "profile", unit="call")
        )
    target, drafter = engine_checkpoints(args.engine)
    if args.slots < 2:
        raise InputError("--slots must be >= 2 (the largest prefill uses two requests)")
    out = out_file(args.out, force=args.force)
    from engine import costfit, profiler
    from engine.load import build_engine, resolve_device
    from profiles.store import read_cost, write_yaml

    device = resolve_device(args.device, args.threads)
    target, drafter = args.target or target, args.drafter or drafter
    if drafter == "none":
        raise InputError("--drafter: the profiler measures drafting, it needs a drafter")
    engine, _ = build_engine(target, drafter, None, device=device, temperature=1.0,
                             slots=args.slots)  # fmt: skip
    cfg = profiler.ProfileConfig(
        quick=args.quick,
        repeats=args.repeats or 0,
        seed=args.seed,
        context_requests=args.context_requests or 0,
    )
    with progress.bar(args, "profile", unit="call") as bar:
        prof = costfit.profile_engine(engine, cfg, spec=args.engine, target=target,
                                      drafter=drafter, device=device, command=command_line(),
                                      on_total=bar.start, tick=bar.update)  # fmt: skip
    write_yaml(out, prof.doc)
    read_cost(out), read_cost(out, form="additive")  # what we wrote loads
    _print(args, out, prof)
    return 0


def _print(args: argparse.Namespace, out: Path, prof) -> None:
    """The measured profile (an engine.costfit.EngineProfile) as JSON or a few lines."""
    summary = {"out": str(out), **prof.summary}
    if args.json:
        print(json_line(summary))
        return
    fit = prof.fit
    ms_at = ", ".join(f"B={b}: {v:.3g}" for b, v in summary["verify_ms"].items())
    dr_at = ", ".join(f"R={r}: {v:.3g}" for r, v in summary["draft_ms"].items())
    print(f"wrote {out} ({summary['verify_points']} verify points, {prof.wall_s:.0f} s)")
    print(f"  verify ms {ms_at}; draft ms {dr_at}")
    print(f"  additive fit: rms relative error {fit['rms_rel_error']:.1%}, "
          f"max {fit['max_rel_error']:.1%} over {fit['points']} points")  # fmt: skip
    before, after = summary["speed_reference_ms"]
    print(f"  speed reference {before:.3g} ms before, {after:.3g} ms after (drift "
          f"{after / before - 1:+.1%}); load average {summary['load_average']}")  # fmt: skip
    print(f"  use: --profile {out}")


def _vllm(args: argparse.Namespace, out: Path, bar: progress.Progress) -> int:
    """``--engine vllm:TARGET[,draft=DIR]``: the real vLLM engine's steps (engine/vllmcost.py)."""
    from engine import vllm
    from profiles.store import read_cost, write_yaml

    why = vllm.missing()
    if why:
        raise InputError(why, where="--engine")
    cfg = _vllm_config(args)
    meta = {"threads": args.threads, "quick": args.quick, "seed": args.seed,
            "command": command_line()}  # fmt: skip
    try:
        doc = _vllm_doc(args, cfg, meta, out, bar)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc), where="--engine") from None
    finally:
        bar.close()
    write_yaml(out, doc)
    read_cost(out)  # what we wrote loads
    fit, env = (
        doc["metadata"].get("additive_fit") or doc["metadata"]["fit"],
        doc["metadata"]["envelope"],
    )
    summary = {"out": str(out), "source": doc["source"], "additive_fit": fit, "envelope": env,
               "wall_s": doc["metadata"]["wall_s"]}  # fmt: skip
    if args.json:
        print(json_line(summary))
    else:
        print(f"wrote {out} ({fit['points']} decode samples, {summary['wall_s']:.0f} s)")
        print(f"  additive fit: rms relative error {fit['rms_rel_error']:.1%}, "
              f"max {fit['max_rel_error']:.1%}; envelope {env}")  # fmt: skip
        print(f"  use: --profile {out}")
    return 0


def _vllm_config(args: argparse.Namespace):
    """The vLLM measurement grid: the full one, or the ``--quick`` one."""
    from engine import vllmcost

    try:
        target, draft = vllmcost.parse_engine(args.engine)
        ks = (0, 1, 2, 4) if draft else (0,)
        return vllmcost.VllmProfileConfig(
            requests=(1, 4, 8) if args.quick else (1, 2, 4, 8, 16),
            ks=(0, 2) if args.quick and draft else ks,
            repeats=args.repeats or (2 if args.quick else 3), steps=4 if args.quick else 6,
            chunks=(16, 128) if args.quick else (16, 64, 256), seed=args.seed,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _vllm_doc(args: argparse.Namespace, cfg, meta: dict, out: Path, bar) -> dict:
    """The in-process profile (engine/vllmcost.py) or, with ``--served``, the served one (server
    logs beside ``out``)."""
    from engine import serve, vllmcost, vllmserved

    if not args.served:
        bar.start(vllmcost.total_calls(cfg))
        return vllmcost.profile(args.engine, cfg, {}, meta, tick=bar.update)
    scfg = vllmserved.ServedProfileConfig(
        requests=(1, 2, 4, 8) if args.quick else (1, 2, 4, 8, 16),
        ks=(2, 4) if args.quick else (1, 2, 4), repeats=args.repeats or (1 if args.quick else 2),
        seed=args.seed,
    )  # fmt: skip
    logs = out.with_name(out.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    bar.start(vllmserved.total_calls(scfg))
    try:
        return vllmserved.profile(args.engine, scfg, meta, logs, tick=bar.update)
    except serve.ServerError as exc:
        raise InputError(str(exc), where="--engine") from None
