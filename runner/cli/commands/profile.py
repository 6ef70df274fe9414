"""Measure the engine's step costs into a cost profile the simulator loads (``--profile FILE``).

Verify time over batch tokens B (dense at small B, sparser above, up to the engine's max batch
tokens) and over context length, draft time over requests, prefill time over prompt tokens; each
point is the median of timed repeats after a warm-up, its inter-quartile range kept in the
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
import shlex
import sys
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
    from engine import costfit, profiler, provenance
    from engine.load import build_engine, resolve_device
    from profiles.store import read_cost, write_yaml

    device = resolve_device(args.device, args.threads)
    target, drafter = args.target or target, args.drafter or drafter
    if drafter == "none":
        raise InputError("--drafter: the profiler measures drafting, it needs a drafter")
    engine, _ = build_engine(target, drafter, None, device=device, temperature=1.0,
                             slots=args.slots)  # fmt: skip
    cfg = profiler.ProfileConfig(quick=args.quick, repeats=args.repeats or 0, seed=args.seed)
    load_before = provenance.load_average()
    bar = progress.bar(args, "profile", unit="call")
    try:
        ms = profiler.measure(engine, cfg, on_total=bar.start, tick=bar.update)
    finally:
        bar.close()
    env = provenance.environment(device)
    source = (
        f"measured: engine {args.engine} ({Path(target).stem} + {Path(drafter).stem}) on "
        f"{device.type} (threads={env['threads']}, torch {env['torch']}), {env['date'][:10]}, "
        f"commit {env['commit'][:12]}" + (" (quick)" if args.quick else "")
    )
    sps, add, fit = costfit.cost_models(ms, source, args.quick)
    meta = {
        **env,
        "engine": args.engine,
        "target": target,
        "drafter": drafter,
        "checkpoints_sha256": {
            "target": provenance.checkpoint_digest(target),
            "drafter": provenance.checkpoint_digest(drafter),
        },
        "temperature": 1.0,
        "load_average": {"before": load_before, "after": provenance.load_average()},
        "quick": args.quick,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "seed": args.seed,
        "command": "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    write_yaml(out, costfit.document(ms, sps, add, fit, meta))
    read_cost(out), read_cost(out, form="additive")  # what we wrote loads
    summary = _summary(out, sps, add, fit, ms, meta)
    if args.json:
        print(json_line(summary))
    else:
        ms_at = ", ".join(f"B={b}: {v:.3g}" for b, v in summary["verify_ms"].items())
        dr_at = ", ".join(f"R={r}: {v:.3g}" for r, v in summary["draft_ms"].items())
        print(f"wrote {out} ({len(ms.verify.points)} verify points, {ms.wall_s:.0f} s)")
        print(f"  verify ms {ms_at}; draft ms {dr_at}")
        print(f"  additive fit: rms relative error {fit['rms_rel_error']:.1%}, "
              f"max {fit['max_rel_error']:.1%} over {fit['points']} points")  # fmt: skip
        before, after = summary["speed_reference_ms"]
        print(f"  speed reference {before:.3g} ms before, {after:.3g} ms after (drift "
              f"{after / before - 1:+.1%}); load average {meta['load_average']}")  # fmt: skip
        print(f"  use: --profile {out}")
    return 0


def _summary(out, sps, add, fit, ms, meta) -> dict:
    bs = [b for b in (1, 8, 64) if b <= sps.max_batch_tokens]
    rs = [r for r in (1, 8) if r <= ms.slots]
    return {
        "out": str(out),
        "source": sps.source,
        "max_batch_tokens": sps.max_batch_tokens,
        "verify_points": len(ms.verify.points),
        "verify_ms": {b: round(1e3 * sps.verify_time(1, b), 3) for b in bs},
        "draft_ms": {r: round(1e3 * sps.draft_time(r), 3) for r in rs},
        "prefill_ms": {
            int(n): round(1e3 * t, 3) for n, t in zip(sps.prefill.x, sps.prefill.y, strict=True)
        },
        "additive_rms_rel_error": round(fit["rms_rel_error"], 4),
        "additive_max_rel_error": round(fit["max_rel_error"], 4),
        "wall_s": round(ms.wall_s, 1),
        "speed_reference_ms": [round(1e3 * t, 3) for t in ms.reference_s],
        "load_average": meta["load_average"],
        "threads": meta["threads"],
        "device": meta["device"],
    }


def _vllm(args: argparse.Namespace, out: Path, bar: progress.Progress) -> int:
    """``--engine vllm:TARGET[,draft=DIR]``: the real vLLM engine's steps (engine/vllmcost.py)."""
    from engine import vllm, vllmcost
    from profiles.store import read_cost, write_yaml

    why = vllm.missing()
    if why:
        raise InputError(why, where="--engine")
    try:
        target, draft = vllmcost.parse_engine(args.engine)
        ks = (0, 1, 2, 4) if draft else (0,)
        cfg = vllmcost.VllmProfileConfig(
            requests=(1, 4, 8) if args.quick else (1, 2, 4, 8, 16),
            ks=(0, 2) if args.quick and draft else ks,
            repeats=args.repeats or (2 if args.quick else 3), steps=4 if args.quick else 6,
            chunks=(16, 128) if args.quick else (16, 64, 256), seed=args.seed,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from None
    meta = {"threads": args.threads, "quick": args.quick, "seed": args.seed,
            "command": "spectune " + " ".join(shlex.quote(a) for a in sys.argv[1:])}  # fmt: skip
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
