"""Import production cost tables into spectune cost profiles (``spectune import KIND FILE``).

- ``sglang-sps``: an SGLang SPS cost table JSON, either ``SpsCostTable`` (``sample_batch_tokens``,
  ``sample_steps_per_sec``, ``max_batch_tokens``) or ``SpsAdditiveCostTable`` (``bias_seconds``,
  ``bs_probes``, ``alpha_seconds``, ``m_probes``, ``theta_seconds``), told apart as SGLang does by
  the ``bias_seconds`` key, and read by default as SGLang reads them (``profiles/sglang.py``): the
  1D table as a step function (floor probe, clamped at both ends), the additive curves linear
  and clamped at their ends; ``lookup="linear"`` interpolates and extrapolates linearly instead.
- ``cost-csv``: a plain CSV ``batch_tokens,step_ms`` (one measured verify step per row) → an SPS
  cost model.

Neither form carries prefill, drafter or context costs separately: the imported profile's source
label says so, and :func:`cost_warning` is the one warning line ``import``, ``replay`` and ``tune``
print (and record in their JSON) for every cost model labelled "imported" that lacks a term.
The prefill term can be completed from a second source (``--prefill-from``, :func:`prefill_from`):
another cost profile's prefill curve, a CSV of prefill times (``prompt_tokens,prefill_ms``) or a
low-load TTFT measurement (``prompt_tokens,ttft_ms``, or a ``requests.csv`` with ``prompt_tokens``
and ``ttft_s``), whose TTFT is read as the time to prefill the prompt: that is what the simulator's
TTFT is for a request that arrives at an idle server (one prefill step, no queue, no batch).
vLLM's acceptance counters are imported by ``profiles/vllm.py``. Every problem in the input is
one InputError naming the file (and line or field).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from profiles.cost import CostModel
from profiles.curve import Curve
from profiles.errors import InputError


def read_text(path: str | Path) -> str:
    """A text file's contents, or an InputError naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file" if not p.exists() else "not a file", where=str(p))
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", where=str(p)) from None


# -- cost tables ----------------------------------------------------------------------------------
def _list(data: dict, key: str, where: str, kind: type = float) -> list:
    if key not in data:
        raise InputError(f"missing field {key!r}", where=where)
    values = data[key]
    ok = (
        isinstance(values, list)
        and values
        and all(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (kind is float or float(v).is_integer())
            for v in values
        )
    )
    if not ok:
        what = "integers" if kind is int else "numbers"
        raise InputError(f"field {key!r} must be a non-empty list of {what}", where=where)
    return [kind(v) for v in values]


def _number(data: dict, key: str, where: str) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"field {key!r} must be a number", where=where)
    return float(v)


LOOKUPS = ("sglang", "linear")  # how an imported SGLang table is read between and beyond probes
TERMS = ("prefill", "draft", "context")  # cost terms an imported table may lack
INCOMPLETE = (
    "no prefill, draft or context terms: an SGLang table or a cost CSV prices the decode "
    "step alone, so replays and tunes on it under-price prompts and long contexts"
)


def _step(xs: list, ys: list) -> tuple[list, list]:
    """Probes of a piecewise-linear curve equal, at every integer, to SGLang's floor-probe lookup
    (``floor_probe_index``: the largest probe <= B, the first below it, the last beyond)."""
    px, py = [], []
    if xs[0] > 1:
        px.append(xs[0] - 1), py.append(ys[0])
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        px.append(x), py.append(y)
        nxt = xs[i + 1] if i + 1 < len(xs) else x + 2
        if nxt - 1 > x:
            px.append(nxt - 1), py.append(y)
    return px, py


def _clamp(xs: list, ys: list) -> tuple[list, list]:
    """Probes extended flat one step beyond both ends (SGLang's ``_interp_clamped``); not below
    1, where no batch lies (probe axes are > 0)."""
    low = ([xs[0] - 1], [ys[0]]) if xs[0] > 1 else ([], [])
    return [*low[0], *xs, xs[-1] + 1], [*low[1], *ys, ys[-1]]


