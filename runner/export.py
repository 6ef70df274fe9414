"""Writers (and validating loaders) of the production formats a tuned scheduler exports to.

``write_export(cfg, fmt, out)`` writes one format into ``out`` and returns the manifest (also
written as ``out/export.json``): the files, whether the format expresses the tuned policy
exactly, the *nearest expressible* policy when it does not, and the simulated cost of that
approximation (:func:`approximation`). ``load_export(fmt, out)`` reads the files back and checks
them as the engines do. Field names were read from the engines' sources and docs (SGLang
``SpsCostTable``/``SpsAdditiveCostTable``/``DSparkStsCalibration``/``DSparkScheduleConfig`` and
the adaptive ladder; vLLM ``speculative_config``; TensorRT-LLM ``draft_len_schedule``); details
we could not confirm are stated in the manifest notes and in the README.

Lengths: spectune's ℓ counts *drafts* (the anchor/bonus position excluded). vLLM
``num_speculative_tokens``, TensorRT-LLM draft lengths and SGLang ``candidate_steps`` count drafts
too; recent SGLang ``DSparkScheduleConfig`` verify lengths count the anchor (min 1, 0 = γ + 1),
so ``schedule.json`` holds ℓ + 1.
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
from runner.formats import FORMATS, load_export  # noqa: F401  (re-exported)
from runner.scheduler import SchedulerConfig

DSPARK_STYLE = ("dspark", "dspark_lagged", "global_sync")
TABLE_STYLE = ("fixed", "batch_table", "none")


@dataclass(frozen=True)
class Plan:
    """What a format can express of a tuned policy."""

    exact: bool  # the format expresses the tuned policy as is
    nearest: str  # spec of the policy the exported files express
    notes: tuple[str, ...] = ()


# -- what each format can express ----------------------------------------------------------------
def batch_table(cfg: SchedulerConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(sizes, ks): the tuned policy as a batch-size → drafts table (upper bounds, first ≥ R).

    fixed/none/batch_table map exactly; other policies get the rounded mean drafts verified per
    request the tuning measured at each load (``tuned.per_load``), the paper's Figure 8 curve."""
    p, cap = cfg.param_dict, cfg.max_concurrency
    if cfg.policy_name == "fixed":
        return (cap,), (min(int(p["k"]), cfg.gamma),)
    if cfg.policy_name == "none":
        return (cap,), (0,)
    if cfg.policy_name == "batch_table":
        sizes, ks = list(p["sizes"]), [min(int(k), cfg.gamma) for k in p["ks"]]
        if not sizes or sizes[-1] < cap:
            sizes.append(cap)
            ks.append(min(int(p.get("default", 0)), cfg.gamma))
        return tuple(int(s) for s in sizes), tuple(ks)
    rows = []
    for pt in sorted(cfg.tuned.get("per_load") or [], key=lambda q: q["load"]):
        if pt.get("mean_verify_len") is None:
            continue
        bound = (int(pt["load"]) if cfg.tuned.get("load_mode") == "concurrency"
                 else max(1, math.ceil(pt.get("mean_batch_size") or 1)))  # fmt: skip
        rows.append((bound, min(cfg.gamma, int(round(pt["mean_verify_len"])))))
    if not rows:
        k = cfg.tuned.get("mean_verify_len")
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


def plan(cfg: SchedulerConfig, fmt: str) -> Plan:
    """Exact, or the nearest policy ``fmt`` can express (see the README's export section)."""
    name, p, spec = cfg.policy_name, cfg.param_dict, cfg.policy().spec
    if fmt == "spectune":
        return Plan(True, spec)
    if fmt == "sglang":
        lagged = {"lag": 2, **{k: p.get(k, 0) for k in ("min_verify_len", "max_verify_len",
                                                         "survival_eps")}}  # fmt: skip
        if name == "dspark_lagged" and p["lag"] == 2:
            return Plan(True, spec)
        if name in DSPARK_STYLE:
            near = "dspark_lagged:" + ",".join(f"{k}={v}" for k, v in lagged.items())
            return Plan(False, _spec(near), ("SGLang's DSpark planner sizes the verify budget "
                        "from confidences two steps old (paper §5.2); a lag of 1 or the "
                        "synchronous Algorithm 1 is not a documented SGLang option",))  # fmt: skip
        if name in ("fixed", "none"):
            return Plan(True, spec, ("static schedule: min_verify_len = max_verify_len",))
        k = _k_at_load(cfg)
        return Plan(
            False,
            f"fixed:k={k}",
            (
                f"{name} has no SGLang DSpark equivalent; exported "
                "as a static verify length (use sglang-adaptive for batch-size tables)",
            ),
        )
    if fmt == "vllm":
        if name in DSPARK_STYLE:
            exact = name == "dspark_lagged" and not p["min_verify_len"] and not p["survival_eps"]
            near = (
                f"dspark_lagged:lag={p.get('lag', 2)},min_verify_len=0,"
                f"max_verify_len={p['max_verify_len']},survival_eps=0.0"
            )
            return Plan(exact, spec if exact else _spec(near), ("vLLM adaptive verification: "
                        "min_verify_len/survival_eps knobs and the confidence lag are not "
                        "confirmed vLLM options; exported with none, lag as tuned",))  # fmt: skip
        if name in TABLE_STYLE:
            return Plan(True, spec)
    sizes, ks = batch_table(cfg)
    near = _table_spec(sizes, ks)
    if fmt == "sglang-adaptive" and name in TABLE_STYLE:
        return Plan(True, spec, ("one candidate step per batch-size slot: the EMA controller "
                                 "has nothing to adapt",))  # fmt: skip
    if fmt == "trtllm" and name in TABLE_STYLE:
        return Plan(True, spec)
    return Plan(False, near, (f"{name} reads per-step confidences; {fmt} expresses a batch-size "
                              "table, so the table holds the rounded mean drafts the tuned "
                              "policy verified at each tuned load",))  # fmt: skip


