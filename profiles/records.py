"""Acceptance records: decoding rounds recorded from an engine, and replaying them (DESIGN §2).

A records file is a numpy ``.npz`` (``savez_compressed``, read with ``allow_pickle=False``) holding
one row per decoding round, all γ drafts verified:

    domain    unicode [N]      domain label of the request (code, chat, math, ...)
    request   int64   [N]      request id, unique across domains
    step      int64   [N]      decode step within the request, 0-based
    logits    float32 [N, γ]   raw confidence-head logits; confidence = σ(logit / T_k)
    accepted  int16   [N]      A ∈ 0..γ, accepted drafts with all γ verified
    verified  int16   [N]      ℓ ∈ 0..γ, drafts the round's outcome followed: it gained
                               min(A, ℓ) + 1 tokens and ended on a bonus token if A ≥ ℓ, on a
                               residual one if A < ℓ (absent in files made before it was stored)
    meta      unicode 0-d      JSON object: drafter, target, gamma, temperature, seed, source,
                               spectune_version, command

``RecordsAcceptance`` is the acceptance model behind ``--acceptance records:FILE[?temps=CALIB]``:
each simulated request picks a recorded request of its domain and replays its rounds by token
position, conditioned on how its previous round ended (``profiles/replay.py``), then chains
another recorded request of that domain (or wraps, ``end=wrap``), so easy and hard requests stay
easy and hard across steps. Replay needs ``verified``: a file without it is refused there (it
still serves calibration, which reads only logits and A). ``spectune record`` draws ℓ uniformly
from 0..γ each round, so rounds after both kinds of ending occur all along each request.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logit

from profiles.errors import InputError
from profiles.replay import RecordsAcceptance, open_records  # noqa: F401 (re-exported)

ARRAYS = ("domain", "request", "step", "logits", "accepted", "meta")
OPTIONAL = ("verified",)  # absent in files made before verify lengths were stored


@dataclass(frozen=True, eq=False)
class Records:
    """Recorded decoding rounds (one row per round); see the module docstring for the arrays."""

    domain: np.ndarray  # unicode [N]
    request: np.ndarray  # int64 [N]
    step: np.ndarray  # int64 [N]
    logits: np.ndarray  # float32 [N, γ]
    accepted: np.ndarray  # int16 [N]
    meta: dict[str, Any] = field(default_factory=dict)  # provenance (JSON object)
    verified: np.ndarray | None = None  # int16 [N] ℓ of each round (None: not recorded)

    def __post_init__(self) -> None:
        _validate(self, "records")

    @property
    def gamma(self) -> int:
        return int(self.logits.shape[1])

    @property
    def rounds(self) -> int:
        return int(self.accepted.shape[0])

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(str(d) for d in np.unique(self.domain))

    @property
    def requests(self) -> int:
        return int(np.unique(self.request).size)

    def take(self, rows: np.ndarray) -> Records:
        """The records at ``rows`` (a boolean mask or an index array)."""
        return replace(
            self,
            domain=self.domain[rows],
            request=self.request[rows],
            step=self.step[rows],
            logits=self.logits[rows],
            accepted=self.accepted[rows],
            verified=None if self.verified is None else self.verified[rows],
        )

    def digest(self) -> str:
        """SHA-256 of the arrays' contents (independent of compression), for provenance."""
        h = hashlib.sha256()
        for name in ARRAYS[:-1] + OPTIONAL:
            if getattr(self, name) is None:
                continue
            a = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _validate(r: Records, where: str) -> None:
    """Coerce dtypes in place (frozen dataclass) and check every invariant of the format."""

    def bad(array: str, problem: str) -> InputError:
        return InputError(f"array {array!r}: {problem}", where=where)

    if not isinstance(r.meta, dict):
        raise bad("meta", "must hold a JSON object")
    arrays = {name: np.asarray(getattr(r, name)) for name in ARRAYS[:-1]}
    if arrays["domain"].dtype.kind != "U":
        raise bad("domain", f"must be unicode strings, got dtype {arrays['domain'].dtype}")
    for name in ("request", "step", "accepted"):
        if arrays[name].dtype.kind not in "iu":
            raise bad(name, f"must be integers, got dtype {arrays[name].dtype}")
    if arrays["logits"].dtype.kind != "f":
        raise bad("logits", f"must be floats, got dtype {arrays['logits'].dtype}")
    if arrays["logits"].ndim != 2 or arrays["logits"].shape[1] < 1:
        raise bad("logits", f"must have shape [N, gamma], got {arrays['logits'].shape}")
    n = arrays["logits"].shape[0]
    if n == 0:
        raise bad("logits", "no rounds recorded")
    for name in ("domain", "request", "step", "accepted"):
        if arrays[name].shape != (n,):
            raise bad(name, f"must have shape [{n}] like logits, got {arrays[name].shape}")
    gamma = arrays["logits"].shape[1]
    if not np.isfinite(arrays["logits"]).all():
        raise bad("logits", "contains NaN or infinity")
    acc = arrays["accepted"]
    if acc.min() < 0 or acc.max() > gamma:
        raise bad("accepted", f"values must lie in 0..{gamma}, found {acc.min()}..{acc.max()}")
    if arrays["step"].min() < 0:
        raise bad("step", "negative step index")
    if (arrays["domain"] == "").any():
        raise bad("domain", "empty domain label")
    req, step = arrays["request"].astype(np.int64), arrays["step"].astype(np.int64)
    order = np.lexsort((step, req))
    rs, ss = req[order], step[order]
    dup = (rs[1:] == rs[:-1]) & (ss[1:] == ss[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise bad("step", f"request {rs[i]} has step {ss[i]} twice")
    ds = arrays["domain"][order]
    mixed = (rs[1:] == rs[:-1]) & (ds[1:] != ds[:-1])
    if mixed.any():
        raise bad("domain", f"request {rs[int(np.flatnonzero(mixed)[0])]} spans two domains")
    ver = None
    if r.verified is not None:
        ver = np.asarray(r.verified)
        if ver.dtype.kind not in "iu":
            raise bad("verified", f"must be integers, got dtype {ver.dtype}")
        if ver.shape != (n,):
            raise bad("verified", f"must have shape [{n}] like logits, got {ver.shape}")
        if ver.min() < 0 or ver.max() > gamma:
            raise bad("verified", f"values must lie in 0..{gamma}, found {ver.min()}..{ver.max()}")
        ver = ver.astype(np.int16)
    declared = r.meta.get("gamma")
    if declared is not None and declared != gamma:
        raise bad("meta", f"gamma is {declared} but logits have {gamma} positions")
    object.__setattr__(r, "domain", arrays["domain"])
    object.__setattr__(r, "request", req)
    object.__setattr__(r, "step", step)
    object.__setattr__(r, "logits", arrays["logits"].astype(np.float32, copy=False))
    object.__setattr__(r, "accepted", acc.astype(np.int16))
    object.__setattr__(r, "verified", ver)


# Fields of the meta object that code reads: each checked for its type and range.
_META_TEXT = ("source", "drafter", "target", "policy")
_META_COUNTS = ("requests_per_domain", "prompt_len", "max_new_tokens", "slots")


def _check_meta(meta: dict, where: str) -> None:
    gamma = meta.get("gamma")
    if gamma is not None and (type(gamma) is not int or not 1 <= gamma <= 64):
        raise InputError(f"field 'gamma' must be a whole number in [1, 64], not {gamma!r}",
                         where=where)  # fmt: skip
    t = meta.get("temperature")
    if t is not None and (type(t) not in (int, float) or not 0 <= t <= 100):
        raise InputError(f"field 'temperature' must be a number in [0, 100], not {t!r}",
                         where=where)  # fmt: skip
    for key in _META_TEXT:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise InputError(f"field {key!r} must be text, not {meta[key]!r}", where=where)
    for key in _META_COUNTS:
        v = meta.get(key)
        if v is not None and (type(v) is not int or not 1 <= v <= 1 << 20):
            raise InputError(f"field {key!r} must be a whole number in [1, 2^20], not {v!r}",
                             where=where)  # fmt: skip
    runs = meta.get("engine_runs")
    if runs is not None:
        if not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
            raise InputError("field 'engine_runs' must map policies to domains", where=where)
        for spec, by in runs.items():
            for d, fig in by.items():
                if not isinstance(fig, dict) or not all(
                    type(x) in (int, float) and 0 <= x < 1e12 for x in fig.values()
                ):
                    raise InputError(f"field 'engine_runs' [{spec!r}][{d!r}] must map figure "
                                     "names to non-negative numbers", where=where)  # fmt: skip


def read_records(path: str | Path) -> Records:
    """Records from an ``.npz`` file; any problem is one InputError naming the file and array."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise InputError("no such file" if not p.exists() else "not a file", where=where)
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"not a records .npz file ({_short(exc)})", where=where) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise InputError("not a records .npz file (a single .npy array)", where=where)
    with npz:
        missing = [name for name in ARRAYS if name not in npz.files]
        if missing:
            raise InputError(f"missing array(s) {', '.join(map(repr, missing))}", where=where)
        arrays = {}
        for name in ARRAYS + tuple(n for n in OPTIONAL if n in npz.files):
            try:
                arrays[name] = npz[name]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise InputError(
                    f"array {name!r}: cannot read ({_short(exc)})", where=where
                ) from None
    meta = arrays.pop("meta")
    if meta.shape != () or meta.dtype.kind != "U":
        raise InputError("array 'meta': must be a 0-d unicode array", where=where)
    from profiles.documents import parse_json

    meta = parse_json(str(meta), f"{where}: array 'meta'")
    if not isinstance(meta, dict):
        raise InputError("array 'meta': must hold a JSON object", where=where)
    _check_meta(meta, f"{where}: array 'meta'")
    try:
        return Records(**arrays, meta=meta)
    except InputError as exc:
        raise InputError(str(exc).removeprefix("records: "), where=where) from None


def write_records(path: str | Path, records: Records) -> None:
    """Write ``records`` to ``path`` exactly as given (no ``.npz`` suffix is appended)."""
    _validate(records, "records")
    meta = {"gamma": records.gamma, **records.meta}
    with open(path, "wb") as f:
        np.savez_compressed(
            f,
            domain=records.domain,
            request=records.request.astype(np.int64),
            step=records.step.astype(np.int64),
            logits=records.logits.astype(np.float32),
            accepted=records.accepted.astype(np.int16),
            meta=np.array(json.dumps(meta)),
            **({} if records.verified is None else {"verified": records.verified.astype(np.int16)}),
        )


def split_by_request(records: Records, fraction: float, seed: int) -> tuple[Records, Records]:
    """(fit, report): a random ``fraction`` of each domain's requests, and the rest.

    Splitting is by request, so no request contributes rounds to both parts.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"split fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for d in records.domains:
        ids = np.unique(records.request[records.domain == d])
        k = int(round(fraction * ids.size))
        chosen.append(rng.permutation(ids)[: min(max(k, 1), ids.size - 1)] if ids.size > 1 else ids)
    fit = np.isin(records.request, np.concatenate(chosen))
    if fit.all() or not fit.any():
        raise InputError(
            f"cannot split {records.requests} recorded request(s) into fit and report parts; "
            "record more requests"
        )
    return records.take(fit), records.take(~fit)


# -- synthetic records (tests, examples) ----------------------------------------------------------
def synthesize(
    model: Any,
    requests: int,
    steps: int,
    seed: int,
    *,
    logit_scale: float = 1.0,
    domains: tuple[str, ...] | None = None,
) -> Records:
    """SYNTHETIC records drawn from a parametric acceptance model (never engine measurements).

    Each domain gets ``requests`` requests of ``steps//2 .. steps`` rounds, each with a verify
    length ℓ drawn uniformly from 0..γ (as ``spectune record`` does); logits are
    ``logit_scale · logit(conf)`` (a scale > 1 mimics an over-confident head, which STS undoes).
    """
    rng = np.random.default_rng(seed)
    names = ("domain", "request", "step", "logits", "accepted", "verified")
    rows: dict[str, list] = {k: [] for k in names}
    rid = 0
    for d in domains or model.domains:
        for _ in range(requests):
            n = int(rng.integers(max(steps // 2, 1), steps + 1))
            conf, acc = model.draw(model.start(d, rng), n, rng)
            rows["domain"].append(np.full(n, d))
            rows["request"].append(np.full(n, rid))
            rows["step"].append(np.arange(n))
            rows["logits"].append(logit_scale * logit(np.clip(conf, 1e-7, 1 - 1e-7)))
            rows["accepted"].append(acc)
            rows["verified"].append(rng.integers(0, model.gamma + 1, n))
            rid += 1
    meta = {
        "drafter": "synthetic",
        "target": "synthetic",
        "gamma": model.gamma,
        "temperature": 1.0,
        "seed": seed,
        "source": f"SYNTHETIC draws from {getattr(model, 'source', 'a model')}, "
        f"logit scale {logit_scale:g}",
        "spectune_version": _version(),
        "command": "profiles.records.synthesize",
    }
    return Records(**{k: np.concatenate(v) for k, v in rows.items()}, meta=meta)


def _version() -> str:
    from profiles.version import __version__

    return __version__


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
