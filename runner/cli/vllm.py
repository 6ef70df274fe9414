"""``spectune replay --backend vllm``: options, and the run (one call to engine.vllmbench).

What vLLM serves: ``--engine vllm:TARGET[,draft=DIR]`` (exported HF directories or our
checkpoint names, exported on the fly; default ``vllm:target,draft=draft``) with, in order of
precedence, ``--export DIR`` (a ``spectune export --format vllm`` directory, its
``speculative_config.json`` and ``--max-num-seqs`` used unmodified except the ``$METHOD``
(``draft_model``) and ``$DRAFT`` placeholders), ``--config BEST.yaml`` (exported the same way
first), ``--speculative-config JSON`` (vllm serve's own flag, passed as given) or ``--policy``
(``none``, ``fixed:k=K``, ``batch_table:...`` become ``num_speculative_tokens`` and
``num_speculative_tokens_per_batch_size`` rows as the vLLM export writes them). Prompt and output
lengths are clamped to the target's context as for the live backend (counted in the summary).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from itertools import islice
from pathlib import Path

from profiles.errors import InputError
from runner.cli.options import positive_float, positive_int
from runner.cli.text import command_line

MAX_REQUESTS = 2000  # a live replay holds every request; beyond this, pass --limit
PLACEHOLDERS = {"$METHOD": "draft_model"}


def add_vllm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vLLM backend (--backend vllm: a live vllm serve on 127.0.0.1)")
    g.add_argument("--export", metavar="DIR",
                   help="a `spectune export --format vllm` directory to launch (placeholders "
                   "filled: METHOD=draft_model, DRAFT=the draft)")  # fmt: skip
    g.add_argument("--speculative-config", metavar="JSON",
                   help="vllm serve's --speculative-config, passed as given")  # fmt: skip
    g.add_argument("--concurrency", type=positive_int, default=0, metavar="N",
                   help="closed loop: N requests in flight, arrivals ignored (default: open loop "
                   "by the workload's arrivals)")  # fmt: skip
    g.add_argument("--time-limit", type=positive_float, default=600.0, metavar="S",
                   help="no new requests after S seconds; running ones are cancelled and counted "
                   "(default 600)")  # fmt: skip
    g.add_argument("--startup-timeout", type=positive_float, default=600.0, metavar="S",
                   help="seconds vllm serve may take to answer /health (default 600)")  # fmt: skip
    g.add_argument("--request-timeout", type=positive_float, default=300.0, metavar="S",
                   help="seconds one request may take (default 300)")  # fmt: skip


def run_vllm(args: argparse.Namespace, claim) -> tuple[dict, object]:
    """(summary, recorder) of ``replay --backend vllm``; ``claim()`` claims ``--out`` once the
    options are checked, before the server starts."""
    from engine import bench, serve, vllm, vllmbench, vllmcost

    why = vllm.missing()
    if why:
        raise InputError(why, where="--backend vllm")
    if args.out is None:
        raise InputError("--backend vllm needs --out DIR (the server's log and the /metrics "
                         "scrapes are written there)")  # fmt: skip
    engine = "vllm:target,draft=draft" if args.engine == "builtin:tiny" else args.engine
    try:
        target, draft = vllmcost.parse_engine(engine)
    except ValueError as exc:
        raise InputError(str(exc), where="--engine") from None
    with tempfile.TemporaryDirectory(prefix="spectune-hf-") as scratch:
        try:
            tdir = vllmcost.resolve_model(target, scratch)
            ddir = vllmcost.resolve_model(draft, scratch) if draft else ""
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(str(exc), where="--engine") from None
        spec, cap = speculative(args, ddir, Path(scratch))
        k = int(spec["num_speculative_tokens"]) if spec else 0
        context = int(json.loads((Path(tdir) / "config.json").read_text())
                      ["max_position_embeddings"])  # fmt: skip
        requests, workload = _requests(args, context, k)
        out = claim()  # after every check, before the server starts
        cfg = serve.ServeConfig(tdir, spec, max_num_seqs=cap, max_model_len=context,
                                max_num_batched_tokens=getattr(args, "max_prefill_tokens", 2048),
                                seed=args.seed)  # fmt: skip
        load = bench.Load(args.concurrency, args.time_limit, args.request_timeout,
                          args.temperature)  # fmt: skip
        setup = vllmbench.Setup(cfg, load, args.startup_timeout)
        from runner.cli import progress

        with progress.bar(args, "requests done", total=len(requests), unit="req") as bar:
            try:
                summary, rec = vllmbench.replay(requests, setup, out, args.seed,
                                                bar.tick if bar.on else None)  # fmt: skip
            except serve.ServerError as exc:
                raise InputError(str(exc), where="--backend vllm") from None
    stats = {k: getattr(workload.stats, k) for k in workload.stats.__slots__}
    summary = {"workload": workload.label, **stats, **summary}
    summary.update({"extrapolated_steps": None, "extrapolated_step_share": None,  # no pricing
                    "requests_clamped_to_context": 0, "requests_rejected_context": 0,
                    "max_context": context,
                    "policy": _policy_label(args, spec), "gamma": k, "max_concurrency": cap,
                    "kv_capacity_tokens": None, "seed": args.seed,
                    "backend": f"vllm serve {vllm.version()} (live, 127.0.0.1)",
                    "profile": "live: vLLM wall time (measured, no cost model)",
                    "acceptance": f"live: vLLM {'draft_model ' + draft if spec else 'none'}",
                    "engine": engine, "overload": None})  # fmt: skip
    summary["vllm"]["models"] = {"target": target, "draft": draft}
    summary["wall"] = summary.pop("wall")
    failed = summary["vllm"]["requests_failed"]
    if failed:
        sys.stderr.write(f"spectune: warning: {failed} of {len(requests)} requests did not "
                         f"complete ({'; '.join(summary['vllm']['failures'])})\n")  # fmt: skip
    return summary, rec


def speculative(args: argparse.Namespace, draft: str, scratch: Path) -> tuple[dict | None, int]:
    """(vLLM speculative config or None, --max-num-seqs) from the options (see module doc)."""
    export = Path(args.export) if args.export else None
    if export is None and args.config:
        from runner.export import write_export
        from runner.scheduler import load_scheduler

        export = scratch / "export"
        write_export(load_scheduler(args.config), "vllm", export, simulate=False)
    if export is not None:
        return exported(export, draft)
    cap = args.max_concurrency or 16
    if args.speculative_config:
        try:
            spec = json.loads(args.speculative_config)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc}", where="--speculative-config") from None
        if not isinstance(spec, dict):
            raise InputError("expected a JSON object", where="--speculative-config")
        return spec, cap
    return from_policy(args.policy, draft), cap


def exported(export: Path, draft: str) -> tuple[dict | None, int]:
    """An export directory's speculative config (placeholders filled) and --max-num-seqs."""
    try:
        manifest = json.loads((export / "export.json").read_text())
        argv = manifest["launch"]["argv"]
        cap = int(argv[argv.index("--max-num-seqs") + 1])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{export}: not a vllm export ({exc})", where="--export") from None
    if manifest.get("format") != "vllm":
        raise InputError(f"{export}: a {manifest.get('format')!r} export, not vllm",
                         where="--export")  # fmt: skip
    if "speculative_config.json" not in manifest.get("files", []):
        return None, cap
    text = (export / "speculative_config.json").read_text()
    if not draft and "$DRAFT" in text:
        raise InputError("the export speculates: --engine needs a draft=DIR", where="--export")
    text = text.replace("$DRAFT", draft)
    for k, v in PLACEHOLDERS.items():
        text = text.replace(k, v)
    return json.loads(text), cap