def _spec(text: str) -> str:
    from policies import make_policy

    return make_policy(text).spec


def _k_at_load(cfg: SchedulerConfig) -> int:
    sizes, ks = batch_table(cfg)
    load = int(cfg.tuned.get("load") or cfg.max_concurrency)
    i = int(np.searchsorted(sizes, load, side="left"))
    return ks[min(i, len(ks) - 1)]


# -- writers -------------------------------------------------------------------------------------
def sps_table(cfg: SchedulerConfig) -> dict[str, Any]:
    """SGLang ``SpsCostTable`` (1D) or ``SpsAdditiveCostTable``, matching the cost model."""
    c = cfg.cost_model()
    if c.kind == "sps":
        xs = [int(round(x)) for x in c.verify.x]
        keep = [i for i, x in enumerate(xs) if x >= 1 and x == c.verify.x[i]]
        xs = [xs[i] for i in keep]
        return {"sample_batch_tokens": xs,
                "sample_steps_per_sec": [1.0 / c.verify.y[i] for i in keep],
                "max_batch_tokens": max(int(c.max_batch_tokens), xs[-1])}  # fmt: skip
    a0, t0 = c.alpha.y[0], c.verify.y[0]  # SGLang gauge: alpha(bs0) = theta(m0) = 0
    return {"bias_seconds": c.bias_s + a0 + t0,
            "bs_probes": [int(round(x)) for x in c.alpha.x],
            "alpha_seconds": [a - a0 for a in c.alpha.y],
            "m_probes": [int(round(x)) for x in c.verify.x],
            "theta_seconds": [t - t0 for t in c.verify.y]}  # fmt: skip


def _files(cfg: SchedulerConfig, fmt: str, pl: Plan) -> dict[str, Any]:
    """File name → content (dict for JSON, ('yaml', dict) for YAML, str for text)."""
    from policies import make_policy

    near = make_policy(pl.nearest)
    p, gamma = near.__dict__, cfg.gamma
    if fmt == "sglang":
        sts = cfg.sts
        static = near.name in ("fixed", "none")  # min = max = k (SGLang: k + 1, anchor incl.)
        lo = min(p.get("k", 0), gamma) if static else p.get("min_verify_len", 0)
        hi = lo if static else p.get("max_verify_len", 0)
        sts_doc = {"temperatures": list(sts.temperatures) or [1.0] * gamma}
        sts_doc.update({k: v for k, v in (("dataset", sts.dataset), ("num_samples",
                        sts.num_samples), ("ece_before", list(sts.ece_before)),
                        ("ece_after", list(sts.ece_after))) if v})  # fmt: skip
        return {
            "sps_table.json": sps_table(cfg),
            "sts.json": sts_doc,
            "schedule.json": {
                "gamma": gamma,
                "min_verify_len": lo + 1,
                "max_verify_len": hi + 1 if static or hi else 0,
                "survival_eps": float(p.get("survival_eps", 0.0)),
                "lag_steps": int(p.get("lag", 0)),
            },  # fmt: skip
        }
    if fmt == "vllm":
        if near.name in DSPARK_STYLE:
            doc = {"num_speculative_tokens": p["max_verify_len"] or gamma,
                   "enable_adaptive_verification": True}  # fmt: skip
        elif near.name in ("fixed", "none"):
            doc = {"num_speculative_tokens": min(p.get("k", 0), gamma)}
        else:
            sizes, ks = batch_table(cfg)
            rows, lo = [], 1
            for s, k in zip(sizes, ks, strict=True):
                rows.append([lo, int(s), min(int(k), gamma)])
                lo = int(s) + 1
            doc = {"num_speculative_tokens": max(r[2] for r in rows),
                   "num_speculative_tokens_per_batch_size": rows}  # fmt: skip
        return {"speculative_config.json": doc}
    sizes, ks = batch_table(cfg)  # the exported table is the nearest policy's
    if fmt == "trtllm":
        sched = {int(s): int(k) for s, k in zip(sizes, ks, strict=True)}
        on = [s for s, k in sched.items() if k > 0]
        spec = {"max_draft_len": gamma, "draft_len_schedule": sched}
        if on:
            spec["max_concurrency"] = max(on)
        return {"speculative_config.yaml": ("yaml", {"speculative_config": spec})}
    if fmt == "sglang-adaptive":
        ladder, lo = {}, 1
        for s, k in zip(sizes, ks, strict=True):
            ladder[str(lo)] = {"candidate_steps": [int(k)]}
            lo = int(s) + 1
        return {"adaptive.json": ladder}
    raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")


