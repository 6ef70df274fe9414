"""Acceptance records: decoding rounds of the real engine, for the simulator and calibration.

For each domain, held-out prompts (``engine/data.py``) are decoded with continuous batching: up
to ``slots`` requests run together and a finished request's slot is refilled from the queue
before the next step. Each step the drafter proposes γ tokens, verify lengths ℓ are drawn
uniformly from 0..γ (``policy=None``, what ``spectune record`` does without ``--policy``) or
chosen by a policy from the confidences, and ``Engine.verify(..., full=True)`` runs the target
over all γ drafts so it also reports A (accepted count with all γ verified) while the outcome
follows ℓ. One row per request-step: domain, request id, step, raw confidence logits, A, ℓ —
the ``.npz`` format of ``profiles/records.py``. Uniform ℓ makes rounds after a bonus token and
after a residual one occur all along each request, which the replay by position needs
(``profiles/replay.py``); rounds recorded under one policy hold few of one kind.

The records' meta also keeps what the engine itself measured per domain (``engine_runs``): mean
accepted length (bonus included) and mean verify length per request-step, under the recording
policy and under each check policy, which decodes the same prompts again (its rounds are not
stored). ``tests/profiles/test_consistency.py`` holds the simulator replaying the records to
these figures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.decode import check_policy, policy_inputs
from engine.engine import Engine
from policies.history import History, lag_of

UNIFORM = "uniform"  # the recording policy's name in the meta: ℓ ~ U{0..γ} each round


@dataclass(frozen=True)
class RecordConfig:
    """What to decode. Every figure of a records file's meta comes from these and the seed."""

    domains: tuple[str, ...] = ("code", "chat", "math")
    requests: int = 48  # prompts per domain
    prompt_len: int = 128  # prompt bytes (held-out split, starting at a line start)
    max_new_tokens: int = 128  # tokens per request, the first one sampled at prefill
    seed: int = 0  # prompts, the engine's sampling and random policies

    def __post_init__(self) -> None:
        if min(self.requests, self.prompt_len, self.max_new_tokens) < 1:
            raise ValueError("requests, prompt_len and max_new_tokens must be positive")


@dataclass
class Run:
    """One policy decoding one domain's prompts: per request-step columns and step counts."""

    request: list[int] = field(default_factory=list)  # prompt index
    step: list[int] = field(default_factory=list)  # decode step within the request
    logits: list[np.ndarray] = field(default_factory=list)  # [γ] raw confidence logits
    full_accepted: list[int] = field(default_factory=list)  # A
    verified: list[int] = field(default_factory=list)  # ℓ
    accepted: list[int] = field(default_factory=list)  # min(A, ℓ)
    batch: list[int] = field(default_factory=list)  # R of each engine step

    def summary(self) -> dict:
        """The engine's own figures, named as in the simulator's summary."""
        n = max(len(self.verified), 1)
        return {
            "mean_accepted_len": 1.0 + sum(self.accepted) / n,
            "mean_verify_len": sum(self.verified) / n,
            "mean_full_accepted_len": 1.0 + sum(self.full_accepted) / n,
            "request_steps": len(self.verified),
            "decode_steps": len(self.batch),
            "mean_batch_size": sum(self.batch) / max(len(self.batch), 1),
        }


def prompts_for(domain: str, cfg: RecordConfig) -> list[list[int]]:
    """Held-out prompts of ``domain`` (deterministic in the seed)."""
    from engine.data import Corpus

    texts = Corpus.load(domain, "heldout").prompts(cfg.requests, cfg.prompt_len, cfg.seed)
    return [list(t) for t in texts]


