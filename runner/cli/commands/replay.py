"""Replay a trace or a builtin workload through the simulated server under one policy.

Reads the workload as a stream, runs the profiled backend (cost model + acceptance model) and
prints the DESIGN §5 metrics: a table, or one JSON object with ``--json``. ``--out DIR`` writes
``requests.csv`` (one row per request) and ``summary.json`` (the same object as ``--json``,
with the resolved inputs that reproduce it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from policies.registry import check_gamma
from profiles.documents import json_line
from runner.cli import progress
from runner.cli.engines import add_live_args
from runner.cli.options import (
    add_model_args,
    add_output_args,
    add_server_args,
    add_workload_args,
    models_from_args,
    server_from_args,
    workload_from_args,
)
from runner.cli.vllm import add_vllm_args
from runner.paths import out_dir

NAME = "replay"
HELP = "replay a trace or builtin workload through the simulated server"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_args(p)
    add_model_args(p)
    add_server_args(p)
    p.add_argument("--backend", choices=("profiled", "live", "vllm"), default="profiled",
                   help="profiled: cost model + acceptance model (default); live: run the real "
                   "engine every step; vllm: a live vllm serve (runner/cli/vllm.py)")  # fmt: skip
    p.add_argument("--config", metavar="BEST.yaml",
                   help="run a tuned scheduler (spectune.scheduler/v1): its policy, cost table, "
                   "gamma and, unless given, --max-concurrency")  # fmt: skip
    p.set_defaults(max_concurrency=None)  # None: the --config's cap, else 64
    add_live_args(p)
    add_vllm_args(p)
    add_output_args(p)


def run(args: argparse.Namespace) -> int:
    from policies import make_policy
    from runner.summary import replay_workload, write_texts

    _check_prefill(args)
    _check_vllm_only(args)
    if args.backend == "vllm":
        return _vllm(args)
    policy = make_policy(args.policy)
    if args.backend == "live":
        from runner.cli.engines import clamp_to_context, engine_context

        clamp_to_context(args, engine_context(args), args.gamma or 7)
    cost, acceptance, gamma = models_from_args(args)
    workload = workload_from_args(args, cost)
    tuned = _tuned(args, acceptance)  # the tuned scheduler replaces --policy, --profile, --gamma
    if tuned is not None:
        policy, cost, gamma = tuned.policy(), tuned.cost_model(), tuned.gamma
    backend = None
    if args.backend == "live":
        from runner.cli.engines import build_live_backend

        temps = tuned.sts.temperatures if tuned is not None else None
        backend, gamma = build_live_backend(args, policy, cost, temps)
    check_gamma(policy, gamma, "--config" if tuned else "--policy")
    out = out_dir(args.out, NAME, force=args.force) if args.out else None  # before the work
    config = server_from_args(args, gamma)
    with progress.bar(args, "requests arrived", total=workload.expected, unit="req") as bar:
        rep = replay_workload(workload, policy, cost, acceptance, config, seed=args.seed,
                              backend=backend, rate_scale=args.rate_scale,
                              cost_name=args.config or args.profile,
                              on_request=bar.tick if bar.on else None)  # fmt: skip
    for line in rep.warnings:
        sys.stderr.write(f"spectune: warning: {line}\n")
    if out is not None and backend is not None:
        write_texts(out / "texts.jsonl", rep.result, backend.texts)
    return _emit(args, out, rep.summary, rep.result.recorder)


def _check_vllm_only(args: argparse.Namespace) -> None:
    """The vLLM backend's options are refused on the other backends, never ignored."""
    from profiles.errors import InputError

    if args.backend == "vllm":
        return
    given = [f for f, v in (("--export", args.export), ("--concurrency", args.concurrency),
                            ("--speculative-config", args.speculative_config)) if v]  # fmt: skip
    if given:
        hint = (" (the simulator's closed loop is --request-rate inf --max-concurrency N)"
                if "--concurrency" in given else "")  # fmt: skip
        verb = "applies" if len(given) == 1 else "apply"
        raise InputError(f"{', '.join(given)} {verb} to --backend vllm only{hint}")


def _check_prefill(args: argparse.Namespace) -> None:
    """``--prefill disaggregated`` is refused where a real engine prefills in the decode steps."""
    from profiles.errors import InputError

    if args.prefill != "disaggregated":
        return
    if args.backend == "vllm":  # vllm serve prefills in its own steps
        raise InputError("--prefill disaggregated is simulated only: a live vllm serve "
                         "prefills in its own steps (drop --prefill or use --backend "
                         "profiled)")  # fmt: skip
    if args.backend == "live" and args.live_timing == "measured":
        raise InputError("--prefill disaggregated with --backend live needs --live-timing "
                         "cost: the engine prefills each request in the decode server's "
                         "steps, so measured timing would charge it to the decode "
                         "instance")  # fmt: skip


def _vllm(args: argparse.Namespace) -> int:
    """``--backend vllm``: the trace against a live ``vllm serve`` (runner/cli/vllm.py)."""
    from runner.cli.vllm import run_vllm

    summary, recorder = run_vllm(args, lambda: out_dir(args.out, NAME, force=args.force))
    return _emit(args, Path(args.out), summary, recorder)


