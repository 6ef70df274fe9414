"""What a tuned scheduler becomes in each production format, and what that costs.

``write_export(cfg, fmt, out)`` writes one format into ``out`` — the engine's files and a
runnable ``launch.sh`` (built by ``runner/targets.py`` from the engines' released code) — and
returns the manifest (also ``out/export.json``): the files, the launch recipe, whether the format
expresses the tuned policy exactly, the *nearest expressible* policy when it does not, and the
simulated cost of that approximation (:func:`approximation`; for SGLang the exported policy
plans with the exported table, as SGLang's planner does). ``load_export(fmt, out)`` reads the
files back with the fast checks of ``runner/formats.py``; ``tests/engines/`` runs the engines'
own loaders, validators and planner on every export.

Lengths: spectune's ℓ counts *drafts* (the anchor/bonus position excluded). vLLM
``num_speculative_tokens``, TensorRT-LLM draft lengths, SGLang's ``--speculative-dspark-block-size``
and ``candidate_steps`` count drafts too; SGLang's planner verify lengths count the anchor
(``schedule_verify_lens_topk`` returns ℓ + 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from profiles.errors import InputError
from runner import targets
from runner.formats import FORMATS, load_export  # noqa: F401  (re-exported)
from runner.scheduler import SchedulerConfig


@dataclass(frozen=True)
class ExportPlan:
    """What a format can express of a tuned policy."""

    exact: bool  # the format expresses the tuned policy as is
    nearest: str  # spec of the policy the exported files express
    notes: tuple[str, ...] = ()


# -- what each format can express ----------------------------------------------------------------
def batch_table(cfg: SchedulerConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(sizes, ks): the tuned policy as a batch-size → drafts table (upper bounds, first ≥ R).

    A policy that reads only the batch size gives its own table (``Policy.batch_table``); other
    policies get the rounded mean drafts verified per request the tuning measured at each load
    (``tuned.per_load``), the paper's Figure 8 curve."""
    own = cfg.policy().batch_table(cfg.max_concurrency, cfg.gamma)
    if own is not None:
        return own
    cap = cfg.max_concurrency
    op = cfg.operating_point
    rows = []
    for pt in sorted(op.per_load, key=lambda q: q["load"]):
        if pt.get("mean_verify_len") is None:
            continue
        bound = (int(pt["load"]) if op.load_mode == "concurrency"
                 else max(1, math.ceil(pt.get("mean_batch_size") or 1)))  # fmt: skip
        rows.append((bound, min(cfg.gamma, int(round(pt["mean_verify_len"])))))
    if not rows:
        k = op.mean_verify_len
        rows = [(cap, min(cfg.gamma, int(round(k))) if k is not None else cfg.gamma)]
    merged: list[list[int]] = []
    for bound, k in sorted(dict(rows).items()):
        if merged and merged[-1][1] == k:
            merged[-1][0] = bound
        else:
            merged.append([bound, k])
    merged[-1][0] = max(merged[-1][0], cap)
    return tuple(b for b, _ in merged), tuple(k for _, k in merged)


def _table_spec(sizes, ks, default: int = 0) -> str:
    return (f"batch_table:sizes={';'.join(map(str, sizes))},ks={';'.join(map(str, ks))},"
            f"default={default}")  # fmt: skip


def plan(cfg: SchedulerConfig, fmt: str) -> ExportPlan:
    """Exact, or the nearest policy ``fmt`` can express (see the README's export section)."""
    return WRITERS[fmt].plan(cfg)


def _static(cfg: SchedulerConfig) -> ExportPlan | None:
    """Every format expresses a static draft length exactly (0: no speculation)."""
    k = cfg.policy().static_drafts(cfg.gamma)
    if k is None:
        return None
    return ExportPlan(True, "none" if k == 0 else cfg.policy().spec)


def _trimmed(sizes, ks):
    sizes, ks = list(sizes), list(ks)
    while ks and ks[-1] == 0:
        sizes.pop(), ks.pop()
    return tuple(sizes), tuple(ks)


def _table_notes(cfg: SchedulerConfig, fmt: str, name: str) -> tuple[str, ...]:
    if _own_table(cfg):
        return ()
    return (
        f"{name} reads per-step confidences; {fmt} expresses a batch-size table, so the "
        "table holds the rounded mean drafts the tuned policy verified at each tuned load",
    )


