"""Replaying recorded rounds by token position, conditioned on how the previous round ended.

A recorded round starts at a token position of its request (the tokens the request had gained
before it) and from an *anchor*, the last token before its drafts, which is either

- a **bonus** token, sampled from the target after every verified draft was accepted (A ≥ ℓ;
  the first round's anchor, sampled at prefill, is one too), or
- a **residual** token, sampled from the residual distribution where a draft was rejected
  (A < ℓ): a token the drafter did not expect, after which it drafts worse.

Rounds recorded under one verify policy and replayed in order under another put the wrong
anchor before each round (after a round the replaying policy truncates, its next anchor is a
bonus token, while the recorded next round followed a residual one) and drift in position. So a
replaying request keeps a cursor p, a token position within the recorded request it follows, and
the kind e of its anchor; it plays that request's first recorded round with anchor kind e that
starts at or after p, and moves p to that round's start plus the tokens the round gained under
the replaying policy. The cursor only moves forward, so no round is played twice in one pass (a
round of low A, after which the cursor would barely move, would otherwise be played again and
again). When no round of kind e is left, it chains another recorded request of its domain
(``end=chain``) or starts the same one again (``end=wrap``) at position 0 (taking its first
round, a bonus-anchored one, if that request has no round of kind e at all). Records made under
randomised verify lengths hold rounds of both kinds all along each request.

``Index`` holds the per-request lookup tables; ``Stream`` the replay state of one simulation's
slots, vectorised over the running batch (``simulator/backend.py`` drives it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit

from profiles.errors import InputError

if TYPE_CHECKING:
    from profiles.records import Records

NO_VERIFIED = ("no array 'verified' (each round's verify length, absent in files made before "
               "it was stored): replay needs it, re-record with `spectune record`")  # fmt: skip


@dataclass(frozen=True, eq=False)
class Index:
    """Lookup tables of records sorted by (request, step); see the module docstring."""

    bounds: np.ndarray  # [requests + 1] row offsets of each recorded request
    offset: np.ndarray  # [requests + 1] offsets of each request's positions in ``table``
    table: np.ndarray  # [2, Σ tokens] row to play at (anchor kind, position), -1: none; 1 = bonus
    start: np.ndarray  # [N] token position at which each round starts

    @classmethod
    def build(cls, accepted: np.ndarray, verified: np.ndarray, bounds: np.ndarray) -> Index:
        """From sorted rows: A [N], ℓ [N] and the request bounds [requests + 1]."""
        gained = np.minimum(accepted, verified) + 1  # [N]
        bonus = accepted >= verified  # [N] how each round ended
        total = np.add.reduceat(gained, bounds[:-1])  # [requests] tokens per recorded request
        offset = np.r_[0, np.cumsum(total)]
        table = np.full((2, int(offset[-1])), -1, dtype=np.int64)
        starts = np.empty(accepted.size, dtype=np.int64)
        for r in range(bounds.size - 1):
            lo, hi = int(bounds[r]), int(bounds[r + 1])
            start = np.r_[0, np.cumsum(gained[lo:hi])[:-1]]  # [n] position of each round
            starts[lo:hi] = start
            anchor = np.r_[True, bonus[lo : hi - 1]]  # [n] the first anchor is the prefill's
            pos = np.arange(int(total[r]))
            for kind in (0, 1):
                rows = np.flatnonzero(anchor == bool(kind))
                at = np.searchsorted(start[rows], pos)  # first round of this kind at >= pos
                table[kind, offset[r] : offset[r + 1]] = np.r_[lo + rows, -1][at]
        return cls(bounds, offset, table, starts)


class Stream:
    """Replay state of ``capacity`` slots: recorded request, position, anchor kind, row."""

    def __init__(
        self, index: Index, pools: dict, end: str, capacity: int, conf: np.ndarray, acc: np.ndarray
    ) -> None:
        self.index, self.pools, self.end = index, pools, end
        self.conf, self.acc = conf, acc  # [N, γ] confidences, [N] A of the sorted rows
        self.req = np.zeros(capacity, dtype=np.int64)
        self.pos = np.zeros(capacity, dtype=np.int64)
        self.row = np.zeros(capacity, dtype=np.int64)
        self.rng: list = [None] * capacity

    def join(self, slot: int, domain: str, rng: np.random.Generator) -> None:
        pool = self.pools.get(domain)
        if pool is None:
            raise InputError(
                f"records have no domain {domain!r} (domains: {', '.join(self.pools)})"
            )
        self.rng[slot] = (pool, rng)
        self.req[slot] = pool[rng.integers(pool.size)]
        self.pos[slot] = 0
        self.row[slot] = self.index.table[1, self.index.offset[self.req[slot]]]

    def rows(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The current round of each slot: (conf [R, γ], A [R])."""
        rows = self.row[slots]
        return self.conf[rows], self.acc[rows]

    def leave(self, slot: int) -> None:
        self.rng[slot] = None

    def advance(self, slots: np.ndarray, bonus: np.ndarray, gained: np.ndarray) -> None:
        """Each slot's round ended (``bonus`` [R] bool) with ``gained`` [R] tokens: next round."""
        ix = self.index
        kind = bonus.astype(np.int64)
        req = self.req[slots]
        pos = np.maximum(self.pos[slots], ix.start[self.row[slots]]) + gained
        inside = pos < ix.offset[req + 1] - ix.offset[req]
        row = np.where(inside, ix.table[kind, ix.offset[req] + np.where(inside, pos, 0)], -1)
        for i in np.flatnonzero(row < 0):  # no round of this kind left: chain (or wrap)
            pool, rng = self.rng[slots[i]]
            if self.end == "chain":
                req[i] = pool[rng.integers(pool.size)]
            pos[i] = 0
            row[i] = ix.table[kind[i], ix.offset[req[i]]]
            if row[i] < 0:  # this request has no round of that kind: its first round
                row[i] = ix.bounds[req[i]]
        self.req[slots], self.pos[slots], self.row[slots] = req, pos, row


