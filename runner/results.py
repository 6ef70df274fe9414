"""Tuning results on disk: the point store (streamed, resumable) and the files written at the end.

``DIR/points.jsonl`` gets one JSON line per finished point, flushed and fsynced as it finishes,
so a killed run loses at most the point being written; a torn last line is dropped on resume.
``DIR/run.yaml`` holds the tuning config; ``--resume`` refuses a directory whose ``run.yaml``
differs (other than workers/backend), and a run without ``--resume`` refuses a directory that
already holds points. At the end: ``results.csv`` (every point, sorted, no wall-clock fields, so
it is identical across backends and resumes), ``frontier.csv`` (throughput vs tok/s/user Pareto
points per policy), ``summary.json`` and ``best.yaml`` (``spectune.scheduler/v1``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

from profiles.documents import json_line, parse_json, parse_yaml
from profiles.errors import InputError
from runner.sweep import METRICS

POINTS = "points.jsonl"
RUN = "run.yaml"
CSV_FIELDS = ("policy", "mode", "load", "requests", "seed", *METRICS, "window_s",
              "window_requests", "steady", "requests_completed", "decode_steps",
              "extrapolated_steps", "sla_met")  # fmt: skip


class PointStore:
    """Results by point key, mirrored to ``points.jsonl`` as they arrive."""

    def __init__(self, out: Path, run_doc: dict[str, Any], resume: bool) -> None:
        run_doc = json.loads(json.dumps(run_doc))  # plain lists, as YAML reads them back
        self.out = out
        self.points: dict[str, dict[str, Any]] = {}
        self.reused = 0
        out.mkdir(parents=True, exist_ok=True)
        path, run = out / POINTS, out / RUN
        if resume:
            old = parse_yaml(run.read_text(encoding="utf-8"), str(run)) if run.exists() else run_doc
            diff = sorted(k for k in set(old or {}) | set(run_doc)
                          if (old or {}).get(k) != run_doc.get(k))  # fmt: skip
            if diff:
                raise InputError(f"--resume: {run} was written for a different tuning run "
                                 f"(differs in: {', '.join(diff)}); use a new --out")  # fmt: skip
            self._load(path)
        elif path.exists() and path.stat().st_size and not resume:
            raise InputError(f"{out} already holds tuning points; pass --resume to continue or "
                             "choose another --out")  # fmt: skip
        run.write_text(yaml.safe_dump(run_doc, sort_keys=False), encoding="utf-8")
        self._file = open(path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        good = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                point = json.loads(line)
                key = point["key"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line torn by the kill
            if key not in self.points:
                self.points[key] = point
                good.append(line)
        self.reused = len(self.points)
        path.write_text("".join(line + "\n" for line in good), encoding="utf-8")

    def get(self, key: str) -> dict[str, Any] | None:
        return self.points.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.points

    def add(self, key: str, result: dict[str, Any]) -> None:
        point = {"key": key, **result}
        self.points[key] = point
        self._file.write(json_line(point) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: _fmt(row.get(k)) for k in fields})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def sorted_points(points: dict[str, dict[str, Any]], sla) -> list[dict[str, Any]]:
    rows = sorted(points.values(), key=lambda p: (p["policy"], p["mode"], p["load"]))
    return [{**p, "sla_met": all(s.met(p) for s in sla)} for p in rows]


def frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pareto points (higher tok/s/user p50 and higher throughput) of a set of points."""
    pts = [p for p in points if p.get("tps_per_user_p50") is not None]
    pts.sort(key=lambda p: (-p["tps_per_user_p50"], -p["throughput_tok_s"]))
    out, best = [], -1.0
    for p in pts:
        if p["throughput_tok_s"] > best:
            out.append(p)
            best = p["throughput_tok_s"]
    return out[::-1]  # increasing tok/s/user


# -- the report and best.yaml ------------------------------------------------------------------
BASELINE = "fixed:k=1"  # MTP-1, the production baseline gains are quoted against
KEY_METRICS = ("throughput_tok_s", "tps_per_user_p50", "ttft_p99_s", "tpot_p50_s",
               "mean_verify_len", "mean_accepted_len", "mean_batch_size")  # fmt: skip


def closest(points: list[dict[str, Any]], sla) -> dict[str, float | None]:
    """Per SLA constraint, the best value of its metric over ``points`` (the highest for
    ``>=``, the lowest for ``<=``; None if no point has it): why an entry is infeasible."""
    out: dict[str, float | None] = {}
    for c in sla:
        vals = [p[c.metric] for p in points if isinstance(p.get(c.metric), (int, float))]
        out[str(c)] = (max(vals) if c.op == ">=" else min(vals)) if vals else None
    return out


