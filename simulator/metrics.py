"""A plain recorder of per-request and per-step facts, and the summary every output shares.

The server calls ``finish`` once per completed request and ``step`` once per decode step;
``summary`` turns them into the metric names of DESIGN §5. Nothing here plots or writes files.

Definitions (per request): TTFT = first token − arrival; TPOT = (finish − first token) /
(output tokens − 1); tokens/s/user = 1 / TPOT; ITL = mean time between the request's decode
steps; E2E = finish − arrival; queueing delay = admission − arrival. Requests with one output
token have no TPOT, ITL or tokens/s/user. Aggregates: output throughput = output tokens /
duration, duration = last completion − first arrival (simulated seconds).
"""

from __future__ import annotations

import csv
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from simulator.request import Request

_FIELDS = ("id", "arrival", "admitted", "first_token", "finish", "output_tokens", "prompt_tokens",
           "decode_steps", "verified", "accepted")  # fmt: skip


class Recorder:
    """Columns of per-request results plus running per-step totals."""

    def __init__(self) -> None:
        self.cols = {f: array("d") for f in _FIELDS}
        self.domains: list[str] = []
        self.decode_steps = 0  # engine steps that ran a decode batch
        self.request_steps = 0  # Σ over decode steps of the batch size R
        self.tokens_gained = 0  # Σ min(A, ℓ) + 1 over request-steps (before end-of-request clamp)
        self.verified = 0  # Σ ℓ over request-steps
        self.batch_tokens = 0  # Σ B over decode steps
        self.busy_s = 0.0  # simulated seconds the engine spent in steps
        self.rejected_too_long = 0  # requests whose prompt+output can never fit the KV capacity
        self.max_running = 0

    def step(self, requests: int, batch_tokens: int, verified: int, gained: int) -> None:
        self.decode_steps += 1
        self.request_steps += requests
        self.batch_tokens += batch_tokens
        self.verified += verified
        self.tokens_gained += gained

    def finish(
        self, req: Request, admitted: float, first: float, done: float, stats: tuple[int, int, int]
    ) -> None:
        """One completed request: its times and (decode steps, drafts verified, accepted)."""
        row = (req.id, req.arrival_s, admitted, first, done, req.output_tokens, req.prompt_tokens)
        for key, value in zip(_FIELDS, row + stats, strict=True):
            self.cols[key].append(value)
        self.domains.append(req.domain)

    # -- results ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.frombuffer(v, dtype=np.float64) if len(v) else np.zeros(0)
                for k, v in self.cols.items()}  # fmt: skip

    def per_request(self) -> dict[str, np.ndarray]:
        a = self.arrays()
        decode_s = a["finish"] - a["first_token"]
        multi = a["output_tokens"] > 1
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = np.where(multi, decode_s / (a["output_tokens"] - 1), np.nan)
            itl = np.where(multi & (a["decode_steps"] > 0), decode_s / a["decode_steps"], np.nan)
            tps = np.where(multi & (decode_s > 0), (a["output_tokens"] - 1) / decode_s, np.nan)
        return {
            **a,
            "ttft_s": a["first_token"] - a["arrival"],
            "tpot_s": tpot,
            "itl_s": itl,
            "tps_per_user": tps,
            "e2e_s": a["finish"] - a["arrival"],
            "queue_s": a["admitted"] - a["arrival"],
        }

    def summary(self) -> dict[str, Any]:
        r = self.per_request()
        n = r["id"].size
        out_tokens = int(r["output_tokens"].sum())
        duration = float(r["finish"].max() - r["arrival"].min()) if n else 0.0
        s: dict[str, Any] = {
            "requests_completed": n,
            "requests_rejected_too_long": self.rejected_too_long,
            "output_tokens": out_tokens,
            "duration_s": duration,
            "throughput_tok_s": out_tokens / duration if duration > 0 else 0.0,
            "request_throughput_req_s": n / duration if duration > 0 else 0.0,
        }
        for key in ("tps_per_user", "ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s"):
            s.update(percentiles(key, r[key]))
        steps = max(self.request_steps, 1)
        s.update(
            {
                "mean_accepted_len": self.tokens_gained / steps,
                "mean_verify_len": self.verified / steps,
                "wasted_verify_tokens": int(
                    self.verified - (self.tokens_gained - self.request_steps)
                ),
                "decode_steps": self.decode_steps,
                "mean_batch_size": self.request_steps / max(self.decode_steps, 1),
                "mean_batch_tokens": self.batch_tokens / max(self.decode_steps, 1),
                "max_concurrency_seen": self.max_running,
                "engine_busy_fraction": self.busy_s / duration if duration > 0 else 0.0,
            }
        )
        return s

    def write_csv(self, path: Path) -> None:
        """One row per completed request, with the derived latencies."""
        r = self.per_request()
        keys = list(_FIELDS) + ["ttft_s", "tpot_s", "tps_per_user", "e2e_s", "queue_s"]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(keys[:1] + ["domain"] + keys[1:])
            for i in range(r["id"].size):
                row = [_fmt(r[k][i]) for k in keys]
                w.writerow(row[:1] + [self.domains[i]] + row[1:])


def percentiles(key: str, values: np.ndarray) -> dict[str, float | None]:
    """Mean, p50, p90 and p99 of the finite ``values``, named ``{key}_mean`` ... (``_s`` last)."""
    name = key[:-2] if key.endswith("_s") else key
    unit = "_s" if key.endswith("_s") else ""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {f"{name}_{p}{unit}": None for p in ("mean", "p50", "p90", "p99")}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {
        f"{name}_mean{unit}": float(v.mean()),
        f"{name}_p50{unit}": float(p50),
        f"{name}_p90{unit}": float(p90),
        f"{name}_p99{unit}": float(p99),
    }


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"