def sglang_cost(
    path: str | Path, lookup: str = "sglang", prefill: tuple[Curve, str] | None = None
) -> CostModel:
    """A cost model from an SGLang ``SpsCostTable`` or ``SpsAdditiveCostTable`` JSON, read as
    SGLang reads it (``lookup="sglang"``: floor probe for 1D tables, clamped beyond the probes
    of additive ones) or interpolated and extrapolated linearly (``lookup="linear"``);
    ``prefill`` is a (curve, label) from :func:`prefill_from`."""
    where = str(path)
    extra, gaps = _completion(prefill)
    from profiles.documents import parse_json

    data = parse_json(read_text(path), where)
    if not isinstance(data, dict):
        raise InputError(
            "expected a JSON object (SpsCostTable or SpsAdditiveCostTable)", where=where
        )
    name = Path(path).name
    try:
        if "bias_seconds" in data:
            bias = _number(data, "bias_seconds", where)
            if bias <= 0:
                raise InputError("field 'bias_seconds' must be > 0", where=where)
            bs, m = _list(data, "bs_probes", where, int), _list(data, "m_probes", where, int)
            alpha, theta = _list(data, "alpha_seconds", where), _list(data, "theta_seconds", where)
            for probes, values, label in (
                (bs, alpha, "bs_probes/alpha_seconds"),
                (m, theta, "m_probes/theta_seconds"),
            ):
                if len(probes) != len(values):
                    raise InputError(
                        f"{label} lengths differ ({len(probes)} vs {len(values)})", where=where
                    )
            if lookup == "sglang":
                (bs, alpha), (m, theta) = _clamp(bs, alpha), _clamp(m, theta)
            return CostModel.additive(
                bias, bs, alpha, m, theta, **extra,
                source=f"imported: SGLang SpsAdditiveCostTable {name} ({lookup} lookup; {gaps})",
            )  # fmt: skip
        tokens = _list(data, "sample_batch_tokens", where, int)
        sps = _list(data, "sample_steps_per_sec", where)
        if "max_batch_tokens" not in data:
            raise InputError("missing field 'max_batch_tokens'", where=where)
        top = _number(data, "max_batch_tokens", where)
        if len(tokens) != len(sps):
            raise InputError(
                f"sample_batch_tokens/sample_steps_per_sec lengths differ "
                f"({len(tokens)} vs {len(sps)})",
                where=where,
            )
        if len(tokens) == 1:
            raise InputError(
                "a one-probe table is SGLang's uninitialized placeholder; profile the engine first",
                where=where,
            )
        if top < tokens[-1]:
            raise InputError(f"max_batch_tokens {top:g} < largest probe {tokens[-1]}", where=where)
        if any(b <= a for a, b in zip(tokens, tokens[1:], strict=False)):
            raise InputError("sample_batch_tokens must be strictly increasing", where=where)
        if any(v <= 0 for v in sps):
            raise InputError("sample_steps_per_sec must be positive", where=where)
        if lookup == "sglang":
            tokens, sps = _step(tokens, sps)
        return CostModel.from_sps_table(
            tokens, sps, max_batch_tokens=int(top), **extra,
            source=f"imported: SGLang SpsCostTable {name} ({lookup} lookup; {gaps})",
        )  # fmt: skip
    except InputError as exc:
        if exc.where:
            raise
        raise InputError(str(exc), where=where) from None


def csv_cost(path: str | Path, prefill: tuple[Curve, str] | None = None) -> CostModel:
    """An SPS cost model from a CSV with header ``batch_tokens,step_ms`` (``prefill`` as in
    :func:`sglang_cost`)."""
    where = str(path)
    extra, gaps = _completion(prefill)
    rows = csv.reader(io.StringIO(read_text(path)))
    header, points = None, {}
    for i, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if header is None:
            if cells != ["batch_tokens", "step_ms"]:
                raise InputError(
                    f"header must be 'batch_tokens,step_ms', got {','.join(cells)!r}",
                    where=f"{where}:{i}",
                )
            header = cells
            continue
        if len(cells) != 2:
            raise InputError(f"expected 2 columns, got {len(cells)}", where=f"{where}:{i}")
        try:
            b, ms = float(cells[0]), float(cells[1])
        except ValueError:
            raise InputError(f"not a number in {','.join(cells)!r}", where=f"{where}:{i}") from None
        if not (math.isfinite(b) and b >= 1 and b.is_integer()):
            raise InputError(
                f"batch_tokens {cells[0]!r} must be an integer >= 1", where=f"{where}:{i}"
            )
        if not (math.isfinite(ms) and ms > 0):
            raise InputError(
                f"step_ms {cells[1]!r} must be a positive number", where=f"{where}:{i}"
            )
        if int(b) in points:
            raise InputError(f"batch_tokens {int(b)} given twice", where=f"{where}:{i}")
        points[int(b)] = ms
    if header is None or not points:
        raise InputError("no data rows (expected header batch_tokens,step_ms)", where=where)
    tokens = sorted(points)
    return CostModel.from_sps_table(
        tokens,
        [1000.0 / points[b] for b in tokens],
        max_batch_tokens=tokens[-1],
        source=f"imported: cost CSV {Path(path).name} ({gaps})",
        **extra,
    )


