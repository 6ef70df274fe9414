"""Cross-policy replay bias of acceptance records (issue #13, item 7).

    nice -n 10 python bench/records_bias.py --engine-json runs/records-bias-engine.json

For each committed records file (``profiles/data/records-{dspark,dflash,ar}.npz``) and each
policy (default ``fixed:k=1`` and ``fixed:k=3``):

- **engine**: the engine's own mean accepted length per request-step (bonus included) decoding the
  records' prompts (same domains, prompts, seed, slots, lengths as the records' meta) under that
  policy, with ``engine.record.decode``. Taken from the records' ``engine_runs`` when the
  recording ran that policy as a ``--check``; otherwise decoded here on CPU (about a minute per
  drafter and policy) and kept in ``--engine-json`` so a later run reuses it;
- **replay**: the simulator replaying the records under that policy, with 8x as many requests as
  were recorded per domain (all arriving at once, the records' prompt and output lengths and
  slots), seed 0: tokens gained per request-step.

Bias = replay / engine − 1, per domain and pooled over the domains (request-step weighted).
``se`` is the standard error of the engine's figure (bootstrap over its requests, 400 resamples,
seed 0), when the per-request figures are at hand (decoded here or cached): the noise floor of the
comparison, since the engine's own figure comes from a finite sample of requests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import make_policy  # noqa: E402
from profiles.builtin import DATA, load_cost  # noqa: E402
from profiles.records import RecordsAcceptance, read_records  # noqa: E402
from simulator.request import Request  # noqa: E402
from simulator.run import simulate  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402


def replayed(model: RecordsAcceptance, spec: str, domain: str, meta: dict, scale: int = 8) -> dict:
    """Simulated tokens gained per request-step replaying ``model`` under ``spec``."""
    n = scale * int(meta["requests_per_domain"])
    work = [
        Request(i, 0.0, int(meta["prompt_len"]), int(meta["max_new_tokens"]), domain)
        for i in range(n)
    ]
    cfg = ServerConfig(max_concurrency=int(meta["slots"]), gamma=model.gamma)
    cost = load_cost("builtin:cpu-tiny-additive")
    rec = simulate(work, make_policy(spec), cost, model, cfg, seed=0).recorder
    return {"accepted": rec.tokens_gained / rec.request_steps, "steps": rec.request_steps}


def engine_run(meta: dict, spec: str, domain: str) -> dict:
    """The engine decoding the records' prompts of ``domain`` under ``spec`` (CPU, 1 thread)."""
    import torch

    from engine.load import build_engine
    from engine.record import RecordConfig, decode, prompts_for

    torch.set_num_threads(1)
    engine, policy = build_engine(meta["target"], meta["drafter"], make_policy(spec),
                                  device=torch.device("cpu"), temperature=1.0,
                                  slots=int(meta["slots"]))  # fmt: skip
    cfg = RecordConfig((domain,), int(meta["requests_per_domain"]), int(meta["prompt_len"]),
                       int(meta["max_new_tokens"]), int(meta["seed"]))  # fmt: skip
    run = decode(engine, prompts_for(domain, cfg), cfg.max_new_tokens, policy, seed=cfg.seed)
    req = np.asarray(run.request)
    acc = 1 + np.asarray(run.accepted)
    ids = np.unique(req)
    return {
        **run.summary(),
        "per_request_gained": [int(acc[req == i].sum()) for i in ids],
        "per_request_steps": [int((req == i).sum()) for i in ids],
    }


def bootstrap_se(gained: list[int], steps: list[int], seed: int = 0, n: int = 400) -> float:
    """Standard error of sum(gained)/sum(steps) resampling requests."""
    g, s = np.asarray(gained, float), np.asarray(steps, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g.size, (n, g.size))
    return float(np.std(g[idx].sum(1) / s[idx].sum(1)))


SAME = ("drafter", "target", "checkpoints_sha256", "requests_per_domain", "prompt_len",
        "max_new_tokens", "slots", "seed")  # fmt: skip


