"""From profiler measurements to cost models: the SPS table, the additive fit, the YAML document.

The 1D table is the verify points of the SPS composition (``engine/profiler.py``), as measured.
The additive form ``T(bs, M) = bias + α(bs) + θ(M)`` is fitted to every verify point by least
squares on the relative error with non-negative terms, with two more terms for this engine's
padding (each point's mean ``R · max q − B`` over its random splits and its share of ragged
splits), so α and θ price an unpadded batch and the simulator adds the padding of each real
batch from its longest request; α and θ are piecewise linear through
their probes (the ``bs`` probes and the 1D table's B grid), so jags in θ survive the fit. Both
share the draft, prefill and context curves, and the document keeps every measured point with
its mean, median and inter-quartile range (the models use the mean).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.profiler import (
    Q_TYPICAL,
    REFERENCE_CALLS,
    Measured,
    Measurements,
    request_probes,
    sps_requests,
)
from profiles.cost import CostModel
from profiles.curve import Curve


def hat(x: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights ``[len(x), len(probes)]`` (clamped at the ends)."""
    x = np.clip(np.asarray(x, float), probes[0], probes[-1])
    w = np.zeros((x.size, probes.size))
    j = np.clip(np.searchsorted(probes, x, side="right") - 1, 0, probes.size - 2)
    lo, hi = probes[j], probes[j + 1]
    f = (x - lo) / (hi - lo)
    rows = np.arange(x.size)
    w[rows, j] = 1 - f
    w[rows, j + 1] = f
    return w


@dataclass
class AdditiveFit:
    bias_s: float
    bs_probes: list[float]
    alpha_s: list[float]
    m_probes: list[float]
    theta_s: list[float]
    padding_s: float  # seconds per padded query token (0 without the padding term)
    ragged_s: float  # seconds per ragged batch (0 without the padding term)
    rms_rel_error: float  # over all fitted points
    max_rel_error: float
    points: int


def fit_additive(
    bs: np.ndarray, m: np.ndarray, t: np.ndarray, bs_probes, m_probes, pad=None, ragged=None
) -> AdditiveFit:
    """Least squares (relative error, non-negative terms) of ``t ≈ bias + α(bs) + θ(M)``, plus
    ``φ · pad + ρ · ragged`` when each point's mean padding (``R · max q − B``) and share of
    ragged splits are given (a ragged batch also pays the engine's pad/unpad gathers).

    α and θ are piecewise linear through their probes and are 0 at the first probe (the constant
    goes to ``bias``), so a point at (bs, M) = (1, 1) is ``bias`` alone. With the padding term,
    α and θ price a batch without padding (every request verifying as many tokens).
    """
    from scipy.optimize import lsq_linear, nnls

    bs_p, m_p = np.asarray(bs_probes, float), np.asarray(m_probes, float)
    cols = [np.ones((t.size, 1)), hat(bs, bs_p)[:, 1:], hat(m, m_p)[:, 1:]]
    shape = [] if pad is None else [pad, ragged if ragged is not None else np.zeros(t.size)]
    cols += [np.asarray(x, float)[:, None] for x in shape]
    a = np.hstack(cols) / t[:, None]
    sol = lsq_linear(a, np.ones(t.size), bounds=(0.0, np.inf), method="bvls").x
    if not np.all(np.isfinite(sol)):  # bvls can fail to converge on noisy, collinear points
        sol = nnls(a, np.ones(t.size))[0]
    sol = np.clip(sol, 0.0, None)  # active-set solvers may leave -1e-18 on a bound
    rel = a @ sol - 1.0
    na = bs_p.size - 1
    return AdditiveFit(
        bias_s=float(sol[0]),
        bs_probes=bs_p.tolist(),
        alpha_s=[0.0, *sol[1 : 1 + na].tolist()],
        m_probes=m_p.tolist(),
        theta_s=[0.0, *sol[1 + na : 1 + na + m_p.size - 1].tolist()],
        padding_s=float(sol[-2]) if shape else 0.0,
        ragged_s=float(sol[-1]) if shape else 0.0,
        rms_rel_error=float(np.sqrt(np.mean(rel**2))),
        max_rel_error=float(np.abs(rel).max()),
        points=int(t.size),
    )