def report(cfg, searches, store) -> dict[str, Any]:
    """Per ``--policies`` entry: its best setting, throughput at the SLA, per-load figures."""
    from policies import parse_spec, policy_class
    from runner.sweep import point_key

    pol: dict[str, dict[str, Any]] = {}
    for s in searches:
        sc = s.score
        pts = [p for p in (store.get(point_key(s.best, cfg.mode, x)) for x in s.loads) if p]
        at = next((p for p in pts if p["load"] == sc.load), None)
        pol[s.entry] = {
            "best": s.best,
            "feasible": sc.load is not None,
            "throughput_at_sla": sc.measured,
            "throughput_at_sla_interpolated": sc.value,
            "load": sc.load,
            **({k: at.get(k) for k in KEY_METRICS} if at else {}),
            "settings_tried": len(s.specs),
            "closest": closest(
                [p for p in store.points.values() if p["policy"] in s.specs], cfg.sla
            ),
            "at_top_of_grid": sc.load is not None and sc.load >= max(cfg.loads),
            "lossless": policy_class(s.name).lossless,
            "per_load": [
                {
                    "load": p["load"],
                    **{k: p.get(k) for k in KEY_METRICS},
                    "sla_met": all(x.met(p) for x in cfg.sla),
                }
                for p in pts
            ],  # fmt: skip
        }
    base = pol.get(BASELINE, {}).get("throughput_at_sla")
    ref = next((e for e in pol if parse_spec(e)[0] == "oracle"), None)  # the best response
    bound = {p["load"]: p["throughput_tok_s"] for p in pol[ref]["per_load"]} if ref else {}
    for d in pol.values():
        d["gain_vs_fixed_k1"] = d["throughput_at_sla"] / base - 1 if base else None
        ratios = {
            str(p["load"]): p["throughput_tok_s"] / bound[p["load"]]
            for p in d["per_load"]
            if bound.get(p["load"]) and p["load"] in cfg.loads
        }
        d["share_of_oracle"] = ratios  # fmt: skip
    deployable = [e for e, d in pol.items() if d["lossless"] is True and d["feasible"]]
    best = max(deployable, key=lambda e: pol[e]["throughput_at_sla"]) if deployable else None
    return {"sla": [str(x) for x in cfg.sla], "mode": cfg.mode, "loads": list(cfg.loads),
            "baseline": BASELINE if base else None, "oracle": ref, "best": best,
            "policies": pol}  # fmt: skip


def best_scheduler(cfg, rep: dict[str, Any], cost, acceptance, workload_label: str):
    """The ``spectune.scheduler/v1`` document of the report's best entry (None if none)."""
    from policies import make_policy
    from profiles.store import acceptance_to_dict
    from runner import __version__
    from runner.scheduler import SchedulerConfig, content_hash

    entry = rep["best"]
    if entry is None:
        return None
    d = rep["policies"][entry]
    params = tuple(make_policy(d["best"]).__dict__.items())
    sts = sts_for(cfg.acceptance, acceptance, cfg.server.gamma)
    # the server's cap (--max-concurrency), kept apart from the tuned operating point
    # (tuned.load): a closed loop at N users needs a cap of at least N, never less than asked
    cap = cfg.server.max_concurrency
    if cfg.mode == "concurrency":
        cap = max(cap, int(d["load"]))
    tuned = {"entry": entry, "load_mode": cfg.mode, "load": d["load"],
             **{k: d.get(k) for k in KEY_METRICS},
             "throughput_at_sla_interpolated": d["throughput_at_sla_interpolated"],
             "gain_vs_fixed_k1": d["gain_vs_fixed_k1"], "per_load": d["per_load"]}  # fmt: skip
    baselines = {
        e: {"spec": o["best"], "throughput_at_sla": o["throughput_at_sla"], "load": o["load"]}
        for e, o in rep["policies"].items()
        if e != entry
    }
    prov = {
        "profile": {"spec": cfg.profile, "source": cost.source},
        "acceptance": {"spec": cfg.acceptance, "source": acceptance.source,
                       "sha256": content_hash(acceptance_to_dict(acceptance))},
        "workload": {"label": workload_label, "spec": cfg.describe()["workload"]},
        "tune": {"mode": cfg.mode, "loads": list(cfg.loads), "requests": cfg.requests,
                 "per_user": cfg.per_user},
        "seed": cfg.seed,
        "spectune_version": __version__,
    }  # fmt: skip
    return SchedulerConfig(
        policy_name=make_policy(d["best"]).name, params=params, gamma=cfg.server.gamma,
        cost=cost, sts=sts, max_concurrency=cap,
        kv_capacity_tokens=cfg.server.kv_capacity_tokens,
        max_prefill_tokens=cfg.server.max_prefill_tokens, sla=cfg.sla, tuned=tuned,
        baselines=baselines, provenance=prov,
    )  # fmt: skip


def sts_for(spec: str, acceptance, gamma: int):
    """The STS calibration the acceptance model's confidences went through (identity if none).

    Records models loaded as ``records:FILE.npz?temps=CALIB`` carry ``temperatures``; the
    variant, dataset, sample count and ECE come from the calibration file (spectune YAML or
    SGLang JSON)."""
    from runner.scheduler import StsConfig

    temps = getattr(acceptance, "temperatures", None)
    if not temps:
        return StsConfig.identity(gamma)
    query = dict(i.partition("=")[::2] for i in spec.partition("?")[2].split("&") if i)
    meta: dict[str, Any] = {}
    if query.get("temps"):
        from profiles.calibration import read_temperatures

        _, variant = read_temperatures(query["temps"])
        path = Path(query["temps"])
        text = path.read_text(encoding="utf-8")
        parse = parse_json if path.suffix.lower() == ".json" else parse_yaml
        meta = parse(text, str(path))
        if not isinstance(meta, dict):
            raise InputError("expected a mapping at the top level", where=str(path))
        meta["variant"] = variant

    def floats(key: str) -> tuple[float, ...]:
        v = meta.get(key)
        v = v if isinstance(v, list) else [] if v is None else [v]
        return tuple(float(x) for x in v if isinstance(x, (int, float)))

    return StsConfig(variant=str(meta.get("variant", "cumulative")),
                     temperatures=tuple(float(t) for t in temps),
                     dataset=str(meta.get("dataset", "")),
                     num_samples=int(meta.get("num_samples", 0) or 0),
                     ece_before=floats("ece_before"), ece_after=floats("ece_after"))  # fmt: skip
