"""Fit the builtin workloads to the public Azure LLM inference traces 2023 (and check the fit).

    .venv/bin/python bench/fit_builtin_workloads.py            # print fit, comparison, constants
    .venv/bin/python bench/fit_builtin_workloads.py --check    # exit 1 if synthetic.py differs

Reads ../shared/traces/azure_llm_2023_{conv,code}.csv through ``open_workload`` and fits:

- mean rate = 1 / mean inter-arrival time;
- burstiness = gamma shape by maximum likelihood on inter-arrival times (scipy.stats.gamma,
  loc fixed at 0); the moment match 1 / CV^2 is printed beside it for comparison;
- prompt and output lengths two ways: a lognormal (scipy.stats.lognorm, loc 0) clamped to the
  trace's [min, max], and an empirical quantile table at ``QUANTILE_LEVELS`` (inverted-CDF
  quantiles, log-linear interpolation when sampled). Both are sampled (200,000 draws, seed 0)
  and compared with the trace at p50/p90/p99 and the mean;
- for the record, how bursty counts per 10 s are (variance / mean) in the trace and in the
  builtin workload, which a gamma renewal process cannot match when the rate drifts.

The constants printed at the end are what ``simulator/synthetic.py`` embeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.stats as st

from simulator.synthetic import FITS, QUANTILE_LEVELS, LogNormal, QuantileTable
from simulator.workload import WorkloadSpec, open_workload

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
NAMES = {"azure-conv-like": "azure_llm_2023_conv.csv", "azure-code-like": "azure_llm_2023_code.csv"}
DRAWS, SEED = 200_000, 0  # samples per model for the comparison


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times, prompt and output lengths of a trace."""
    reqs = list(open_workload(WorkloadSpec(str(path))))
    cols = zip(*((r.arrival_s, r.prompt_tokens, r.output_tokens) for r in reqs), strict=True)
    t, p, o = (np.asarray(c) for c in cols)
    return t, p, o


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (how the constants are stored)."""
    return float(f"{x:.{digits - 1}e}")


def fit(path: Path) -> dict:
    """The constants for one trace, in the form ``simulator.synthetic.FITS`` holds them."""
    t, p, o = load(path)
    gaps = np.diff(t)
    shape, _, _ = st.gamma.fit(gaps[gaps > 0], floc=0)
    out = {"rate": sig(1.0 / gaps.mean()), "burstiness": sig(shape)}
    for name, x in (("prompt", p), ("output", o)):
        out[name] = tuple(int(v) for v in np.quantile(x, QUANTILE_LEVELS, method="inverted_cdf"))
    return out


def dispersion(t: np.ndarray, window_s: float = 10.0) -> float:
    """Index of dispersion of arrival counts per window (1 for Poisson; > 1 = bursty)."""
    counts = np.bincount((t // window_s).astype(int))
    return float(counts.var() / counts.mean())


def report(name: str, path: Path) -> None:
    """Print the arrival statistics and the lognormal vs quantile-table comparison."""
    t, p, o = load(path)
    gaps = np.diff(t)
    cv = gaps.std() / gaps.mean()
    shape = st.gamma.fit(gaps[gaps > 0], floc=0)[0]
    print(f"## {name} ({path.name}): {len(t)} requests over {t[-1]:.0f} s")
    print(f"rate {1 / gaps.mean():.4g} req/s, inter-arrival CV {cv:.3g} (1/CV^2 = {1 / cv**2:.3g})")
    print(f"gamma MLE shape {shape:.4g}; zero gaps excluded: {int((gaps == 0).sum())}")
    q = [0.5, 0.9, 0.99]
    for label, k in (("MLE", shape), ("1/CV^2", 1 / cv**2)):
        sim = np.random.default_rng(SEED).gamma(k, gaps.mean() / k, DRAWS)
        print(f"  gaps p50/p90/p99 trace {np.quantile(gaps, q).round(4)}", end="")
        print(f" vs gamma {label} {np.quantile(sim, q).round(4)}")
    builtin = open_workload(WorkloadSpec(f"builtin:{name}", num_requests=len(t)))
    sim_t = np.array([r.arrival_s for r in builtin])
    trace_d, sim_d = dispersion(t), dispersion(sim_t)
    print(f"  counts per 10 s, variance/mean: trace {trace_d:.3g}, builtin {sim_d:.3g}")
    print("| lengths | model | p50 | p90 | p99 | mean | worst p50/p90/p99 error |")
    print("|---|---|---|---|---|---|---|")
    for col, x in (("prompt", p), ("output", o)):
        s, _, scale = st.lognorm.fit(x, floc=0)
        models = {
            "trace": None,
            f"lognormal mu={np.log(scale):.3f} sigma={s:.3f}": LogNormal(
                float(np.log(scale)), float(s), int(x.min()), int(x.max())
            ),
            "quantile table": QuantileTable(
                QUANTILE_LEVELS, tuple(np.quantile(x, QUANTILE_LEVELS, method="inverted_cdf"))
            ),
        }
        truth = np.quantile(x, q)
        for label, model in models.items():
            y = x if model is None else model.sample(np.random.default_rng(SEED), DRAWS)
            qs = np.quantile(y, q)
            err = "" if model is None else f"{np.max(np.abs(qs / truth - 1)):.1%}"
            row = " | ".join(f"{v:.0f}" for v in qs)
            print(f"| {col} | {label} | {row} | {y.mean():.0f} | {err} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with synthetic.py only")
    args = parser.parse_args()
    if not TRACES.is_dir():
        print(f"traces not found at {TRACES}", file=sys.stderr)
        return 2
    fits = {name: fit(TRACES / file) for name, file in NAMES.items()}
    if args.check:
        bad = [name for name in NAMES if fits[name] != FITS[name]]
        for name in bad:
            print(f"{name}: synthetic.py has {FITS[name]}, the traces give {fits[name]}")
        return 1 if bad else 0
    for name, file in NAMES.items():
        report(name, TRACES / file)
    print("# constants for simulator/synthetic.py")
    print("FITS = {")
    for name, f in fits.items():
        print(f'    "{name}": {{')
        for key, value in f.items():
            print(f'        "{key}": {value!r},')
        print("    },")
    print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