def _tuned(args: argparse.Namespace, acceptance):
    """The --config's scheduler (checked against the options), or None; it also sets the
    default --max-concurrency (the tuned cap, else 64)."""
    tuned = None
    if args.config:
        from runner.scheduler import load_scheduler

        tuned = load_scheduler(args.config)
        _check_config(args, tuned, acceptance)
    if args.max_concurrency is None:
        args.max_concurrency = tuned.max_concurrency if tuned else 64
    return tuned


def _emit(args: argparse.Namespace, out: Path | None, summary: dict, recorder) -> int:
    """Write requests.csv and summary.json (with --out) and print the summary."""
    if out is not None:
        recorder.write_csv(out / "requests.csv")
        (out / "summary.json").write_text(json_line(summary, indent=2) + "\n")
    if args.json:
        print(json_line(summary))
    else:
        print(format_summary(summary))
        if args.out:
            print(f"wrote {Path(args.out) / 'requests.csv'} and summary.json")
    return 0


def _check_config(args: argparse.Namespace, tuned, acceptance) -> None:
    """A --config's gamma is the server's: a different --gamma, or an acceptance model with
    fewer positions, is an error (never a silent clamp); another acceptance model than the one
    tuned with is stated on stderr."""
    from profiles.errors import InputError

    if args.gamma is not None and args.gamma != tuned.gamma:
        raise InputError(f"--gamma {args.gamma} conflicts with --config's gamma {tuned.gamma} "
                         "(the tuned scheduler drafts that many tokens); drop --gamma")  # fmt: skip
    if acceptance.gamma < tuned.gamma:
        raise InputError(f"--config drafts gamma {tuned.gamma} tokens, the acceptance model "
                         f"{args.acceptance!r} models {acceptance.gamma} positions")  # fmt: skip
    spec = (tuned.provenance.get("acceptance") or {}).get("spec")
    if spec and spec != args.acceptance:
        sys.stderr.write(f"spectune: warning: --config was tuned with --acceptance {spec}; this "
                         f"replay uses {args.acceptance}\n")  # fmt: skip


def format_summary(s: dict) -> str:
    """A short human-readable report of one replay."""
    lines = [
        f"workload     {s['workload']}",
        f"policy       {s['policy']}   (gamma {s['gamma']}, "
        f"max concurrency {s['max_concurrency']})",
        f"profile      {s['profile']}",
        f"acceptance   {s['acceptance']}",
        "",
        *_metric_lines(s),
    ]
    if s.get("vllm"):  # a live vllm serve: nothing was simulated
        v = s["vllm"]
        lines[-1] = (f"vllm serve   started in {v['startup_s']:.0f} s, {v['loop']} loop, "
                     f"{v['requests_failed']} failed; log {v['log']}")  # fmt: skip
    return "\n".join(lines + _notes(s))


def _metric_lines(s: dict) -> list[str]:
    """Requests, throughput, latency, acceptance and batch figures, then the wall time."""

    def f(key: str, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        v = s.get(key)
        return "n/a" if v is None else fmt.format(v * scale)

    wall = s.get("wall") or {}
    return [
        f"requests     {s['requests_completed']} completed"
        + (f", {s['requests_rejected_too_long']} rejected (prompt+output > KV capacity)"
           if s["requests_rejected_too_long"] else "")
        + (f", {s['requests_rejected_context']} rejected (beyond the {s['max_context']}-token "
           "context)" if s.get("requests_rejected_context") else ""),  # fmt: skip
        f"throughput   {f('throughput_tok_s', fmt='{:.1f}')} tok/s "
        f"over {f('duration_s', fmt='{:.1f}')} s",
        f"tok/s/user   p50 {f('tps_per_user_p50', fmt='{:.1f}')}   "
        f"p90 {f('tps_per_user_p90', fmt='{:.1f}')}",
        f"TTFT (ms)    p50 {f('ttft_p50_s', 1e3, '{:.1f}')}   p99 {f('ttft_p99_s', 1e3, '{:.1f}')}",
        f"TPOT (ms)    p50 {f('tpot_p50_s', 1e3, '{:.2f}')}   p99 {f('tpot_p99_s', 1e3, '{:.2f}')}",
        f"accepted     {f('mean_accepted_len')} tokens/step (bonus included), "
        f"verify {f('mean_verify_len')} drafts/request/step",
        f"batch        {f('mean_batch_size', fmt='{:.1f}')} requests/step, "
        f"{s['decode_steps']} decode steps",
        f"simulated in {wall.get('wall_s', 0):.2f} s wall "
        f"({wall.get('decode_steps_per_wall_s', 0):,.0f} steps/s)",
    ]  # fmt: skip


def _notes(s: dict) -> list[str]:
    """What the replay skipped, clamped or priced beyond the profile, when it did."""
    lines = []
    skipped = s.get("bad_rows_skipped")
    if skipped:
        lines.append(f"skipped      {skipped} malformed trace rows (--skip-bad-rows)")
    if s.get("requests_clamped_to_context"):
        lines.append(f"clamped      {s['requests_clamped_to_context']} requests to the engine's "
                     f"{s['max_context']}-token context (--clamp-to-context)")  # fmt: skip
    if s.get("extrapolated_steps"):
        lines.append(
            f"warning      {s['extrapolated_steps']} steps "
            f"({s.get('extrapolated_step_share', 0):.1%}) priced beyond the profile's measured "
            "range (requests, batch tokens, KV context or prefill; `spectune profiles` lists it)"
        )
    return lines
