"""Sequential Temperature Scaling (STS) of confidence-head logits (DSpark paper §3.2.1).

The head's confidence at draft position k is ``c_k = σ(logit_k / T_k)``, an estimate of
P(draft k accepted | drafts 1..k−1 accepted); the scheduler needs the prefix survival
``a_k = Π_{i≤k} c_i`` to be calibrated against the observed prefix acceptance ``1[A ≥ k]``.

Two variants, both picking ``T_k`` on a 1-D log-spaced grid (0.05 .. 20, 121 points plus 1.0)
left to right:

- ``cumulative`` (the paper's): minimise the ECE of the survival ``a_k`` against ``1[A ≥ k]``
  over all rounds, with ``T_1..T_{k−1}`` fixed at their chosen values;
- ``conditional`` (vLLM's online variant): minimise the ECE of ``c_k`` against ``1[A ≥ k]`` over
  the rounds that reached position k (``A ≥ k−1``). Positions are then independent.

ECE uses 15 equal-width bins over [0, 1], a probability p falling in bin ``min(⌊15p⌋, 14)``
(the binning of SGLang's STS fitter), weighted by the bins' sample shares. Among grid values with
equal ECE the one closest to T = 1 wins. Metrics per position, before (T = 1) and after: ECE, AUC
(rank-based Mann-Whitney, ``scipy.stats.rankdata``; NaN when only one class occurs) and Brier
score, each in both views (``cumulative``: survival vs 1[A ≥ k] over all rounds; ``conditional``:
c_k vs 1[A ≥ k] over rounds with A ≥ k−1). Fit on one split of the records, report on another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata

from profiles.errors import InputError

SCHEMA = "spectune.calibration/v1"
VARIANTS = ("cumulative", "conditional")
BINS = 15
GRID = np.unique(np.r_[np.geomspace(0.05, 20.0, 121), 1.0])
VIEWS = ("cumulative", "conditional")
METRICS = ("ece", "auc", "brier")
_CHUNK = 1 << 22  # candidate probabilities evaluated at once in fit_sts


# -- metrics --------------------------------------------------------------------------------------
def ece(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error with ``bins`` equal-width bins (NaN for no samples)."""
    p = np.asarray(probs, float).ravel()
    if p.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    gap = np.bincount(idx, weights=p - np.asarray(targets, float).ravel(), minlength=bins)
    return float(np.abs(gap).sum() / p.size)


def _ece_grid(probs: np.ndarray, targets: np.ndarray, bins: int) -> np.ndarray:
    """ECE of every row of ``probs`` [G, n] against ``targets`` [n], shape [G]."""
    g, n = probs.shape
    idx = np.minimum((probs * bins).astype(np.int64), bins - 1) + bins * np.arange(g)[:, None]
    gap = np.bincount(idx.ravel(), weights=(probs - targets).ravel(), minlength=g * bins)
    return np.abs(gap.reshape(g, bins)).sum(axis=1) / max(n, 1)


def auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """ROC AUC via ranks (ties averaged); NaN when only one class is present."""
    y = np.asarray(targets, bool).ravel()
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, float).ravel())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def brier(probs: np.ndarray, targets: np.ndarray) -> float:
    p = np.asarray(probs, float).ravel()
    return float(np.mean((p - np.asarray(targets, float).ravel()) ** 2)) if p.size else float("nan")