# -- the acceptance model ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RecordsAcceptance:
    """Acceptance model replaying recorded rounds per request (see the module docstring)."""

    records: Records
    temperatures: tuple[float, ...] | None = None  # STS T_k per position (None: all 1)
    end: str = "chain"  # when a recorded request runs out: "chain" another one, or "wrap"
    source: str = ""  # provenance label; default built from the records' meta
    calibration: Any = None  # the StsCalibration behind ``temperatures`` (None: not calibrated)
    _conf: np.ndarray = field(init=False, repr=False)  # [N, γ] σ(logits / T), sorted rows
    _acc: np.ndarray = field(init=False, repr=False)  # [N] int64
    _index: Index = field(init=False, repr=False)  # position lookup (profiles/replay.py)
    _pools: dict = field(init=False, repr=False)  # domain -> recorded request indices

    def __post_init__(self) -> None:
        r = self.records
        if self.end not in ("chain", "wrap"):
            raise InputError(f"records: end must be 'chain' or 'wrap', not {self.end!r}")
        if r.verified is None:
            raise InputError(f"records: {NO_VERIFIED}")
        temps = np.ones(r.gamma)
        if self.temperatures is not None:
            temps = np.asarray(self.temperatures, dtype=float)
            if temps.shape != (r.gamma,) or not (np.isfinite(temps).all() and temps.min() > 0):
                raise InputError(
                    f"records: need {r.gamma} positive temperatures, got {list(self.temperatures)}"
                )
            object.__setattr__(self, "temperatures", tuple(map(float, temps)))
        order = np.lexsort((r.step, r.request))
        req, step = r.request[order], r.step[order]
        starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])
        first = np.repeat(starts, np.diff(np.r_[starts, req.size]))
        expect = np.arange(req.size) - first  # [N] steps run 0, 1, 2, ... in each request
        gap = np.flatnonzero(step != expect)
        if gap.size:  # positions follow from the gains of every earlier round
            i = int(gap[0])
            raise InputError(f"records: request {req[i]} misses step {expect[i]}")
        bounds = np.r_[starts, req.size]
        acc = r.accepted[order].astype(np.int64)
        object.__setattr__(self, "_conf", expit(r.logits[order].astype(float) / temps))
        object.__setattr__(self, "_acc", acc)
        object.__setattr__(self, "_index", Index.build(acc, r.verified[order], bounds))
        dom = r.domain[order][starts]
        object.__setattr__(self, "_pools", {str(d): np.flatnonzero(dom == d) for d in r.domains})
        if not self.source:
            label = r.meta.get("source") or "records"
            what = ", ".join(str(r.meta[k]) for k in ("drafter", "target") if r.meta.get(k))
            sts = " + STS temperatures" if self.temperatures is not None else ""
            object.__setattr__(
                self,
                "source",
                f"records: {label}"
                + (f" ({what})" if what else "")
                + f", {r.rounds} rounds of {r.requests} requests{sts}",
            )

    @property
    def gamma(self) -> int:
        return self.records.gamma

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._pools)

    def stream(self, capacity: int) -> Stream:
        """Replay state for ``capacity`` slots of one simulation (``profiles/replay.py``)."""
        return Stream(self._index, self._pools, self.end, capacity, self._conf, self._acc)

    def expected_accepted_len(self, domain: str, k: int | None = None) -> float:
        """Mean of min(A, k) + 1 over the recorded rounds of ``domain`` (k default γ): the
        records' round-weighted figure, not what a replay under ``fixed:k`` predicts."""
        acc = self.records.accepted[self.records.domain == domain]
        return float(1.0 + np.minimum(acc, self.gamma if k is None else k).mean())

    def describe(self) -> dict[str, Any]:
        r = self.records
        return {
            "kind": "records",
            "source": self.source,
            "gamma": r.gamma,
            "rounds": r.rounds,
            "requests": {d: int(p.size) for d, p in self._pools.items()},
            "accepted_len": {d: self.expected_accepted_len(d) for d in self._pools},
            "temperatures": list(self.temperatures) if self.temperatures else None,
            "end": self.end,
            "digest": r.digest(),
            "meta": r.meta,
        }


def open_records(spec: str) -> RecordsAcceptance:
    """``FILE.npz[?temps=CALIB.yaml|.json][&end=chain|wrap]`` → a RecordsAcceptance.

    ``temps`` names a calibration written by ``spectune calibrate`` (spectune YAML or SGLang
    ``DSparkStsCalibration`` JSON); without it confidences are σ(logit), T = 1.
    """
    path, _, query = spec.partition("?")
    options = {"temps": None, "end": "chain"}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in options:
            raise InputError(
                f"records spec: unknown or malformed option {item!r} "
                "(options: temps=CALIB, end=chain|wrap)"
            )
        options[key] = value
    if not path:
        raise InputError("records spec needs a file: records:FILE.npz[?temps=CALIB.yaml]")
    from profiles.records import read_records

    records = read_records(path)
    if records.verified is None:
        raise InputError(NO_VERIFIED, where=path)
    cal = None
    if options["temps"]:
        from profiles.builtin import packaged
        from profiles.calibration import read_sts

        cal = read_sts(packaged(options["temps"]))
        if len(cal.temperatures) != records.gamma:
            raise InputError(
                f"calibration has {len(cal.temperatures)} temperatures but the records "
                f"have gamma {records.gamma}",
                where=options["temps"],
            )
    temps = cal.temperatures if cal else None
    return RecordsAcceptance(records, temps, end=options["end"], calibration=cal)