def cost_models(ms: Measurements, source: str, quick: bool) -> tuple[CostModel, CostModel, dict]:
    """(SPS form, additive form, fit report) with shared draft, prefill and context curves."""
    pts = ms.verify.points
    r = np.array([p[0] for p in pts], float)
    b = np.array([p[1] for p in pts], float)
    t = np.asarray(ms.verify.mean)
    sps_rows = [i for i, (ri, bi) in enumerate(pts) if ri == sps_requests(bi, ms.slots)]
    grid = sorted({int(b[i]) for i in sps_rows})
    assert len(grid) == len(sps_rows)
    order = sorted(sps_rows, key=lambda i: b[i])
    extra = {
        "draft": Curve(tuple(map(float, ms.draft.points)), tuple(ms.draft.mean)),
        "prefill": Curve(tuple(map(float, ms.prefill.points)), tuple(ms.prefill.mean)),
        "context": context_curve(ms, ms.context),
        "context_one": context_curve(ms, ms.context_one)
        if ms.context_one
        else Curve((0.0,), (0.0,)),
        "context_queries": float(ms.gamma + 1) if ms.context_one else 0.0,
        "context_basis": "padded",  # the engine pads keys to the batch's longest context
        "context_base": float(ms.base_context),  # the verify points' cache length
        "max_context": int(ms.max_context),  # requests longer than this are refused (envelope)
    }
    max_b = ms.slots * (ms.gamma + 1)
    sps = CostModel.from_sps_table(
        b[order], 1.0 / t[order], max_batch_tokens=max_b, source=source, **extra
    )
    fit = fit_additive(r, b, t, request_probes(ms.slots, quick), grid, ms.verify.pad,
                       ms.verify.ragged)  # fmt: skip
    add = CostModel.additive(
        fit.bias_s, fit.bs_probes, fit.alpha_s, fit.m_probes, fit.theta_s,
        max_batch_tokens=max_b, source=f"{source}; additive least-squares fit",
        padding_s=fit.padding_s, ragged_s=fit.ragged_s, **extra,
    )  # fmt: skip
    return sps, add, fit.__dict__


def point_prices(ms: Measurements, cost: CostModel) -> dict[str, np.ndarray]:
    """What ``cost`` prices each measured point of ``ms`` at, per kind (the calls as the profiler
    made them: verify points at the base context with their mean padding, context points (R, L)
    at γ+1 and at 1 query token per request)."""
    q = ms.gamma + 1

    def verify(p, pad, ragged):
        return cost.verify_time(*p) + cost.padding_s * pad + cost.ragged_s * ragged

    def ctx(p, longest):
        r, n = p
        tokens = r * longest
        return cost.verify_time(r, tokens) + cost.context_time(r * n, r, tokens, longest)

    kinds = measured_kinds(ms)
    out = {
        "verify": [verify(p, d, g) for p, d, g in zip(ms.verify.points, ms.verify.pad,
                                                       ms.verify.ragged, strict=True)],
        "draft": [cost.draft_time(int(p)) for p in ms.draft.points],
        "prefill": [cost.prefill_time(int(p)) for p in ms.prefill.points],
        "context": [ctx(p, q) for p in ms.context.points],
        "context_one": [ctx(p, 1) for p in kinds["context_one"].points],
    }  # fmt: skip
    return {k: np.asarray(v, float) for k, v in out.items()}


def measured_kinds(ms: Measurements) -> dict[str, Measured]:
    """Every kind's :class:`Measured` by name (``context_one`` empty when not measured)."""
    one = ms.context_one or Measured([], [], [], [])
    return {"verify": ms.verify, "draft": ms.draft, "prefill": ms.prefill,
            "context": ms.context, "context_one": one}  # fmt: skip


RECALIBRATED = {"verify": ("verify", "context", "context_one"), "draft": ("draft",),
                "prefill": ("prefill",)}  # fmt: skip