COST_KINDS = ("sglang-sps", "cost-csv")


def import_cost(
    kind: str, path: str | Path, lookup: str = "sglang", prefill: tuple[Curve, str] | None = None
) -> tuple[CostModel, tuple[int, ...]]:
    """(cost model, the file's own batch-token probes) of a ``sglang-sps`` or ``cost-csv`` file;
    the probes are those of the file, not the step and clamp points the lookup adds."""
    if kind == "cost-csv":
        cost = csv_cost(path, prefill)
        return cost, tuple(int(x) for x in cost.verify.x)
    cost = sglang_cost(path, lookup, prefill)
    from profiles.documents import parse_json

    doc = parse_json(read_text(path), str(path))
    return cost, tuple(doc["m_probes" if "bias_seconds" in doc else "sample_batch_tokens"])


# -- incomplete profiles: the warning, and the prefill term from a second source ----------------
_EFFECT = {"prefill": "prompts cost nothing (TTFT is queueing alone)",
           "draft": "drafting costs nothing apart from what the step table includes",
           "context": "long contexts cost what the table's own context did"}  # fmt: skip
PREFILL_HEADERS = {"prefill_ms": 1e-3, "ttft_ms": 1e-3, "ttft_s": 1.0}  # column -> seconds
_PROBES = 64  # most probes a prefill curve is binned to


def missing_terms(cost: Any) -> tuple[str, ...]:
    """The cost terms (of :data:`TERMS`) that are zero in ``cost``."""
    return tuple(t for t in TERMS if not any(getattr(cost, t).y))


def _gaps(missing: tuple[str, ...]) -> str:
    if not missing:
        return "prefill, draft and context terms present"
    names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} or {missing[-1]}"
    if missing == TERMS:
        return INCOMPLETE
    effects = "; ".join(_EFFECT[t] for t in missing)
    return f"no {names} term{'s' if len(missing) > 1 else ''}: {effects}"


def _completion(prefill: tuple[Curve, str] | None) -> tuple[dict[str, Any], str]:
    """(CostModel keyword arguments, source-label text) for an import with ``prefill``."""
    if prefill is None:
        return {}, INCOMPLETE
    return {"prefill": prefill[0]}, f"prefill from {prefill[1]}; {_gaps(TERMS[1:])}"


def cost_warning(cost: Any, name: str) -> str | None:
    """The one warning line (without the ``spectune: warning:`` prefix) for a cost model
    labelled "imported" that lacks prefill, draft or context terms; None otherwise."""
    missing = missing_terms(cost)
    if not missing or not str(cost.source).startswith("imported"):
        return None
    fix = (" (complete the prefill term: spectune import ... --prefill-from PROFILE|CSV)"
           if "prefill" in missing else "")  # fmt: skip
    return f"{name}: imported cost profile: {_gaps(missing)}{fix}"


def prefill_from(spec: str) -> tuple[Curve, str]:
    """(prefill curve, label) from a second source: a ``.csv`` of prefill times or low-load TTFTs
    (module docstring), or any cost spec ``load_cost`` takes, whose prefill curve is used."""
    if spec.lower().endswith(".csv"):
        return _prefill_csv(spec), f"{Path(spec).name}"
    from profiles.builtin import load_cost

    cost = load_cost(spec)
    if "prefill" in missing_terms(cost):
        raise InputError("this cost profile has no prefill term to take", where=spec)
    return cost.prefill, f"cost profile {spec}"