def reliability(
    probs: np.ndarray, targets: np.ndarray, bins: int = BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: (mean predicted, observed frequency, count); NaN where a bin is empty."""
    p, t = np.asarray(probs, float).ravel(), np.asarray(targets, float).ravel()
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.bincount(idx, weights=p, minlength=bins) / count
        obs = np.bincount(idx, weights=t, minlength=bins) / count
    return pred, obs, count


# -- the two views --------------------------------------------------------------------------------
def survival(logits: np.ndarray, temperatures: np.ndarray | None = None) -> np.ndarray:
    """Prefix survival ``Π_{i≤k} σ(logit_i / T_i)``, shape [N, γ]."""
    t = np.ones(logits.shape[1]) if temperatures is None else np.asarray(temperatures, float)
    return np.cumprod(expit(np.asarray(logits, float) / t), axis=1)


def view(
    kind: str, logits: np.ndarray, accepted: np.ndarray, k: int, temps: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, observed) at 0-based position ``k`` in view ``kind``."""
    hit = accepted >= k + 1
    if kind == "cumulative":
        return survival(logits[:, : k + 1], None if temps is None else temps[: k + 1])[:, k], hit
    reached = accepted >= k
    t = 1.0 if temps is None else temps[k]
    return expit(np.asarray(logits[reached, k], float) / t), hit[reached]


# -- fitting --------------------------------------------------------------------------------------
def fit_sts(
    logits: np.ndarray,
    accepted: np.ndarray,
    variant: str = "cumulative",
    grid: np.ndarray = GRID,
    bins: int = BINS,
) -> np.ndarray:
    """Per-position temperatures [γ] chosen left to right (see the module docstring)."""
    if variant not in VARIANTS:
        raise InputError(f"unknown STS variant {variant!r} (expected {' or '.join(VARIANTS)})")
    logits = np.asarray(logits, float)
    accepted = np.asarray(accepted)
    grid = np.asarray(grid, float)
    prefer = np.argsort(np.abs(np.log(grid)), kind="stable")  # ties go to T closest to 1
    grid = grid[prefer]
    temps = np.ones(logits.shape[1])
    fixed = np.ones(logits.shape[0])  # survival through earlier positions, at chosen T
    for k in range(logits.shape[1]):
        hit = (accepted >= k + 1).astype(float)
        if variant == "cumulative":
            scale, z, target = fixed, logits[:, k], hit
        else:
            reached = accepted >= k
            scale, z, target = 1.0, logits[reached, k], hit[reached]
        if target.size:
            step = max(1, _CHUNK // target.size)  # grid points per pass, bounding memory
            errors = np.concatenate(
                [
                    _ece_grid(scale * expit(z[None, :] / grid[i : i + step, None]), target, bins)
                    for i in range(0, grid.size, step)
                ]
            )  # [G]
            temps[k] = grid[int(np.argmin(errors))]
        fixed = fixed * expit(logits[:, k] / temps[k])
    return temps


def metrics(
    logits: np.ndarray, accepted: np.ndarray, temps: np.ndarray | None, bins: int = BINS
) -> dict[str, dict[str, list[float]]]:
    """{view: {metric: [per position]}} at temperatures ``temps`` (None: raw, T = 1)."""
    out: dict[str, dict[str, list[float]]] = {}
    for kind in VIEWS:
        rows: dict[str, list[float]] = {m: [] for m in METRICS}
        for k in range(logits.shape[1]):
            pred, obs = view(kind, logits, accepted, k, temps)
            rows["ece"].append(ece(pred, obs, bins))
            rows["auc"].append(auc(pred, obs))
            rows["brier"].append(brier(pred, obs))
        out[kind] = rows
    return out


@dataclass(frozen=True)
class Calibration:
    """A fitted STS calibration plus its held-out report and provenance."""

    variant: str  # "cumulative" (paper) or "conditional" (vLLM's online variant)
    temperatures: tuple[float, ...]  # T_k, k = 1..γ
    before: dict = field(repr=False)  # metrics(..., None) on the report split
    after: dict = field(repr=False)  # metrics(..., temperatures) on the report split
    dataset: str = ""  # records file (and domain filter) it was fitted on
    records_sha256: str = ""  # Records.digest() of the whole file
    split_seed: int = 0  # seed of the by-request split
    fit_fraction: float = 0.5  # share of requests in the fit split
    fit_rounds: int = 0
    report_rounds: int = 0
    bins: int = BINS

    def to_dict(self) -> dict[str, Any]:
        """The spectune YAML document (``schema: spectune.calibration/v1``)."""
        return {
            "schema": SCHEMA,
            "variant": self.variant,
            "temperatures": list(self.temperatures),
            "dataset": self.dataset,
            # the SGLang DSparkStsCalibration fields (also StsCalibration's):
            "num_samples": self.fit_rounds,
            "ece_before": _plain(self.before)["cumulative"]["ece"],
            "ece_after": _plain(self.after)["cumulative"]["ece"],
            "records_sha256": self.records_sha256,
            "split": {
                "seed": self.split_seed,
                "fit_fraction": self.fit_fraction,
                "fit_rounds": self.fit_rounds,
                "report_rounds": self.report_rounds,
            },
            "ece_bins": self.bins,
            "grid": {"low": float(GRID[0]), "high": float(GRID[-1]), "points": int(GRID.size)},
            "metrics": {
                "report_split": {"before": _plain(self.before), "after": _plain(self.after)}
            },
        }

    def to_sglang(self) -> dict[str, Any]:
        """SGLang ``DSparkStsCalibration`` JSON fields; ECE of the cumulative survival, held out."""
        return {
            "temperatures": list(self.temperatures),
            "dataset": self.dataset,
            "num_samples": self.fit_rounds,
            "ece_before": self.before["cumulative"]["ece"],
            "ece_after": self.after["cumulative"]["ece"],
        }


def calibrate(fit: Any, report: Any, variant: str, **provenance: Any) -> Calibration:
    """Fit STS temperatures on ``fit`` records and report metrics on ``report`` records."""
    temps = fit_sts(fit.logits, fit.accepted, variant)
    return Calibration(
        variant=variant,
        temperatures=tuple(float(t) for t in temps),
        before=metrics(report.logits, report.accepted, None),
        after=metrics(report.logits, report.accepted, temps),
        fit_rounds=fit.rounds,
        report_rounds=report.rounds,
        **provenance,
    )


@dataclass(frozen=True)
class StsCalibration:
    """The one calibration object: what an acceptance model's confidences went through, carried
    from the calibration file by the acceptance model into ``best.yaml`` and SGLang's
    ``DSparkStsCalibration`` (same fields). All temperatures 1.0 with ``num_samples`` 0 is the
    identity (uncalibrated)."""

    variant: str = "cumulative"  # "cumulative" (paper's STS) or "conditional" (vLLM's online)
    temperatures: tuple[float, ...] = ()  # T_k per position; all 1.0 = identity (uncalibrated)
    dataset: str = ""  # what the calibration was fitted on ("" = none)
    num_samples: int = 0  # rounds used to fit (0 = uncalibrated)
    ece_before: tuple[float, ...] = ()  # per-position ECE before scaling
    ece_after: tuple[float, ...] = ()  # per-position ECE after scaling

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise InputError(f"sts.variant must be one of {VARIANTS}, got {self.variant!r}")
        if any(not (t > 0 and math.isfinite(t)) for t in self.temperatures):
            raise InputError("sts.temperatures must all be positive finite numbers")
        if self.num_samples < 0:
            raise InputError("sts.num_samples must be >= 0")

    @classmethod
    def identity(cls, gamma: int) -> StsCalibration:
        return cls(temperatures=(1.0,) * gamma)

    def to_sglang(self) -> dict[str, Any]:
        """SGLang's ``DSparkStsCalibration`` JSON object; defaults omitted as its
        ``omit_defaults=True`` encoder does (SGLang fits the cumulative variant only)."""
        doc: dict[str, Any] = {"temperatures": list(self.temperatures)}
        for key, empty in (("dataset", ""), ("num_samples", 0), ("ece_before", ()),
                           ("ece_after", ())):  # fmt: skip
            value = getattr(self, key)
            if value != empty:
                doc[key] = list(value) if isinstance(value, tuple) else value
        return doc


def read_sts(path: str | Path) -> StsCalibration:
    """The calibration in a spectune calibration YAML or an SGLang STS JSON, read once."""
    from profiles.store import load_yaml

    p = Path(path)
    if p.suffix.lower() == ".json":  # validated as SGLang's DSparkStsCalibration
        from profiles.sts import read_sglang_sts

        return read_sglang_sts(p)
    else:
        data = load_yaml(p)
        if data.get("schema", SCHEMA) != SCHEMA:
            raise InputError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}", where=str(p))
        variant = str(data.get("variant", "cumulative"))
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", where=str(p))
    temps = data.get("temperatures")
    try:
        values = tuple(float(t) for t in temps)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError("field 'temperatures' must be a list of numbers", where=str(p)) from None
    if not values or not all(np.isfinite(values)) or min(values) <= 0:
        raise InputError("field 'temperatures' must be positive numbers", where=str(p))

    def floats(key: str) -> tuple[float, ...]:
        v = data.get(key)
        v = v if isinstance(v, list) else [] if v is None else [v]
        return tuple(float(x) for x in v if isinstance(x, (int, float)))

    try:
        return StsCalibration(variant=variant, temperatures=values,
                              dataset=str(data.get("dataset", "")),
                              num_samples=int(data.get("num_samples", 0) or 0),
                              ece_before=floats("ece_before"),
                              ece_after=floats("ece_after"))  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), where=str(p)) from None