def from_policy(spec: str, draft: str) -> dict | None:
    """``none``/``fixed``/``batch_table`` as vLLM's speculative config (draft_model method)."""
    from policies import make_policy

    policy = make_policy(spec)
    if policy.name == "none":
        return None
    if not draft:
        raise InputError("speculation needs a draft model: --engine vllm:TARGET,draft=DIR")
    doc = {"method": "draft_model", "model": draft, "draft_sample_method": "probabilistic"}
    if policy.name == "fixed":
        return {**doc, "num_speculative_tokens": int(policy.k)}
    if policy.name != "batch_table":
        raise InputError(f"--backend vllm runs none, fixed and batch_table policies; for "
                         f"{policy.name!r} tune and pass --config BEST.yaml (it is exported to "
                         "the nearest vLLM configuration)", where="--policy")  # fmt: skip
    rows, lo = [], 1
    for s, k in zip(policy.sizes, policy.ks, strict=True):
        if lo <= s:
            rows.append([lo, int(s), int(k)])
        lo = int(s) + 1
    top = max((r[2] for r in rows), default=0)
    if top == 0:
        return None
    return {**doc, "num_speculative_tokens": top, "num_speculative_tokens_per_batch_size": rows}


def _requests(args: argparse.Namespace, context: int, k: int):
    """The workload's requests clamped to the context (and the workload: its stats count the
    clamps), at most MAX_REQUESTS."""
    from runner.cli.engines import clamp_to_context
    from runner.cli.options import workload_from_args

    clamp_to_context(args, context, k)
    workload = workload_from_args(args)
    requests = list(islice(workload, MAX_REQUESTS + 1))
    if len(requests) > MAX_REQUESTS:
        raise InputError(f"the workload has more than {MAX_REQUESTS} requests; a live replay "
                         "sends each one: pass --limit N or --num-requests N")  # fmt: skip
    if not requests:
        raise InputError("the workload has no requests")
    return requests, workload