@torch.inference_mode()
def decode(
    engine: Engine,
    prompts: list[list[int]],
    max_new_tokens: int,
    policy,
    *,
    cost=None,
    seed: int = 0,
    done: Callable[[int], None] | None = None,
) -> Run:
    """Continuous batching over ``prompts`` with all γ drafts verified (see module docstring);
    ``policy=None``: verify lengths drawn uniformly from 0..γ with the seeded generator."""
    if policy is not None:
        check_policy(policy)
    gen = torch.Generator(device=engine.device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    gamma, run = engine.gamma, Run()
    queue = deque(range(len(prompts)))
    active: dict[int, tuple[int, int]] = {}  # slot -> (prompt index, steps so far)
    history, step = History(engine.cache.slots, gamma, lag_of(policy) if policy else 0), 0
    while queue or active:
        take = [queue.popleft() for _ in range(min(len(engine.free_slots()), len(queue)))]
        if take:
            for s, i in zip(engine.add_many([prompts[i] for i in take], gen), take, strict=True):
                active[s] = (i, 0)
                history.clear(s)
        slots = list(active)
        d = engine.draft(slots, gen)
        logits = d.conf_logits.float().cpu().numpy()  # [R, γ]
        conf = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        if policy is None:
            ell = rng.integers(0, gamma + 1, len(slots))  # [R]
        else:
            kw = policy_inputs(policy, np.asarray(slots), step, history, cost, rng)
            ell = np.asarray(policy(conf, **kw), dtype=np.int64)
        v = engine.verify(slots, d, ell.tolist(), gen, full=True)
        history.record(np.asarray(slots), step, conf)
        history.count(np.asarray(slots), np.asarray(v.accepted), ell)
        step += 1
        run.batch.append(len(slots))
        for i, s in enumerate(slots):
            idx, step = active[s]
            run.request.append(idx)
            run.step.append(step)
            run.logits.append(logits[i])
            run.full_accepted.append(v.full_accepted[i])
            run.verified.append(int(ell[i]))
            run.accepted.append(v.accepted[i])
            active[s] = (idx, step + 1)
            if len(engine.slots[s].generated) >= max_new_tokens or engine.room(s) < gamma + 2:
                engine.remove(s)
                del active[s]
                if done:
                    done(1)
    return run


def records_arrays(runs: dict[str, Run], first_id: int = 0) -> dict[str, np.ndarray]:
    """The records columns of per-domain runs; request ids unique across domains."""
    names = ("domain", "request", "step", "logits", "accepted", "verified")
    cols: dict[str, list] = {k: [] for k in names}
    offset = first_id
    for domain, run in runs.items():
        n = len(run.request)
        cols["domain"].append(np.full(n, domain))
        cols["request"].append(np.asarray(run.request, dtype=np.int64) + offset)
        cols["step"].append(np.asarray(run.step, dtype=np.int64))
        cols["logits"].append(np.stack(run.logits).astype(np.float32))
        cols["accepted"].append(np.asarray(run.full_accepted, dtype=np.int16))
        cols["verified"].append(np.asarray(run.verified, dtype=np.int16))
        offset += max(run.request) + 1 if run.request else 0
    return {k: np.concatenate(v) for k, v in cols.items()}


def record(engine: Engine, cfg: RecordConfig, policy, checks, *, target: str, drafter: str,
           device: torch.device, cost=None, cost_spec: str | None = None, command: str = "",
           on_total: Callable[[int], None] | None = None,
           done: Callable[[int], None] | None = None):  # fmt: skip
    """Records of ``cfg.domains`` decoded under ``policy`` (None: uniform ℓ, named ``UNIFORM``),
    their meta holding the engine's own means per domain under it and under each of ``checks``
    (decoded again, rounds not stored). ``target``/``drafter`` name the checkpoints, ``cost``
    (named ``cost_spec``) is what policies reading one see; ``on_total`` hears the number of
    requests to decode, ``done`` each finished one."""
    from engine.provenance import environment
    from profiles.records import Records

    prompts = {d: prompts_for(d, cfg) for d in cfg.domains}
    followed = [policy, *checks]
    specs = [UNIFORM if policy is None else policy.spec, *(p.spec for p in checks)]
    if on_total is not None:
        on_total(sum(map(len, prompts.values())) * len(followed))
    t0 = time.perf_counter()
    runs: dict[str, dict[str, Run]] = {spec: {} for spec in specs}
    for spec, pol in zip(specs, followed, strict=True):
        for d in cfg.domains:
            runs[spec][d] = decode(engine, prompts[d], cfg.max_new_tokens, pol, cost=cost,
                                   seed=cfg.seed, done=done)  # fmt: skip
    env = environment(device)
    meta = {
        **_meta(engine, cfg, specs[0], env, target=target, drafter=drafter, cost=cost,
                cost_spec=cost_spec, command=command),
        "engine_runs": {spec: {d: r.summary() for d, r in by.items()} for spec, by in runs.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
        **{k: env[k] for k in ("device", "threads", "torch", "date", "commit")},
    }  # fmt: skip
    return Records(**records_arrays(runs[specs[0]]), meta=meta)


def _meta(engine: Engine, cfg: RecordConfig, spec: str, env: dict, *, target: str, drafter: str,
          cost, cost_spec: str | None, command: str) -> dict:  # fmt: skip
    """The records' provenance: checkpoints, the decoding setup and the cost model."""
    from pathlib import Path

    from engine.provenance import checkpoint_digest
    from profiles.store import cost_to_dict
    from profiles.version import __version__

    return {
        "drafter": drafter,
        "target": target,
        "checkpoints_sha256": {
            "target": checkpoint_digest(target),
            "drafter": checkpoint_digest(drafter),
        },
        "gamma": engine.gamma,
        "temperature": 1.0,
        "seed": cfg.seed,
        "source": f"engine {Path(target).stem} + {Path(drafter).stem}, "
        f"held-out prompts, {spec}, {env['date'][:10]}, commit {env['commit'][:12]}",
        "spectune_version": __version__,
        "command": command,
        "policy": spec,
        "domains": list(cfg.domains),
        "requests_per_domain": cfg.requests,
        "prompt_len": cfg.prompt_len,
        "max_new_tokens": cfg.max_new_tokens,
        "slots": engine.cache.slots,
        "cost": cost.source if cost is not None else None,
        "cost_spec": cost_spec,
        # the cost model the policies saw, so the engine's figures stay reproducible when the
        # named profile is re-measured (profiles.store.cost_from_dict rebuilds it)
        "cost_profile": cost_to_dict(cost) if cost is not None else None,
    }