def _own_table(cfg: SchedulerConfig) -> bool:
    """The tuned policy reads only the batch size (its table is exact in table formats)."""
    return cfg.policy().batch_table(cfg.max_concurrency, cfg.gamma) is not None


def _spec(text: str) -> str:
    from policies import make_policy

    return make_policy(text).spec


def _k_at_load(cfg: SchedulerConfig) -> int:
    sizes, ks = batch_table(cfg)
    load = int(cfg.operating_point.load or cfg.max_concurrency)
    i = int(np.searchsorted(sizes, load, side="left"))
    return ks[min(i, len(ks) - 1)]


def _policy_table(cfg: SchedulerConfig, near: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The batch-size table (sizes, ks) of a confidence-free policy, cut at the cap."""
    cap = cfg.max_concurrency
    sizes, ks = near.batch_table(cap, cfg.gamma)
    i = next(j for j, s in enumerate(sizes) if s >= cap)
    return tuple(sizes[:i]) + (cap,), tuple(ks[:i]) + (ks[i],)


# -- the writers: one per format, each saying what it expresses exactly ------------------------
class Spectune:
    """The ``spectune.scheduler/v1`` document itself: every registered lossless policy."""

    name = "spectune"

    def expresses(self, policy: Any, cap: int, gamma: int) -> bool:
        return True

    def plan(self, cfg: SchedulerConfig) -> ExportPlan:
        return _static(cfg) or ExportPlan(True, cfg.policy().spec)

    def files(self, cfg: SchedulerConfig, near: Any):  # written by write_export itself
        return {}, None


class Sglang:
    """SGLang's DSpark scheduler (prefix schedulers, planning with the exported SPS table) or
    its static block size; exact for static draft lengths only."""

    name = "sglang"

    def expresses(self, policy: Any, cap: int, gamma: int) -> bool:
        return policy.static_drafts(gamma) is not None

    def plan(self, cfg: SchedulerConfig) -> ExportPlan:
        pol = cfg.policy()
        if (pl := _static(cfg)) is not None:
            return pl
        if not pol.prefix_scheduler:
            return ExportPlan(False, f"fixed:k={_k_at_load(cfg)}", (
                f"{pol.name} has no SGLang DSpark equivalent (no per-batch-size draft length); "
                "exported as a static block size at the tuned load",))  # fmt: skip
        own = pol.verify_bounds(cfg.gamma)["lag_steps"]
        lag = own or 2
        near = _spec(f"dspark_lagged:lag={lag},min_verify_len=0,max_verify_len=0,"
                     f"survival_eps={targets.SGLANG_EPS}")  # fmt: skip
        gap = targets.sglang_gap(cfg, near)
        if gap is None:
            return ExportPlan(True, near, (
                "exact: SGLang's planner and allocator, run on the exported table, make the "
                "tuned policy's decisions (its parameters are SGLang's defaults and the "
                "table is its planning table; tests/engines/test_sglang.py)",))  # fmt: skip
        notes = (
            f"not exact: {gap}",
            "SGLang's planner runs DSparkScheduleConfig(gamma) with its defaults "
            "(min_verify_len = anchor only, max = gamma+1, survival_eps = 1e-6): no flag "
            "sets them, so the tuned bounds are not exported",
            "SGLang plans with the exported whole-decode-step table (floor lookup for 1D "
            "tables, clamped beyond the probes); 'exported' below is that simulated, and "
            "SGLang's own planner and allocator reproduce its decisions "
            "(tests/engines/test_sglang.py)",
        )
        if not own:
            notes += (f"{pol.name} decides on the current step's confidences; SGLang sizes the "
                      f"budget from confidences {lag} steps old "
                      "(SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS)",)  # fmt: skip
        return ExportPlan(False, near, notes)

    def files(self, cfg: SchedulerConfig, near: Any):
        return targets.sglang(cfg, near)


class Vllm:
    """vLLM's ``speculative_config``: a per-batch-size K table, or its own adaptive DSpark."""

    name = "vllm"

    def expresses(self, policy: Any, cap: int, gamma: int) -> bool:
        return policy.batch_table(cap, gamma) is not None

    def plan(self, cfg: SchedulerConfig) -> ExportPlan:
        pol = cfg.policy()
        if (pl := _static(cfg)) is not None:
            return pl
        if pol.prefix_scheduler:
            cap = pol.verify_bounds(cfg.gamma)["max_verify_len"]
            return ExportPlan(False, _spec(f"dspark_lagged:lag=2,max_verify_len={cap}"), (
                "vLLM's adaptive verification (method dspark) profiles its own draft+verify step "
                "costs at start-up and sizes the budget with its own lag; spectune cannot export "
                "a cost table to it, so 'exported' is spectune's dspark_lagged, not vLLM's planner",
                "min_verify_len and survival_eps have no vLLM option",))  # fmt: skip
        sizes, ks = batch_table(cfg)
        return ExportPlan(_own_table(cfg), _spec(_table_spec(sizes, ks)),
                          _table_notes(cfg, self.name, pol.name))  # fmt: skip

    def files(self, cfg: SchedulerConfig, near: Any):
        if near.prefix_scheduler:
            return targets.vllm(cfg, near, {"method": "dspark", "num_speculative_tokens":
                                            near.max_verify_len or cfg.gamma,
                                            "enable_adaptive_verification": True})  # fmt: skip
        k = near.static_drafts(cfg.gamma)
        if k is not None:
            return targets.vllm(cfg, near, {"num_speculative_tokens": k} if k else None)
        rows, lo = [], 1
        for s, k in zip(*_policy_table(cfg, near), strict=True):
            if lo <= s:
                rows.append([lo, int(s), min(int(k), cfg.gamma)])
            lo = int(s) + 1
        top = max(r[2] for r in rows)
        if top == 0:
            return targets.vllm(cfg, near, None)
        return targets.vllm(cfg, near, {"num_speculative_tokens": top,
                                        "num_speculative_tokens_per_batch_size": rows})  # fmt: skip


class Trtllm:
    """TensorRT-LLM's draft length, ``max_concurrency`` or a non-increasing schedule."""

    name = "trtllm"

    def expresses(self, policy: Any, cap: int, gamma: int) -> bool:
        table = policy.batch_table(cap, gamma)
        if table is None:
            return False
        tsizes, tks, _ = targets.trtllm_table(*table)
        return (tsizes, tks) == _trimmed(*table)

    def plan(self, cfg: SchedulerConfig) -> ExportPlan:
        if (pl := _static(cfg)) is not None:
            return pl
        pol, (sizes, ks) = cfg.policy(), batch_table(cfg)
        tsizes, tks, notes = targets.trtllm_table(sizes, ks)
        same = self.expresses(pol, cfg.max_concurrency, cfg.gamma)
        near = _spec(_table_spec(tsizes, tks)) if tks else "none"
        return ExportPlan(same, near, tuple(notes) + _table_notes(cfg, self.name, pol.name))

    def files(self, cfg: SchedulerConfig, near: Any):
        return targets.trtllm(cfg, *targets.trtllm_table(*_policy_table(cfg, near))[:2])


class SglangAdaptive:
    """SGLang's EAGLE adaptive ladder: one candidate step per batch-size slot."""

    name = "sglang-adaptive"

    def expresses(self, policy: Any, cap: int, gamma: int) -> bool:
        return policy.batch_table(cap, gamma) is not None

    def plan(self, cfg: SchedulerConfig) -> ExportPlan:
        if (pl := _static(cfg)) is not None:
            return pl
        pol, (sizes, ks) = cfg.policy(), batch_table(cfg)
        notes = ("SGLang runs adaptive speculation for EAGLE/EAGLE3 only (not DSpark); one "
                 "candidate step per slot, so the EMA controller has nothing to adapt; "
                 "slots are keyed by the smallest batch size they serve, and SGLang pads "
                 "the batch to its CUDA-graph size before choosing the slot",)  # fmt: skip
        return ExportPlan(
            _own_table(cfg),
            _spec(_table_spec(sizes, ks)),
            notes + _table_notes(cfg, self.name, pol.name),
        )

    def files(self, cfg: SchedulerConfig, near: Any):
        sizes, ks = _policy_table(cfg, near)
        if not any(ks):
            return {}, targets._launch(targets.SGLANG + ("--max-running-requests",
                                                         str(cfg.max_concurrency)), {})  # fmt: skip
        return targets.sglang_adaptive(cfg, sizes, ks)


WRITERS = {w.name: w for w in (Spectune(), Sglang(), Vllm(), Trtllm(), SglangAdaptive())}
assert tuple(WRITERS) == FORMATS, "runner/formats.py reads every format WRITERS writes"


def write_export(cfg: SchedulerConfig, fmt: str, out: Path, *, source: str = "",
                 simulate: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write ``fmt`` into ``out``; returns the manifest (also ``out/export.json``)."""
    from policies import make_policy
    from runner.scheduler import write_scheduler

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    out.mkdir(parents=True, exist_ok=True)
    writer = WRITERS[fmt]
    pl = writer.plan(cfg)
    written, launch = [], None
    if fmt == "spectune":
        write_scheduler(out / "scheduler.yaml", cfg)
        written.append("scheduler.yaml")
    else:
        files, launch = writer.files(cfg, make_policy(pl.nearest))
        for name, content in files.items():
            if isinstance(content, tuple):
                text = yaml.safe_dump(content[1], sort_keys=False, default_flow_style=None)
            else:
                text = json.dumps(content, indent=2) + "\n"
            (out / name).write_text(text, encoding="utf-8")
            written.append(name)
        (out / "launch.sh").write_text(targets.launch_sh(fmt, launch, written), encoding="utf-8")
        (out / "launch.sh").chmod(0o755)
        written.append("launch.sh")
    manifest = {"format": fmt, "engine": targets.VERSIONS.get(fmt, "spectune"), "from": source,
                "tuned_policy": cfg.policy().spec, "files": written, "exact": pl.exact,
                "exported_policy": pl.nearest, "approximation": None, "notes": list(pl.notes),
                "launch": launch}  # fmt: skip
    if simulate and not pl.exact:
        table = None
        if "sps_table.json" in written:
            table = json.loads((out / "sps_table.json").read_text(encoding="utf-8"))
        manifest["approximation"] = approximation(cfg, pl.nearest, table)
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def approximation(cfg: SchedulerConfig, nearest: str, table: dict | None = None
                  ) -> dict[str, Any] | None:  # fmt: skip
    """Simulate the tuned and the exported policy at the tuned load; their figures and change.
    With an engine ``table`` the exported policy plans with it as the engine does."""

    from profiles.builtin import load_acceptance
    from profiles.sglang import PlannedCost, Table
    from runner.point import PointTask, run_point
    from simulator.workload import WorkloadSpec

    op = cfg.operating_point
    try:
        spec = WorkloadSpec(**(op.workload or {}))
        acceptance = load_acceptance(op.acceptance or "")
        mode, load, n = op.point()
    except (TypeError, InputError) as exc:
        return {"simulated": False, "reason": str(exc) if "provenance" in str(exc)
                else f"no usable tuning provenance ({exc})"}  # fmt: skip
    server = cfg.server_config()
    out: dict[str, Any] = {"simulated": True, "load_mode": mode, "load": load}
    cost = cfg.cost_model()
    planned = PlannedCost(cost, Table(table)) if table else cost
    runs: dict[tuple[str, bool], dict] = {}  # the same spec on the same cost is one simulation
    for label, pol, c in (("tuned", cfg.policy().spec, cost), ("exported", nearest, planned)):
        key = (pol, c is cost)
        if key not in runs:
            task = PointTask(pol, mode, load, spec, server, n, op.seed)
            runs[key] = run_point(task, models=(c, acceptance))
        r = runs[key]
        out[label] = {k: r.get(k) for k in ("policy", "throughput_tok_s", "tps_per_user_p50",
                                            "ttft_p99_s", "mean_verify_len")}  # fmt: skip
        out[label]["sla_met"] = all(s.met(r) for s in cfg.sla)
    a, b = out["tuned"]["throughput_tok_s"], out["exported"]["throughput_tok_s"]
    out["throughput_change"] = b / a - 1 if a else None
    return out
