"""Trace streaming memory: peak RSS and rows/s of ``open_workload`` over a large Azure trace.

    .venv/bin/python bench/trace_memory.py               # 10M rows (about 370 MB of CSV)
    .venv/bin/python bench/trace_memory.py --rows 1000000

Writes an Azure-format CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``, 7-digit wall-clock
timestamps, Poisson arrivals at 50 req/s so the trace crosses midnight) to a temporary directory,
streaming it out in chunks. Then, each in a fresh subprocess so ``ru_maxrss`` is its own:

- ``baseline``: a plain ``csv.reader`` loop over the file (no parsing, no checks);
- ``reader``: ``simulator.traces.read_trace``, parsing and checking every row (no ``Request``);
- ``workload``: ``sum(1 for _ in open_workload(WorkloadSpec(path)))``, i.e. parse, check and
  build every ``Request``.

Reports peak RSS (MB), rows/s of wall time and rows per CPU-second (steadier on a shared
machine) of each and their ratio, measured in one run; the target is a peak RSS of at most
500 MB for the workload pass, whatever the trace length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

RSS_TARGET_MB = 500.0
CHUNK = 100_000  # rows generated and written per step


def write_azure_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Stream ``rows`` Azure-format rows to ``path`` without holding them."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 5, 10, 23, 0, 0)
    t = 0.0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            times = t + np.cumsum(rng.exponential(1 / 50.0, n))
            t = float(times[-1])
            prompts = rng.integers(1, 8000, n).tolist()
            outputs = rng.integers(1, 1000, n).tolist()
            lines = []
            for s, p, o in zip(times.tolist(), prompts, outputs, strict=True):
                day = start + timedelta(seconds=int(s))
                frac = f"{s % 1.0:.7f}"[1:] if s % 1.0 < 0.99999995 else ".9999999"
                lines.append(f"{day:%Y-%m-%d %H:%M:%S}{frac},{p},{o}\n")
            f.write("".join(lines))


def child(mode: str, path: str) -> None:
    """Stream the file once (in this fresh process) and print a JSON line of results."""
    import csv
    import resource

    from simulator.traces import WorkloadStats, inspect_trace, read_trace
    from simulator.workload import WorkloadSpec, open_workload

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "baseline":
        with open(path, newline="") as f:
            n = sum(1 for _ in csv.reader(f)) - 1
    elif mode == "reader":
        n = sum(1 for _ in read_trace(inspect_trace(path), WorkloadStats()))
    else:
        n = sum(1 for _ in open_workload(WorkloadSpec(path)))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
    print(json.dumps({"mode": mode, "rows": n, "seconds": dt, "rows_per_s": n / dt,
                      "rows_per_cpu_s": n / cpu, "rss_before_mb": before,
                      "peak_rss_mb": peak}))  # fmt: skip


def measure(mode: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="trace rows (default 10M)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "azure_big.csv"
        t0 = time.perf_counter()
        write_azure_csv(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"wrote {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        base, reader, work = (measure(m, path) for m in ("baseline", "reader", "workload"))
    assert work["rows"] == reader["rows"] == base["rows"] == args.rows, (work, reader, base)
    print("| pass | rows/s (wall) | rows per CPU-s | peak RSS (MB) | RSS after imports (MB) |")
    print("|---|---|---|---|---|")
    for r in (base, reader, work):
        print(f"| {r['mode']} | {r['rows_per_s']:,.0f} | {r['rows_per_cpu_s']:,.0f} "
              f"| {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} |")  # fmt: skip
    ratios = ", ".join(
        f"{r['mode']} {r['rows_per_cpu_s'] / base['rows_per_cpu_s']:.2f}" for r in (reader, work)
    )
    ok = work["peak_rss_mb"] <= RSS_TARGET_MB
    print(f"speed relative to csv.reader (CPU time): {ratios}; "
          f"peak RSS target {RSS_TARGET_MB:.0f} MB: {'met' if ok else 'MISSED'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