def recalibration(ms: Measurements, cost: CostModel) -> dict[str, tuple[float, float, float]]:
    """Per call kind, ``(offset_s, scale, rms)``: the least-squares (relative error) affine map
    from ``cost``'s price of each point of ``ms`` to its measured mean, and the map's rms
    relative error. It carries a profile's shape over to a machine running at another speed
    (``CostModel.recalibrated``). Where the affine map is not a plausible speed change (a scale
    <= 0, or a point priced at <= 0: the profile's shape and the measurements disagree, as with
    a few noisy points) the map is the scale alone (offset 0; 1 if the profile prices the kind's
    every point at 0)."""
    prices, measured = point_prices(ms, cost), measured_kinds(ms)
    out = {}
    for name, kinds in RECALIBRATED.items():
        p = np.concatenate([prices[k] for k in kinds])  # [points]
        t = np.concatenate([np.asarray(measured[k].mean, float) for k in kinds])  # [points]
        a = np.stack([np.ones_like(p), p], axis=1) / t[:, None]  # relative error rows
        (offset, scale), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
        if scale <= 0 or offset + scale * p.min() <= 0:
            norm = float((a[:, 1] ** 2).sum())  # 0: the profile prices every point at 0
            offset, scale = 0.0, float(a[:, 1].sum()) / norm if norm > 0 else 1.0
        rel = a @ np.array([offset, scale]) - 1.0
        out[name] = (float(offset), float(scale), float(np.sqrt(np.mean(rel**2))))
    return out


def context_curve(ms: Measurements, m: Measured) -> Curve:
    """Extra verify seconds over attended KV tokens ``R · L``, chained over the request counts.

    The cost model prices a step's context as ``C(R · L) − C(R · base)`` (``profiles/cost.py``),
    so each count's points give the curve's rise from its own base: ``C(R · L) = C(R · base) +
    t(R, L) − t(R, base)``. The smallest count starts the curve (0 at its base); each larger
    count is anchored at the curve so far at ``R · base`` and adds its points beyond the KV
    range the smaller counts covered (and below it). One count alone is the plain difference."""
    by_r: dict[int, list[tuple[int, float]]] = {}
    for (r, n), t in zip(m.points, m.mean, strict=True):
        by_r.setdefault(int(r), []).append((int(n), float(t)))
    xs: list[float] = []
    ys: list[float] = []
    for r in sorted(by_r):
        lengths, t = (np.asarray(v, float) for v in zip(*sorted(by_r[r]), strict=True))
        rise = t - t[np.argmin(np.abs(lengths - ms.base_context))]
        anchor = Curve(tuple(xs), tuple(ys)).at(r * ms.base_context) if xs else 0.0
        new = [(r * n, anchor + d) for n, d in zip(lengths.tolist(), rise.tolist(), strict=True)
               if not xs or r * n > xs[-1] or r * n < xs[0]]  # fmt: skip
        merged = sorted([*zip(xs, ys, strict=True), *new])
        xs, ys = [x for x, _ in merged], [y for _, y in merged]
    return Curve(tuple(xs), tuple(ys))


# -- the profile document --------------------------------------------------------------------------
def _r(x: float) -> float:
    return float(f"{x:.6g}")


def _samples(m: Measured, keys: dict[str, Callable]) -> dict:
    out = {k: [f(p) for p in m.points] for k, f in keys.items()}
    stats = {"mean_s": m.mean, "median_s": m.median, "iqr_s": m.iqr}
    return {**out, **{k: [_r(x) for x in v] for k, v in stats.items()}}


def document(ms: Measurements, sps: CostModel, add: CostModel, fit: dict, meta: dict) -> dict:
    """The YAML document: the SPS form, the additive fit beside it, and every measured point."""
    from profiles.store import cost_to_dict

    doc = cost_to_dict(sps)
    doc["additive"] = {**cost_to_dict(add)["additive"], "source": add.source}
    doc["metadata"] = {
        **meta,
        "slots": ms.slots,
        "gamma": ms.gamma,
        "max_batch_tokens": sps.max_batch_tokens,
        "base_context": ms.base_context,
        "verify_composition": f"1D table: R = min(slots, ceil(B/{Q_TYPICAL})) requests; additive "
        "fit: those points plus each bs probe over its B range; every timed call splits B at "
        "random over R requests (1..gamma+1 tokens each) in randomly chosen slots; all at the "
        "base context; all kinds interleaved in one shuffled round-robin",
        "additive_fit": {
            k: (_r(v) if isinstance(v, float) else v)
            for k, v in fit.items()
            if k in ("rms_rel_error", "max_rel_error", "points", "padding_s", "ragged_s")
        },  # fmt: skip
        "wall_s": round(ms.wall_s, 1),
        "speed_reference": {  # the machine's speed before and after (drift check)
            "call": f"verify R=1 B={Q_TYPICAL} at the base context, mean of "
            f"{REFERENCE_CALLS} calls",
            "before_s": _r(ms.reference_s[0]),
            "after_s": _r(ms.reference_s[1]),
        },
        "samples": {
            "verify": _samples(
                ms.verify, {"requests": lambda p: int(p[0]), "batch_tokens": lambda p: int(p[1])}
            ),  # fmt: skip
            "draft": _samples(ms.draft, {"requests": int}),
            "prefill": _samples(ms.prefill, {"tokens": int}),
            "context": {
                **_samples(
                    ms.context,
                    {
                        "requests": lambda p: int(p[0]),
                        "context_len": lambda p: int(p[1]),
                        "batch_tokens": lambda p: int(p[0]) * (ms.gamma + 1),
                    },
                ),
                "batch_tokens_one_query": [int(p[0]) for p in ms.context.points],
                **(
                    {"mean_s_one_query": [_r(x) for x in ms.context_one.mean]}
                    if ms.context_one
                    else {}
                ),  # fmt: skip
            },
        },
    }
    return doc