def _policy_label(args: argparse.Namespace, spec: dict | None) -> str:
    if args.export or args.config:
        return f"vllm export {args.export or args.config}"
    if args.speculative_config:
        return "speculative-config"
    return args.policy


# -- fidelity --against vllm -------------------------------------------------------------------
def policies_of(text: str) -> tuple[str, ...]:
    """Comma-separated policy specs; a piece with ``=`` and no ``:`` continues the previous
    spec (``batch_table:sizes=4;8,ks=4;2`` is one policy)."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if out and "=" in piece and ":" not in piece:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return tuple(out)


def fidelity_vllm(args: argparse.Namespace, out: Path | None) -> dict:
    """``fidelity --against vllm``: one :class:`runner.vllmfidelity.VllmFidelityHarness` run
    (live runs under ``out/live``, or a temporary directory); returns the report dict."""
    import datetime
    from dataclasses import replace

    from engine import bench, provenance, serve, vllm, vllmbench, vllmcost
    from profiles.store import read_cost
    from profiles.vllm import vllm_acceptance_over
    from runner import vllmfidelity
    from runner.cli import progress

    why = vllm.missing()
    if why:
        raise InputError(why, where="--against vllm")
    engine = "vllm:target,draft=draft" if args.engine == "builtin:tiny" else args.engine
    try:
        target, draft = vllmcost.parse_engine(engine)
    except ValueError as exc:
        raise InputError(str(exc), where="--engine") from None
    if not draft:
        raise InputError("--against vllm compares speculation: --engine vllm:TARGET,draft=DIR")
    cost = read_cost(args.profile)
    specs = policies_of(args.policies if args.policies != "fixed:k=1,dspark" else
                        ",".join(vllmfidelity.DEFAULT_POLICIES))  # fmt: skip
    base = replace(vllmfidelity.VllmFidelityConfig().base, policies=specs,
                   max_concurrency=args.max_concurrency, seed=args.seed)  # fmt: skip
    if args.quick:
        base = replace(base, num_requests=12, max_output_tokens=32)
    if args.num_requests:
        base = replace(base, num_requests=args.num_requests)
    reps = args.replicates or (1 if args.quick else vllmfidelity.VllmFidelityConfig.replicates)
    cfg = vllmfidelity.VllmFidelityConfig(base=base, replicates=reps)  # greedy (see the config)
    gamma = args.gamma or 4
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    labels = {"date": date, "command": command_line(),
              "engine": f"vllm serve {vllm.version()} ({engine.removeprefix('vllm:')}), "
              f"temperature {cfg.temperature:g}, max-num-seqs {base.max_concurrency}, load "
              f"average {provenance.load_average()} at the start"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="spectune-hf-") as scratch:
        try:
            tdir = vllmcost.resolve_model(target, scratch)
            ddir = vllmcost.resolve_model(draft, scratch)
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(str(exc), where="--engine") from None
        context = int(json.loads((Path(tdir) / "config.json").read_text())
                      ["max_position_embeddings"])  # fmt: skip
        if base.max_prompt_tokens + base.max_output_tokens + gamma + 1 > context:
            raise InputError(f"prompt + output tokens exceed the target's context {context}")

        budget = getattr(args, "max_prefill_tokens", 2048)  # vLLM's max-num-batched-tokens

        def session(spec: str, where: Path):
            scfg = serve.ServeConfig(tdir, from_policy(spec, ddir),
                                     max_num_seqs=base.max_concurrency, max_model_len=context,
                                     max_num_batched_tokens=budget, seed=args.seed)  # fmt: skip
            where.mkdir(parents=True, exist_ok=True)
            return _Runs(vllmbench.Session(vllmbench.Setup(scfg, bench.Load()), where), cfg)

        def imported(windows: list[tuple[str, str]]):
            return vllm_acceptance_over(windows)[0]

        live = (out / "live") if out is not None else Path(scratch) / "live"
        try:
            runs = vllmfidelity.live_runs(cfg)
            with progress.bar(args, "live vllm runs", total=runs, unit="run") as bar:
                harness = vllmfidelity.VllmFidelityHarness(
                    cfg, cost, gamma, session, imported, labels, on_cell=_cell_line(args),
                    gap_s=_step_gap(args.profile), tick=bar.tick,
                )  # fmt: skip
                return harness.run(live).to_dict()
        except serve.ServerError as exc:
            raise InputError(str(exc), where="--against vllm") from None
        except ValueError as exc:
            raise InputError(str(exc), where="--policies") from None


def _step_gap(profile: str) -> float:
    """The served profile's measured gap between logged steps (its bias includes it)."""
    from profiles.builtin import cost_metadata

    fit = cost_metadata(profile).get("fit")
    gap = fit.get("step_gap_s", 0.0) if isinstance(fit, dict) else 0.0
    return float(gap) if isinstance(gap, (int, float)) else 0.0


