"""The scheduler config that tuning exports and engines load (``spectune.scheduler/v1``, DESIGN §2).

One YAML document says everything needed to run the tuned verification policy again::

    schema: spectune.scheduler/v1
    policy: {name: dspark_lagged, params: {lag: 2, ...}, spec: "dspark_lagged:lag=2,..."}
    gamma: 7
    verify: {lag_steps: 2, min_verify_len: 0, max_verify_len: 0, survival_eps: 0.0}
    sts: {variant: cumulative, temperatures: [1.0, ...], dataset: "", num_samples: 0, ...}
    cost: {source: ..., form: sps | additive, ...}      # the cost table the policy plans with
    server: {max_concurrency: 48, kv_capacity_tokens: 0, max_prefill_tokens: 2048}
    sla: ["tps_per_user_p50>=150"]
    tuned: {load_mode: concurrency, load: 48, throughput_tok_s: ..., ...}   # what it achieved
    baselines: {"fixed:k=1": {throughput_at_sla: ...}, ...}
    provenance: {profile: {spec, source, sha256}, acceptance: {...}, workload, seed, version}

``verify`` restates the policy's length bounds in the names production engines use (ℓ counts
drafts, the anchor/bonus position excluded); it must agree with ``policy.params``. ``sts``
temperatures all 1.0 with ``num_samples: 0`` mean *uncalibrated* (identity). The profile hash is
the SHA-256 of the cost table's canonical JSON: :func:`load_scheduler` recomputes it, so a cost
table edited by hand after tuning is caught. Loader API::

    cfg = load_scheduler("best.yaml")      # InputError (exit 2) naming the field on bad input
    cfg.policy()                           # make_policy(name, **params)
    cfg.cost_model()                       # profiles.cost.CostModel
    cfg.server_config()                    # simulator.server.ServerConfig
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from profiles.calibration import StsCalibration
from profiles.cost import CostModel
from profiles.errors import InputError
from profiles.store import cost_from_dict, cost_to_dict, load_yaml

SCHEMA = "spectune.scheduler/v1"
_SLA = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*([-+0-9.eE]+|inf)\s*$")


# -- SLA ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SLA:
    """One service-level constraint on a summary metric, e.g. ``tps_per_user_p50>=80``."""

    metric: str  # a metric key of the point results (tps_per_user_p50, ttft_p99_s, ...)
    op: str  # ">=" (at least) or "<=" (at most)
    value: float  # the bound, in the metric's unit

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise InputError(f"SLA {self.metric}: operator must be >= or <=, got {self.op!r}")
        if not math.isfinite(self.value):
            raise InputError(f"SLA {self.metric}: bound must be a finite number")

    def slack(self, metrics: dict[str, Any]) -> float:
        """How far inside the bound a result lies (>= 0 met, < 0 violated; -inf if missing)."""
        v = metrics.get(self.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return -math.inf
        return float(v) - self.value if self.op == ">=" else self.value - float(v)

    def met(self, metrics: dict[str, Any]) -> bool:
        return self.slack(metrics) >= 0.0

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_sla(text: str, known: tuple[str, ...] | None = None) -> SLA:
    """``"tps_per_user_p50>=80"`` → SLA; ``known`` restricts the metric names."""
    m = _SLA.match(str(text))
    if not m:
        raise InputError(f"--sla {text!r}: expected METRIC>=VALUE or METRIC<=VALUE")
    metric, op, raw = m.groups()
    if known is not None and metric not in known:
        raise InputError(f"--sla {text!r}: unknown metric {metric!r} (known: {', '.join(known)})")
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"--sla {text!r}: {raw!r} is not a number") from None
    return SLA(metric, op, value)


# -- the document ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tuned:
    """The document's ``tuned`` section, typed, with what re-simulating the tuned point needs
    from ``provenance`` (the base workload, the acceptance spec, request counts, the seed)."""

    load_mode: str | None = None  # "concurrency" or "rate" (None: not from a tune)
    load: float | None = None  # the tuned operating point
    mean_verify_len: float | None = None  # drafts verified per request there
    per_load: tuple[dict[str, Any], ...] = ()  # the per-load curve (load, KEY_METRICS, sla_met)
    workload: dict[str, Any] | None = None  # WorkloadSpec fields of the base workload
    acceptance: str | None = None  # acceptance model spec
    requests: int | None = None  # requests per point (closed loop: at least)
    per_user: int | None = None  # closed loop: requests per concurrent user
    seed: int = 0

    @classmethod
    def of(cls, tuned: dict[str, Any], provenance: dict[str, Any]) -> Tuned:
        """Read leniently: a document not written by ``tune`` has fewer fields (None)."""
        t = provenance.get("tune") if isinstance(provenance.get("tune"), dict) else {}
        wl, acc = provenance.get("workload"), provenance.get("acceptance")
        num = lambda v: float(v) if isinstance(v, (int, float)) else None  # noqa: E731
        whole = lambda v: int(v) if isinstance(v, (int, float)) else None  # noqa: E731
        return cls(
            load_mode=tuned.get("load_mode"), load=num(tuned.get("load")),
            mean_verify_len=num(tuned.get("mean_verify_len")),
            per_load=tuple(p for p in tuned.get("per_load") or () if isinstance(p, dict)),
            workload=wl.get("spec") if isinstance(wl, dict) else None,
            acceptance=acc.get("spec") if isinstance(acc, dict) else None,
            requests=whole(t.get("requests")), per_user=whole(t.get("per_user")),
            seed=int(provenance.get("seed", 0) or 0),
        )  # fmt: skip

    def point(self) -> tuple[str, float, int]:
        """(load mode, load, requests) of the tuned point; InputError naming what is missing."""
        if self.load_mode is None or self.load is None or self.requests is None:
            raise InputError("no usable tuning provenance (tuned.load_mode, tuned.load, "
                             "provenance.tune.requests)")  # fmt: skip
        n = self.requests
        if self.load_mode == "concurrency":
            n = max(n, int(self.load) * (self.per_user or 0))
        return self.load_mode, self.load, n


def sts_of(acceptance, gamma: int) -> StsCalibration:
    """The calibration an acceptance model's confidences went through (identity if none)."""
    return getattr(acceptance, "calibration", None) or StsCalibration.identity(gamma)


