"""Tuning, the library call: ``tune(cfg, cost, acceptance, out, executor) -> TuneReport``.

It searches every ``--policies`` entry (``runner/search.py``) with points simulated by
``executor`` (``runner/executors.py``) into the resumable point store (``runner/store.py``),
then writes ``results.csv``, ``frontier.csv``, ``best.yaml`` (``spectune.scheduler/v1``, the
best lossless entry) and ``summary.json`` into ``out`` and returns the typed report
(``runner/report.py``). Nothing here parses arguments or prints: progress goes to an optional
:class:`TuneProgress` and figures to an optional ``plots`` hook, both supplied by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from profiles.documents import json_line
from profiles.errors import InputError
from runner.point import MODES, PointTask, point_key
from runner.report import TuneReport
from runner.scheduler import SLA
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec

DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class TuneConfig:
    """What to tune, against what, at which loads (written to ``run.yaml`` for ``--resume``)."""

    policies: tuple[str, ...]  # names (searched) or specs (pinned parameters not searched)
    sla: tuple[SLA, ...]  # all must hold; () = plain highest throughput
    workload: WorkloadSpec  # base workload
    profile: str  # cost model spec
    acceptance: str  # acceptance model spec
    server: ServerConfig  # server limits (gamma included)
    mode: str = "concurrency"  # "concurrency" (closed loop) or "rate" (open loop)
    loads: tuple[float, ...] = DEFAULT_CONCURRENCY  # load grid, increasing
    requests: int = 200  # rate: requests per point; concurrency: at least this many
    per_user: int = 8  # concurrency: requests per concurrent user (N · per_user, >= requests)
    seed: int = 0  # the one seed
    rounds: int = 2  # refinement rounds after the coarse grid
    bisect: int = 6  # rounds of load bisection (branch and bound over settings)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"load mode must be one of {MODES}, got {self.mode!r}")
        if not self.policies:
            raise InputError("--policies: no policy given")
        loads = tuple(float(x) for x in self.loads)
        if not loads or any(b <= a for a, b in zip(loads, loads[1:], strict=False)):
            raise InputError("load grid must be non-empty and strictly increasing")
        if self.mode == "concurrency" and any(x < 1 or x != int(x) for x in loads):
            raise InputError("concurrency loads must be whole numbers >= 1")
        object.__setattr__(self, "loads", loads)

    def requests_for(self, load: float) -> int:
        if self.mode == "concurrency":
            return max(self.requests, int(load) * self.per_user)
        return self.requests

    def task(self, policy: str, load: float) -> PointTask:
        n = self.requests_for(load)
        return PointTask(policy, self.mode, float(load), self.workload, self.server, n, self.seed)

    def workload_label(self) -> str:
        from simulator.workload import open_workload

        return open_workload(self.workload).label

    def describe(self) -> dict[str, Any]:
        """Plain data identifying the run (resume refuses a different one)."""
        d = asdict(self)
        d["sla"] = [str(s) for s in self.sla]
        d["workload"]["domain_mix"] = [list(p) for p in self.workload.domain_mix]
        return d


class TuneProgress(Protocol):
    """What ``tune`` reports while it runs (a progress bar, a log)."""

    def grow(self, total: int, cached: int) -> None: ...  # a stage: its points, already stored
    def done(self, result: dict[str, Any]) -> None: ...  # one point simulated


def tune(cfg: TuneConfig, cost, acceptance, out: Path, executor, *, resume: bool = False,
         progress: TuneProgress | None = None,
         plots: Callable[[TuneReport], Sequence[str]] | None = None) -> TuneReport:  # fmt: skip
    """Search, simulate into ``out``, write every result file; the typed report.

    ``executor`` runs the points (``runner.executors.make_executor``; the caller closes it);
    ``resume`` continues the run already in ``out``; ``plots`` draws the report's figures
    into ``out`` and returns their file names (listed in ``summary.json``)."""
    from runner.search import search
    from runner.store import PointStore

    store = PointStore(out, run_doc(cfg, cost), resume)
    try:

        def run_stage(tasks: list[PointTask]) -> None:
            todo = [t for t in tasks if t.key not in store]
            if progress:
                progress.grow(len(tasks), len(tasks) - len(todo))
            for task, result in executor.run(todo, (cost, acceptance)):
                store.add(task.key, result)
                if progress:
                    progress.done(result)

        searches = search(cfg, run_stage, store.get)
    finally:
        store.close()
    rep = _write(cfg, searches, store, out, cost, acceptance)
    if plots:
        rep = replace(rep, files=rep.files + tuple(plots(rep)))
    from profiles.importers import cost_warning

    rep = replace(rep, overload=_overload(cfg, store), run=run_doc(cfg, cost),
                  cost_warning=cost_warning(cost, cfg.profile), points={
        "total": len(store.points), "reused": store.reused,
        "simulated": len(store.points) - store.reused})  # fmt: skip
    (out / "summary.json").write_text(json_line(rep.to_dict(), indent=2) + "\n", encoding="utf-8")
    return rep


def run_doc(cfg: TuneConfig, cost) -> dict[str, Any]:
    """The resolved config, seed and profile hash behind a run (``run.yaml``)."""
    from runner.scheduler import cost_hash

    return {**cfg.describe(), "profile_sha256": cost_hash(cost)}


def _write(cfg, searches, store, out: Path, cost, acceptance) -> TuneReport:
    """results.csv, frontier.csv and best.yaml; the report (summary.json is written last)."""
    from runner import store as points
    from runner.report import best_scheduler, frontier, report
    from runner.scheduler import write_scheduler

    points.write_csv(out / "results.csv", points.sorted_points(store.points, cfg.sla),
                     points.CSV_FIELDS)  # fmt: skip
    fronts = {}
    for s in searches:
        pts = [store.get(point_key(spec, cfg.mode, x)) for spec in s.specs for x in cfg.loads]
        fronts[s.entry] = frontier([p for p in pts if p])
    points.write_csv(out / "frontier.csv",
                     [{"entry": e, **p} for e, f in fronts.items() for p in f],
                     ("entry", "policy", "load", "tps_per_user_p50", "throughput_tok_s",
                      "mean_verify_len"))  # fmt: skip
    label = cfg.workload_label()
    rep = replace(report(cfg, searches, store), workload=label, profile=cost.source,
                  acceptance=acceptance.source, fronts=fronts, out=out)  # fmt: skip
    sched = best_scheduler(cfg, rep, cost, acceptance, label)
    files = ("results.csv", "frontier.csv", "summary.json")
    if sched is not None:
        write_scheduler(out / "best.yaml", sched)
        files = ("best.yaml", *files)
    return replace(rep, files=files)


def _overload(cfg: TuneConfig, store) -> dict[str, float] | None:
    """An open-loop tune (``cfg.mode == "rate"``) at its lowest load beyond the capacity: the
    offered rate per unit of load is 1 req/s for a synthetic workload (the load is the rate) and
    the trace's own rate, over the requests a point replays, for a trace."""
    import numpy as np

    from runner.point import workload_for
    from simulator.capacity import grid_overload, offered_rate

    if cfg.mode != "rate":
        return None
    per_unit = 1.0
    if not cfg.workload.is_synthetic:
        arrivals = [r.arrival_s for r in workload_for(cfg.task(cfg.policies[0], 1.0))]
        per_unit = offered_rate(np.array(arrivals)) or 0.0
    over = grid_overload(list(store.points.values()), per_unit, cfg.loads)
    return None if over is None else {
        "offered_req_s": over.offered_req_s, "capacity_req_s": over.capacity_req_s,
        "load_that_fits": over.rate_scale,
    }  # fmt: skip