def write_export(cfg: SchedulerConfig, fmt: str, out: Path, *, source: str = "",
                 simulate: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write ``fmt`` into ``out``; returns the manifest (also ``out/export.json``)."""
    from runner.scheduler import write_scheduler

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    out.mkdir(parents=True, exist_ok=True)
    pl = plan(cfg, fmt)
    written = []
    if fmt == "spectune":
        write_scheduler(out / "scheduler.yaml", cfg)
        written.append("scheduler.yaml")
    else:
        for name, content in _files(cfg, fmt, pl).items():
            if isinstance(content, tuple):
                text = yaml.safe_dump(content[1], sort_keys=False, default_flow_style=None)
            else:
                text = json.dumps(content, indent=2) + "\n"
            (out / name).write_text(text, encoding="utf-8")
            written.append(name)
    notes = list(pl.notes) + _cost_notes(cfg, fmt)
    manifest = {"format": fmt, "from": source, "tuned_policy": cfg.policy().spec,
                "files": written, "exact": pl.exact, "exported_policy": pl.nearest,
                "approximation": None, "notes": notes}  # fmt: skip
    if not pl.exact and simulate:
        manifest["approximation"] = approximation(cfg, pl.nearest)
    if fmt == "sglang":
        manifest["server_args"] = [
            "--speculative-algorithm",
            "DSPARK",
            "--speculative-dspark-sps-table-path",
            "sps_table.json",
            "--speculative-dspark-confidence-sts-path",
            "sts.json",
        ]
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _cost_notes(cfg: SchedulerConfig, fmt: str) -> list[str]:
    if fmt != "sglang":
        return []
    c, notes = cfg.cost_model(), []
    if c.kind == "sps":
        t = sps_table(cfg)
        xs, sps = np.asarray(t["sample_batch_tokens"]), np.asarray(t["sample_steps_per_sec"])
        b = np.arange(1, t["max_batch_tokens"] + 1)
        floor = sps[np.clip(np.searchsorted(xs, b, side="right") - 1, 0, len(xs) - 1)]
        ours = c.sps(1, b)
        worst = float(np.max(np.abs(floor / ours - 1)))
        notes.append(
            f"SGLang's SpsCostTable looks up the floor probe, spectune interpolates "
            f"linearly: they differ by at most {worst:.2%} over B = 1..{b[-1]}"
        )
    else:
        notes.append(
            "SGLang's additive table clamps beyond the probes; spectune extrapolates "
            "linearly (same inside the probed range)"
        )
    notes.append(
        "the table holds the verify cost the policy plans with; draft, prefill and "
        "context costs are not part of SGLang's table"
    )
    if cfg.sts.variant != "cumulative":
        notes.append(
            "SGLang's STS fitter calibrates cumulative survival; these temperatures "
            "were fitted on conditional acceptance"
        )
    return notes


def approximation(cfg: SchedulerConfig, nearest: str) -> dict[str, Any] | None:
    """Simulate the tuned and the exported policy at the tuned load; their figures and change."""
    from dataclasses import replace

    from profiles.builtin import load_acceptance
    from runner.sweep import PointTask, run_point
    from simulator.workload import WorkloadSpec

    prov, tuned = cfg.provenance, cfg.tuned
    try:
        spec = WorkloadSpec(**prov["workload"]["spec"])
        acceptance = load_acceptance(prov["acceptance"]["spec"])
        mode, load, t = tuned["load_mode"], float(tuned["load"]), prov["tune"]
    except (KeyError, TypeError, InputError) as exc:
        return {"simulated": False, "reason": f"no usable tuning provenance ({exc})"}
    n = max(int(t["requests"]), int(load) * int(t["per_user"])) if mode == "concurrency" \
        else int(t["requests"])  # fmt: skip
    server = replace(cfg.server_config(), max_concurrency=cfg.server_config().max_concurrency)
    out: dict[str, Any] = {"simulated": True, "load_mode": mode, "load": load}
    for label, pol in (("tuned", cfg.policy().spec), ("exported", nearest)):
        task = PointTask(pol, mode, load, spec, "", "", server, n, int(prov.get("seed", 0)))
        r = run_point(task, models=(cfg.cost_model(), acceptance))
        out[label] = {k: r.get(k) for k in ("policy", "throughput_tok_s", "tps_per_user_p50",
                                            "ttft_p99_s", "mean_verify_len")}  # fmt: skip
        out[label]["sla_met"] = all(s.met(r) for s in cfg.sla)
    a, b = out["tuned"]["throughput_tok_s"], out["exported"]["throughput_tok_s"]
    out["throughput_change"] = b / a - 1 if a else None
    return out
