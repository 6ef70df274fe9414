"""SGLang's STS calibration files, and STS temperatures on any acceptance model (``?temps=``).

SGLang 0.5.23 writes and reads one JSON object per calibration, ``DSparkStsCalibration``
(``srt/speculative/dspark_components/dspark_sts.py``, a ``msgspec.Struct``; written by
``benchmark/dspark_sts_fit.py`` from its confidence shards): ``temperatures`` (a non-empty list
of numbers, each > 0; required), ``dataset`` (string), ``num_samples`` (integer), ``ece_before``
and ``ece_after`` (lists of numbers); other keys are ignored. :func:`read_sglang_sts` accepts
and refuses exactly what SGLang's loader does (``tests/engines/test_sglang.py`` checks it on the
same files), and also refuses non-finite numbers. The planner then refuses a calibration whose
length is not the runtime γ; spectune refuses it where the file meets a model or a scheduler.

:class:`Tempered` puts temperatures on a model that has none of its own (parametric, imported,
paper): its confidences are read as the head's raw output ``σ(z_k)`` and become
``σ(z_k / T_k)``, what SGLang's scheduler computes from the head's logits with the file.
Accepted counts are unchanged (calibration moves confidences, not acceptance). Records models
apply temperatures to their recorded logits themselves (``profiles/records.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit, logit

from profiles.calibration import StsCalibration
from profiles.errors import InputError

_EDGE = 1e-12  # confidences are clipped into (0, 1) before the logit


def _numbers(doc: dict, key: str, where: str) -> tuple[float, ...]:
    v = doc.get(key, [])
    ok = isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
    )
    if not ok:
        raise InputError(f"field {key!r} must be a list of numbers (finite)", where=where)
    return tuple(float(x) for x in v)


def read_sglang_sts(path: str | Path) -> StsCalibration:
    """An SGLang STS calibration JSON, validated as SGLang's ``DSparkStsCalibration``."""
    from profiles.documents import parse_json
    from profiles.importers import read_text

    where = str(path)
    doc = parse_json(read_text(path), where)
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object (SGLang DSparkStsCalibration)", where=where)
    if "temperatures" not in doc:
        raise InputError("missing field 'temperatures'", where=where)
    temps = _numbers(doc, "temperatures", where)
    if not temps:
        raise InputError("field 'temperatures' is empty (SGLang needs at least one)", where=where)
    if min(temps) <= 0:
        raise InputError(f"temperatures must all be positive, got {list(temps)}", where=where)
    dataset, samples = doc.get("dataset", ""), doc.get("num_samples", 0)
    if not isinstance(dataset, str):
        raise InputError("field 'dataset' must be a string", where=where)
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise InputError("field 'num_samples' must be an integer", where=where)
    return StsCalibration(variant="cumulative", temperatures=temps, dataset=dataset,
                          num_samples=samples, ece_before=_numbers(doc, "ece_before", where),
                          ece_after=_numbers(doc, "ece_after", where))  # fmt: skip


def calibration_doc(sts: StsCalibration, metadata: dict[str, Any]) -> dict[str, Any]:
    """The spectune calibration YAML document (``spectune.calibration/v1``) of an SGLang STS
    file (SGLang fits the paper's cumulative variant), with ``metadata`` (provenance)."""
    from profiles.calibration import SCHEMA

    return {"schema": SCHEMA, "variant": "cumulative", "temperatures": list(sts.temperatures),
            "dataset": sts.dataset, "num_samples": sts.num_samples,
            "ece_before": list(sts.ece_before), "ece_after": list(sts.ece_after),
            "metadata": metadata}  # fmt: skip


def check_length(temps: tuple[float, ...], gamma: int, where: str, what: str) -> None:
    """A calibration of another length than ``what``'s γ is an error (never a silent clamp)."""
    if len(temps) != gamma:
        raise InputError(f"the calibration has {len(temps)} temperatures but {what} has gamma "
                         f"{gamma} (SGLang refuses a calibration of another length)",
                         where=where)  # fmt: skip


@dataclass(frozen=True)
class Tempered:
    """An acceptance model whose confidences go through STS temperatures ``σ(logit(c) / T)``."""

    model: Any
    temperatures: tuple[float, ...]
    origin: str = ""  # the calibration file
    calibration: StsCalibration | None = None  # what the temperatures came from (best.yaml's sts)
    _inverse: np.ndarray = field(init=False, repr=False, compare=False)  # [γ] 1 / T_k

    def __post_init__(self) -> None:
        t = np.asarray(self.temperatures, dtype=float)
        if t.ndim != 1 or not t.size or not (np.isfinite(t).all() and t.min() > 0):
            raise InputError("STS temperatures must be positive finite numbers")
        check_length(tuple(t.tolist()), self.model.gamma, self.origin, "the acceptance model")
        object.__setattr__(self, "temperatures", tuple(t.tolist()))
        object.__setattr__(self, "_inverse", 1.0 / t)

    @property
    def gamma(self) -> int:
        return self.model.gamma

    @property
    def domains(self) -> tuple[str, ...]:
        return self.model.domains

    @property
    def source(self) -> str:
        return f"{self.model.source} + STS temperatures from {Path(self.origin).name}"

    def start(self, domain: str, rng: np.random.Generator) -> Any:
        return self.model.start(domain, rng)

    def draw(self, latent: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        conf, accepted = self.model.draw(latent, n, rng)  # conf [n, γ], accepted [n]
        z = logit(np.clip(conf, _EDGE, 1.0 - _EDGE))  # [n, γ] the head's raw logits
        return expit(z * self._inverse), accepted

    def expected_accepted_len(self, domain: str, k: int | None = None) -> float:
        return self.model.expected_accepted_len(domain, k)

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "source": self.source,
                "sts_temperatures": list(self.temperatures), "sts_file": self.origin}  # fmt: skip


def tempered(model: Any, query: str, spec: str) -> Any:
    """``model`` with the ``?temps=CALIB`` of ``spec`` (``query`` is the text after ``?``)."""
    options = dict(item.partition("=")[::2] for item in query.split("&") if item)
    bad = [k for k in options if k != "temps"] or ([] if options.get("temps") else ["temps"])
    if bad:
        raise InputError(f"acceptance spec {spec!r}: the only option is ?temps=CALIB "
                         "(a spectune calibration YAML or an SGLang STS JSON)")  # fmt: skip
    from profiles.calibration import read_sts

    cal = read_sts(options["temps"])
    return Tempered(model, cal.temperatures, options["temps"], cal)
