"""The summary of one replay (``spectune replay``): :func:`replay_workload` simulates resolved
inputs and returns the summary and its warnings (the command resolves the options, calls it,
prints); :func:`write_texts` writes a live replay's generated text.

The summary is the simulator's (DESIGN §5 metrics) prefixed by the workload's label and stream
statistics, with the overload estimate (``simulator/capacity.py``) and any cost-table warning;
``wall`` comes last, since everything before it is seed-deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simulator.run import Result


@dataclass(frozen=True)
class Replay:
    summary: dict[str, Any]  # what ``--json`` prints and ``summary.json`` holds
    warnings: tuple[str, ...]  # one line each, for stderr
    result: Result  # the simulation (its recorder holds the per-request columns)


def replay_workload(workload, policy, cost, acceptance, config, *, seed: int, backend=None,
           rate_scale: float = 1.0, cost_name: str | None = None,
           on_request: Callable | None = None) -> Replay:  # fmt: skip
    """Simulate ``workload`` (a :class:`simulator.workload.Workload`) and summarise it;
    ``cost_name`` names the cost model in its warning (the file or spec given)."""
    from profiles.importers import cost_warning
    from simulator.capacity import overload
    from simulator.run import context_warning, simulate

    result = simulate(workload, policy, cost, acceptance, config, seed=seed, backend=backend,
                      on_request=on_request)  # fmt: skip
    stats = {k: getattr(workload.stats, k) for k in workload.stats.__slots__}
    summary = {"workload": workload.label, **stats, **result.summary}
    over = overload(result.summary, result.recorder.arrays()["arrival"], rate_scale)
    summary["overload"] = None if over is None else asdict(over)
    warnings = []
    if warn := cost_warning(cost, cost_name):  # also in the JSON
        summary["cost_warning"] = warn
        warnings.append(warn)
    summary["wall"] = summary.pop("wall")  # last: everything before it is seed-deterministic
    warnings += [w for w in (context_warning(result.summary), over and over.message()) if w]
    return Replay(summary, tuple(warnings), result)


def write_texts(path: Path, result: Result, texts: dict[int, bytes]) -> None:
    """Generated text per request of a live replay, one JSON line each (bytes decoded as UTF-8,
    replacement for invalid sequences; ``tokens`` holds the exact byte values)."""
    domains = dict(zip(result.recorder.arrays()["id"].astype(int).tolist(),
                       result.recorder.domains, strict=True))  # fmt: skip
    with open(path, "w", encoding="utf-8") as f:
        for rid in sorted(texts):
            data = texts[rid]
            row = {"id": rid, "domain": domains.get(rid), "tokens": list(data),
                   "text": data.decode("utf-8", errors="replace")}  # fmt: skip
            f.write(json.dumps(row) + "\n")