def engine_figure(meta: dict, spec: str, domain: str, cache: dict, key: str, other=None) -> dict:
    """The engine's figure: cached, in the records' meta, in ``other`` records' meta when those
    decoded the same prompts with the same checkpoints (fields ``SAME``), or decoded now."""
    if key in cache:
        return cache[key]
    for m in (meta, other.meta if other is not None else None):
        if m is None or any(m.get(k) != meta.get(k) for k in SAME):
            continue
        runs = m.get("engine_runs", {})
        if spec in runs and domain in runs[spec]:
            return runs[spec][domain]
    print(f"  decoding {key} with the engine ...", file=sys.stderr, flush=True)
    cache[key] = engine_run(meta, spec, domain)
    return cache[key]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drafters", default="dspark,dflash,ar")
    p.add_argument("--policies", default="fixed:k=1,fixed:k=3")
    p.add_argument("--records-dir", default=str(DATA), help="where records-DRAFTER.npz are")
    p.add_argument("--engine-json", help="cache of engine figures (read, then updated)")
    p.add_argument("--engine-records", help="directory of records whose meta engine_runs hold "
                   "the engine's figures for the same prompts and checkpoints")  # fmt: skip
    p.add_argument("--out", help="write every figure as JSON")
    args = p.parse_args(argv)
    cache_path = Path(args.engine_json) if args.engine_json else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}
    rows, out = [], []
    for drafter in args.drafters.split(","):
        path = Path(args.records_dir) / f"records-{drafter}.npz"
        records = read_records(path)
        meta, model = records.meta, RecordsAcceptance(records)
        other = None
        if args.engine_records:
            other = read_records(Path(args.engine_records) / f"records-{drafter}.npz")
        for spec in args.policies.split(","):
            pooled = {"sim": 0.0, "eng": 0.0, "steps": 0, "var": 0.0}
            cells = []
            for d in records.domains:
                key = (f"{meta['drafter']}|{spec}|{d}|{meta['requests_per_domain']}|"
                       f"{meta['prompt_len']}|{meta['max_new_tokens']}|{meta['slots']}|"
                       f"{meta['seed']}")  # fmt: skip
                eng = engine_figure(meta, spec, d, cache, key, other)
                if cache_path:
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(json.dumps(cache))
                sim = replayed(model, spec, d, meta)
                want, steps = eng["mean_accepted_len"], eng["request_steps"]
                se = (bootstrap_se(eng["per_request_gained"], eng["per_request_steps"])
                      if "per_request_gained" in eng else float("nan"))  # fmt: skip
                bias = sim["accepted"] / want - 1
                cells.append(
                    f"{sim['accepted']:.3f}/{want:.3f} ({100 * bias:+.2f}%"
                    + (f" ±{100 * se / want:.2f})" if np.isfinite(se) else ")")
                )
                out.append({"drafter": drafter, "policy": spec, "domain": d,
                            "replay": sim["accepted"], "engine": want, "engine_se": se,
                            "bias": bias, "engine_steps": steps, "records": str(path),
                            "recording_policy": meta.get("policy")})  # fmt: skip
                pooled["sim"] += sim["accepted"] * steps
                pooled["eng"] += want * steps
                pooled["steps"] += steps
                pooled["var"] += (se * steps) ** 2
            b = pooled["sim"] / pooled["eng"] - 1
            se = np.sqrt(pooled["var"]) / pooled["eng"]
            tail = f" ±{100 * se:.2f}" if np.isfinite(se) else ""
            rows.append(f"| {drafter} | {spec} | {' | '.join(cells)} | {100 * b:+.2f}%{tail} |")
            out.append({"drafter": drafter, "policy": spec, "domain": "pooled", "bias": b,
                        "engine_se_rel": float(se)})  # fmt: skip
    print(f"| drafter | policy | {' | '.join(records.domains)} | pooled |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("cells: replay/engine accepted length (bias; ±1 se of the engine's figure when its "
          "per-request figures are at hand)")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