def read_temperatures(path: str | Path) -> tuple[tuple[float, ...], str]:
    """(temperatures, variant) of :func:`read_sts`."""
    sts = read_sts(path)
    return sts.temperatures, sts.variant


def _plain(m: dict) -> dict:
    """NaN → None so YAML/JSON stay portable."""
    return {
        v: {k: [None if np.isnan(x) else round(float(x), 6) for x in xs] for k, xs in rows.items()}
        for v, rows in m.items()
    }


def calibrate_file(path: str | Path, variant: str, fit_fraction: float, seed: int,
                   domain: str | None = None) -> tuple[Calibration, Any, Any, Any]:  # fmt: skip
    """STS fitted on one by-request split of a records file (one ``domain`` of it, if given)
    and reported on the other: (calibration, fit split, report split, records)."""
    from profiles.records import read_records, split_by_request

    records = read_records(path)
    digest, dataset = records.digest(), Path(path).name
    if domain:
        if domain not in records.domains:
            raise InputError(f"no domain {domain!r} (domains: {', '.join(records.domains)})",
                             where=str(path))  # fmt: skip
        records = records.take(records.domain == domain)
        dataset += f" [{domain}]"
    fit, report = split_by_request(records, fit_fraction, seed)
    cal = calibrate(fit, report, variant, dataset=dataset, records_sha256=digest,
                    split_seed=seed, fit_fraction=fit_fraction)  # fmt: skip
    return cal, fit, report, records