@dataclass(frozen=True)
class EngineProfile:
    """A measured cost profile of the engine: the document and the figures reported on it."""

    doc: dict  # the spectune.cost/v1 document (SPS form, additive fit, every point, metadata)
    summary: dict  # what ``spectune profile --json`` prints, apart from the file written
    fit: dict  # the additive fit's report (relative errors, points)
    wall_s: float  # seconds measuring


def profile_engine(engine, cfg, *, spec: str, target: str, drafter: str, device, command: str = "",
                   on_total: Callable[[int], None] | None = None,
                   tick: Callable[[int], None] | None = None) -> EngineProfile:  # fmt: skip
    """Measure ``engine`` (built from the checkpoints ``target`` and ``drafter``, named ``spec``)
    under ``cfg`` (a :class:`engine.profiler.ProfileConfig`) into its cost profile, with the
    device, versions, load average and ``command`` in the metadata; ``on_total``/``tick`` as
    :func:`engine.profiler.measure` calls them."""
    from pathlib import Path

    from engine import profiler, provenance

    load_before = provenance.load_average()
    ms = profiler.measure(engine, cfg, on_total=on_total, tick=tick)
    env = provenance.environment(device)
    source = (
        f"measured: engine {spec} ({Path(target).stem} + {Path(drafter).stem}) on "
        f"{device.type} (threads={env['threads']}, torch {env['torch']}), {env['date'][:10]}, "
        f"commit {env['commit'][:12]}" + (" (quick)" if cfg.quick else "")
    )
    sps, add, fit = cost_models(ms, source, cfg.quick)
    meta = {
        **env,
        "engine": spec,
        "target": target,
        "drafter": drafter,
        "checkpoints_sha256": {
            "target": provenance.checkpoint_digest(target),
            "drafter": provenance.checkpoint_digest(drafter),
        },
        "temperature": 1.0,
        "load_average": {"before": load_before, "after": provenance.load_average()},
        "quick": cfg.quick,
        "repeats": cfg.repeats,
        "context_requests": profiler.context_requests(engine.cache.slots, cfg.context_requests),
        "warmup": cfg.warmup,
        "seed": cfg.seed,
        "command": command,
    }
    doc = document(ms, sps, add, fit, meta)
    return EngineProfile(doc, _summary(sps, fit, ms, meta), fit, ms.wall_s)


def _summary(sps: CostModel, fit: dict, ms: Measurements, meta: dict) -> dict:
    bs = [b for b in (1, 8, 64) if b <= sps.max_batch_tokens]
    rs = [r for r in (1, 8) if r <= ms.slots]
    return {
        "source": sps.source,
        "max_batch_tokens": sps.max_batch_tokens,
        "verify_points": len(ms.verify.points),
        "verify_ms": {b: round(1e3 * sps.verify_time(1, b), 3) for b in bs},
        "draft_ms": {r: round(1e3 * sps.draft_time(r), 3) for r in rs},
        "prefill_ms": {
            int(n): round(1e3 * t, 3) for n, t in zip(sps.prefill.x, sps.prefill.y, strict=True)
        },
        "additive_rms_rel_error": round(fit["rms_rel_error"], 4),
        "additive_max_rel_error": round(fit["max_rel_error"], 4),
        "wall_s": round(ms.wall_s, 1),
        "speed_reference_ms": [round(1e3 * t, 3) for t in ms.reference_s],
        "load_average": meta["load_average"],
        "threads": meta["threads"],
        "device": meta["device"],
    }
