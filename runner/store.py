"""The point store of a tuning run: streamed to disk as points finish, resumable, and its CSV.

``DIR/points.jsonl`` gets one JSON line per finished point, flushed and fsynced as it finishes,
so a killed run loses at most the point being written; a torn last line is dropped on resume.
``DIR/run.yaml`` holds the tuning config; ``resume`` refuses a directory whose ``run.yaml``
differs, and a run without it refuses a directory that already holds points. ``results.csv``
(every point, sorted, no wall-clock fields) is identical across executors and resumes.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

from profiles.documents import json_line, parse_yaml
from profiles.errors import InputError
from runner.point import METRICS

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