def _prefill_csv(path: str) -> Curve:
    """A prefill curve from a CSV with ``prompt_tokens`` and one of :data:`PREFILL_HEADERS`:
    the median time per prompt length, binned into at most ``_PROBES`` quantile groups."""
    rows = csv.reader(io.StringIO(read_text(path)))
    header, column, scale, points = None, -1, 1.0, []
    for i, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not "".join(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            header = cells
            column = next((header.index(h) for h in PREFILL_HEADERS if h in header), -1)
            if "prompt_tokens" not in header or column < 0:
                need = ", ".join(PREFILL_HEADERS)
                raise InputError(f"header needs prompt_tokens and one of {need}, got "
                                 f"{','.join(cells)[:80]!r}", where=f"{path}:{i}")  # fmt: skip
            scale = PREFILL_HEADERS[header[column]]
            continue
        if len(cells) != len(header):
            raise InputError(
                f"expected {len(header)} columns, got {len(cells)}", where=f"{path}:{i}"
            )
        try:
            p, t = float(cells[header.index("prompt_tokens")]), float(cells[column]) * scale
        except ValueError:
            raise InputError(
                f"not a number in {','.join(cells)[:80]!r}", where=f"{path}:{i}"
            ) from None
        if not (math.isfinite(p) and p >= 1 and p.is_integer() and p < 1 << 31):
            raise InputError("prompt_tokens must be an integer >= 1", where=f"{path}:{i}")
        if not (math.isfinite(t) and 0 < t < 1e6):
            raise InputError(f"{header[column]} must be a positive number", where=f"{path}:{i}")
        points.append((p, t))
    if len({p for p, _ in points}) < 2:
        raise InputError("needs rows at two or more prompt lengths (a prefill time grows with the "
                         "prompt)", where=path)  # fmt: skip
    x, y = np.asarray(points).T
    lengths = np.unique(x)
    medians = np.array([np.median(y[x == v]) for v in lengths])
    if lengths.size > _PROBES:
        groups = np.array_split(np.arange(lengths.size), _PROBES)
        lengths = np.array([np.median(lengths[g]) for g in groups])
        medians = np.array([np.median(medians[g]) for g in groups])
    return Curve(tuple(lengths.tolist()), tuple(medians.tolist()))


def prefill_source(spec: str) -> dict[str, Any]:
    """Metadata of a ``--prefill-from`` source: its spec, and the file's hash when it is one."""
    from profiles.builtin import packaged

    path = Path(packaged(spec).partition("?")[0])
    return provenance("prefill", path, spec=spec) if path.is_file() else {"spec": spec}


def provenance(kind: str, path: str | Path, **extra: Any) -> dict[str, Any]:
    """Metadata written beside an imported profile: what, from where, file hash, version."""
    import hashlib

    from profiles.version import __version__

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {
        "imported_from": str(path),
        "kind": kind,
        "sha256": digest,
        "spectune_version": __version__,
        **extra,
    }


def cost_document(kind: str, path: str | Path, lookup: str = "sglang",
                  prefill_spec: str | None = None, *, command: str = "",
                  name: str = "") -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """``spectune import sglang-sps|cost-csv``: the cost profile (prefill completed from
    ``prefill_spec``, provenance in its metadata) and a summary with :func:`cost_warning` for
    the profile called ``name``."""
    from profiles.store import cost_to_dict

    prefill = prefill_from(prefill_spec) if prefill_spec is not None else None
    cost, probes = import_cost(kind, path, lookup, prefill)
    meta = provenance(kind, path, command=command)
    if prefill_spec is not None:
        meta["prefill_from"] = prefill_source(prefill_spec)
        meta["command"] = f"{command} --prefill-from {prefill_spec}"
    summary = {
        "kind": kind,
        "source": cost.source,
        "form": cost.kind,
        "probes": len(probes),  # the file's, not the lookup's added step points
        "batch_tokens": [probes[0], probes[-1]],
        "step_ms": [1e3 * cost.verify_time(1, b) for b in (probes[0], probes[-1])],
        "cost_warning": cost_warning(cost, name),
    }
    return cost_to_dict(cost, meta), summary