@dataclass(frozen=True)
class SchedulerConfig:
    """A tuned verification policy with everything needed to rebuild and run it."""

    policy_name: str  # registered policy name
    params: tuple[tuple[str, Any], ...]  # every hyperparameter, (field, value), in field order
    gamma: int  # draft tokens proposed per request per step
    cost: CostModel  # the cost table the policy plans with (and the simulator charged)
    sts: StsCalibration  # confidence calibration the policy's confidences assume
    max_concurrency: int = 64  # server cap the figures were measured at
    kv_capacity_tokens: int = 0  # server KV capacity (0 = unlimited)
    max_prefill_tokens: int = 2048  # chunked prefill budget per step
    sla: tuple[SLA, ...] = ()  # the SLA it was tuned for
    tuned: dict[str, Any] = field(default_factory=dict)  # load and figures it achieved
    baselines: dict[str, Any] = field(default_factory=dict)  # policy spec -> figures at the SLA
    provenance: dict[str, Any] = field(default_factory=dict)  # profile/acceptance hashes, seed

    def __post_init__(self) -> None:
        if not 1 <= self.gamma <= 64:
            raise InputError(f"gamma must be in 1..64, got {self.gamma}")
        if self.sts.temperatures and len(self.sts.temperatures) != self.gamma:
            raise InputError(
                f"sts.temperatures has {len(self.sts.temperatures)} entries, gamma is {self.gamma}"
            )
        if self.max_concurrency < 1:
            raise InputError(f"server.max_concurrency must be >= 1, got {self.max_concurrency}")
        self.policy()  # validates name and parameters (InputError naming them)
        prov = dict(self.provenance)
        prov["profile"] = {**(prov.get("profile") or {}), "sha256": cost_hash(self.cost)}
        object.__setattr__(self, "provenance", prov)

    # -- what engines and the simulator need --------------------------------------------------
    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def policy(self):
        """The tuned policy, built through the registry."""
        from policies import make_policy

        return make_policy(self.policy_name, **self.param_dict)

    def cost_model(self) -> CostModel:
        return self.cost

    def server_config(self):
        from simulator.server import ServerConfig

        return ServerConfig(
            max_concurrency=self.max_concurrency,
            kv_capacity_tokens=self.kv_capacity_tokens,
            max_prefill_tokens=self.max_prefill_tokens,
            gamma=self.gamma,
        )

    @property
    def operating_point(self) -> Tuned:
        """The typed ``tuned`` section (exports read this, never the raw keys)."""
        return Tuned.of(self.tuned, self.provenance)

    @property
    def verify(self) -> dict[str, Any]:
        """Length bounds in engine terms, derived from the policy's parameters."""
        return self.policy().verify_bounds(self.gamma)

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        cost = cost_to_dict(self.cost)
        cost.pop("schema", None)
        return {
            "schema": SCHEMA,
            "policy": {
                "name": self.policy_name,
                "params": _plain(self.param_dict),
                "spec": self.policy().spec,
            },  # fmt: skip
            "gamma": self.gamma,
            "verify": self.verify,
            "sts": {
                "variant": self.sts.variant,
                "temperatures": list(self.sts.temperatures),
                "dataset": self.sts.dataset,
                "num_samples": self.sts.num_samples,
                "ece_before": list(self.sts.ece_before),
                "ece_after": list(self.sts.ece_after),
            },  # fmt: skip
            "cost": cost,
            "server": {
                "max_concurrency": self.max_concurrency,
                "kv_capacity_tokens": self.kv_capacity_tokens,
                "max_prefill_tokens": self.max_prefill_tokens,
            },  # fmt: skip
            "sla": [str(s) for s in self.sla],
            "tuned": _plain(self.tuned),
            "baselines": _plain(self.baselines),
            "provenance": _plain(self.provenance),
        }


def cost_hash(cost: CostModel) -> str:
    """SHA-256 of the cost table's canonical JSON (the profile's content hash)."""
    doc = cost_to_dict(cost)
    doc.pop("schema", None)
    return content_hash(doc)