class _Runs:
    """A vllmbench Session whose ``run(requests, concurrency, out)`` returns the summary."""

    def __init__(self, session, cfg) -> None:
        self.session, self.cfg = session, cfg

    def __enter__(self):
        self.session.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.session.__exit__(*exc)

    def run(self, requests: list, concurrency: int, out: Path) -> dict:
        from engine import bench

        load = bench.Load(concurrency, self.cfg.time_limit_s, self.cfg.request_timeout_s,
                          self.cfg.temperature)  # fmt: skip
        summary, _ = self.session.run(requests, load, self.cfg.base.seed, out)
        summary["logged_steps"] = self.session.last_steps  # the in-load speed (vllmfidelity)
        failed = summary["vllm"]["requests_failed"]
        if failed:
            raise InputError(f"{failed} of {len(requests)} requests failed in {out} "
                             f"({'; '.join(summary['vllm']['failures'])})")  # fmt: skip
        return summary

    def reference(self, requests: list, out: Path) -> dict:
        """The requests one at a time: :func:`engine.vllmbench.speed_measurement`."""
        from engine import vllmbench

        self.run(requests, 1, out)
        return vllmbench.speed_measurement(self.session.last_outcomes, self.session.last_steps)


def _cell_line(args: argparse.Namespace):
    def line(cell: dict) -> None:
        if not getattr(args, "quiet", False):
            e = cell["rel_error"]
            sys.stderr.write(f"{cell['load']:>9} {cell['policy']:<40} throughput err "
                             f"{e['throughput']:.1%}  TPOT err {e['tpot_mean']:.1%}\n")  # fmt: skip

    return line
