"""Compare two verification policies on a small synthetic workload through the Python API.

The same seed gives both policies the same requests and the same acceptance draws, so the
difference is the policy's alone. Cost model: analytic (not measured); acceptance: read from
the DSpark paper (see `spectune replay --help`).
"""

from policies import make_policy
from profiles.builtin import load_acceptance, load_cost
from simulator.run import simulate
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec, open_workload

SEED = 42
NUM_REQUESTS = 300  # synthetic requests
REQUEST_RATE = 10.0  # requests per second
MAX_CONCURRENCY = 32  # running requests at most

cost = load_cost("builtin:h100-8b")
acceptance = load_acceptance("paper:qwen3-8b-dspark")
workload = open_workload(
    WorkloadSpec(
        "builtin:azure-conv-like", num_requests=NUM_REQUESTS, request_rate=REQUEST_RATE, seed=SEED
    )  # fmt: skip
)
config = ServerConfig(max_concurrency=MAX_CONCURRENCY)

for spec in ("fixed:k=1", "dspark"):
    s = simulate(workload, make_policy(spec), cost, acceptance, config, seed=SEED).summary
    print(
        f"{spec:10s} {s['requests_completed']} requests, "
        f"{s['throughput_tok_s']:.0f} tok/s, "
        f"{s['tps_per_user_p50']:.0f} tok/s/user (p50), "
        f"{s['mean_accepted_len']:.2f} tokens/step, "
        f"verify {s['mean_verify_len']:.2f} drafts/request"
    )