def content_hash(doc: Any) -> str:
    """SHA-256 of canonical JSON; floats at 12 significant digits, so that a YAML round trip
    (steps/s ↔ seconds) cannot change the hash."""
    text = json.dumps(_canon(_plain(doc)), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canon(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """Plain YAML/JSON-safe values (tuples → lists, numpy scalars → Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


# -- reading and writing -----------------------------------------------------------------------
def write_scheduler(path: str | Path, cfg: SchedulerConfig) -> None:
    _exportable(cfg.policy_name, str(path))
    text = yaml.safe_dump(
        cfg.to_dict(), sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    Path(path).write_text(text, encoding="utf-8")


def load_scheduler(path: str | Path) -> SchedulerConfig:
    """Read and validate a ``spectune.scheduler/v1`` file; InputError naming the field."""
    return scheduler_from_dict(load_yaml(path), str(path))


def scheduler_from_dict(data: dict[str, Any], where: str = "scheduler config") -> SchedulerConfig:
    if data.get("schema") != SCHEMA:
        raise InputError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}", where=where)
    pol = _get(data, "policy", dict, where)
    name = _get(pol, "name", str, f"{where}: policy")
    _exportable(name, f"{where}: policy")
    params = _get(pol, "params", dict, f"{where}: policy") if "params" in pol else {}
    gamma = _get(data, "gamma", int, where)
    if not 1 <= gamma <= 64:
        raise InputError(f"field 'gamma' must be in [1, 64], got {gamma}", where=where)
    cost = cost_from_dict(_get(data, "cost", dict, where), where=f"{where}: cost")
    sts_d = _get(data, "sts", dict, where) if "sts" in data else {}
    server = _get(data, "server", dict, where) if "server" in data else {}
    prov = _get(data, "provenance", dict, where) if "provenance" in data else {}
    want = (prov.get("profile") or {}).get("sha256")
    if want is not None and want != cost_hash(cost):
        raise InputError("cost table does not match provenance.profile.sha256 (edited after "
                         "tuning?)", where=f"{where}: cost")  # fmt: skip
    try:
        sts = StsCalibration(
            variant=str(sts_d.get("variant", "cumulative")),
            temperatures=tuple(float(t) for t in sts_d.get("temperatures") or ()),
            dataset=str(sts_d.get("dataset", "")),
            num_samples=int(sts_d.get("num_samples", 0)),
            ece_before=tuple(float(t) for t in sts_d.get("ece_before") or ()),
            ece_after=tuple(float(t) for t in sts_d.get("ece_after") or ()),
        )
        sla = tuple(parse_sla(s) for s in _get(data, "sla", list, where)) if "sla" in data else ()
        cfg = SchedulerConfig(
            policy_name=name,
            params=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()),
            gamma=gamma,
            cost=cost,
            sts=sts,
            max_concurrency=_whole(server, "max_concurrency", 64, 1, 100_000, where),
            kv_capacity_tokens=_whole(server, "kv_capacity_tokens", 0, 0, 10**12, where),
            max_prefill_tokens=_whole(server, "max_prefill_tokens", 2048, 1, 10**9, where),
            sla=sla,
            tuned=dict(data.get("tuned") or {}),
            baselines=dict(data.get("baselines") or {}),
            provenance=dict(prov),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError) and exc.where:
            raise
        raise InputError(str(exc), where=where) from None
    bad = [t for t in cfg.sts.temperatures if not (math.isfinite(t) and 0 < t <= 1e6)]
    if bad:
        raise InputError(f"field 'sts.temperatures' must hold finite numbers > 0, got {bad[0]}",
                         where=where)  # fmt: skip
    from policies.registry import check_gamma

    check_gamma(cfg.policy(), gamma, f"{where}: policy")
    if "verify" in data:
        stated = _get(data, "verify", dict, where)
        for key, value in cfg.verify.items():
            if key in stated and stated[key] != value:
                raise InputError(f"verify.{key} is {stated[key]!r} but the policy parameters "
                                 f"give {value!r}", where=where)  # fmt: skip
    return cfg


def _exportable(name: str, where: str) -> None:
    """Only a registered lossless policy may be tuned into, exported from or run by a document."""
    from policies import policy_class

    try:
        cls = policy_class(name)
    except InputError as exc:
        raise InputError(str(exc), where=where) from None
    if cls.lossless is not True:
        why = ("reads realized outcomes: a simulator-only reference" if cls.lossless is None
               else "changes the output distribution (not lossless)")  # fmt: skip
        raise InputError(f"policy {name!r} {why}; it is never exported or run as a tuned "
                         "scheduler", where=where)  # fmt: skip


def _whole(block: dict, key: str, default: int, low: int, high: int, where: str) -> int:
    value = block.get(key, default)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise InputError(f"field 'server.{key}' must be a whole number in [{low}, {high:g}], "
                         f"got {value!r}", where=where)  # fmt: skip
    return value


def _get(data: dict, key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise InputError(f"missing field {key!r}", where=where)
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"field {key!r} must be a {kind.__name__}, got {type(value).__name__}",
                         where=where)  # fmt: skip
    return value
