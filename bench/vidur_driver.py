"""Time Vidur's simulation loop on a trace (run by ``bench/sim_speed.py --vidur SRC``).

Runs in Vidur's own environment (its Python, its dependencies; not spectune's venv), with its
source checkout ``SRC`` (github.com/microsoft/vidur) on ``sys.path`` and as the working
directory (its profiling CSVs are read relative to it). Vidur's profiles of
``meta-llama/Meta-Llama-3-8B`` on ``a100`` ship ``mlp.csv`` measured, but this checkout lacks the
(large) ``attention.csv``, so a *synthetic* attention profile is written (analytic: decode time
linear in batch × KV tokens, prefill quadratic in the chunk; labelled synthetic in the output).
The execution-time predictor is Vidur's linear-regression one (its random-forest grid search
takes hours on two shared cores); the predictor only fills Vidur's lookup tables before the
simulation starts, so which one is trained does not change the loop that is timed.

Prints one JSON line: wall seconds of ``Simulator.run()`` alone (construction, training and
output writing excluded) and the requests simulated.

    python bench/vidur_driver.py SRC TRACE_CSV BATCH_CAP CHUNK  # TRACE: arrived_at, tokens
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import sys
import tempfile
import time

MODEL, DEVICE = "meta-llama/Meta-Llama-3-8B", "a100"


def synthetic_attention(path: str) -> None:
    """A synthetic attention profile for Llama-3-8B (TP 1, block 16): milliseconds."""
    head = ["n_embd", "n_q_head", "n_kv_head", "block_size", "num_tensor_parallel_workers",
            "batch_size", "prefill_chunk_size", "kv_cache_size", "time_stats.attn_prefill.median",
            "time_stats.attn_decode.median", "time_stats.attn_kv_cache_save.median"]  # fmt: skip
    rows = []
    for kv in (0, 64, 256, 1024, 2048, 4096, 8192, 16384):
        for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            decode = 0.012 + 2.4e-7 * batch * max(kv, 1)
            rows.append([4096, 32, 8, 16, 1, batch, 0, kv, 0.0, decode, 0.002 + 1e-5 * batch])
        for chunk in (16, 64, 128, 256, 512, 1024, 2048, 4096):
            prefill = 0.015 + 1.1e-8 * chunk * chunk + 2.0e-8 * chunk * kv
            rows.append([4096, 32, 8, 16, 1, 1, chunk, kv, prefill, 0.0, 0.002 + 1e-5 * chunk])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)


def main() -> None:
    src, trace, cap, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.chdir(src)
    sys.path.insert(0, src)
    os.environ.setdefault("WANDB_MODE", "disabled")
    tmp = tempfile.mkdtemp(prefix="vidur-")  # Vidur's output directory (nothing is written)
    os.makedirs(os.path.join(src, "spectune-synthetic"), exist_ok=True)
    attention = os.path.join(src, "spectune-synthetic", "attention.csv")  # a stable path: Vidur
    synthetic_attention(attention)  # caches its trained predictors (./cache) keyed on inputs
    lr = "--linear_regression_execution_time_predictor_config_"
    sys.argv = [
        "vidur", "--replica_config_device", DEVICE, "--replica_config_model_name", MODEL,
        "--cluster_config_num_replicas", "1", "--replica_config_tensor_parallel_size", "1",
        "--replica_config_num_pipeline_stages", "1",
        "--request_generator_config_type", "trace_replay",
        "--trace_request_generator_config_trace_file", trace,
        "--trace_request_generator_config_max_tokens", "16384",
        "--replica_scheduler_config_type", "sarathi",
        "--sarathi_scheduler_config_batch_size_cap", str(cap),
        "--sarathi_scheduler_config_chunk_size", str(chunk),
        "--execution_time_predictor_config_type", "linear_regression",
        lr + "attention_input_file", attention,
        lr + "prediction_max_prefill_chunk_size", str(chunk),
        lr + "prediction_max_batch_size", str(cap),
        lr + "prediction_max_tokens_per_request", "16384",
        lr + "k_fold_cv_splits", "3",
        "--metrics_config_output_dir", tmp,
        "--no-metrics_config_store_plots", "--no-metrics_config_write_metrics",
    ]  # fmt: skip
    from vidur.config import SimulationConfig
    from vidur.simulator import Simulator
    from vidur.utils.random import set_seeds

    config = SimulationConfig.create_from_cli_args()
    set_seeds(config.seed)
    sim = Simulator(config)
    atexit.unregister(sim._write_output)  # plots and tables: not the simulation
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    with open(trace) as f:
        requests = sum(1 for _ in f) - 1
    print(json.dumps({"wall_s": wall, "requests": requests, "attention_profile": "synthetic",
                      "mlp_profile": f"Vidur's measured {DEVICE} profile"}))  # fmt: skip


if __name__ == "__main__":
    main()
