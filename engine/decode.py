"""Decoding loops over the step API: speculative with a policy, or plain target decoding.

:func:`generate` runs a static batch of prompts to ``max_new_tokens`` each (requests leave the
batch when done): per step the drafter proposes γ tokens, the policy turns the confidences into
verify lengths, the engine verifies them in one target forward. It records per-step telemetry
(verify lengths, accepted counts, draft/verify seconds) for evaluation and benchmarks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.engine import Engine
from policies.history import History, lag_of
from profiles.errors import InputError


@dataclass
class Generation:
    """What one decoding run did, per step and per request."""

    outputs: list[list[int]]  # tokens of the decode steps per prompt (max_new_tokens of them)
    first: list[int] = field(default_factory=list)  # per prompt: the token sampled at prefill
    steps: int = 0  # decode steps (batched forwards after prefill)
    accepted: list[int] = field(default_factory=list)  # per (step, request): accepted drafts
    verified: list[int] = field(default_factory=list)  # per (step, request): verify length ℓ
    full_accepted: list[int] = field(default_factory=list)  # per (step, request): A (if recorded)
    conf: list[list[float]] = field(default_factory=list)  # per (step, request): confidences
    draft_s: float = 0.0  # seconds in draft()
    verify_s: float = 0.0  # seconds in verify()
    policy_s: float = 0.0  # seconds in the policy
    prefill_s: float = 0.0
    decode_s: float = 0.0  # wall seconds of the step loop (excludes prefill)
    step_requests: list[int] = field(default_factory=list)  # per step: requests in the batch
    step_tokens: list[int] = field(default_factory=list)  # per step: tokens kept
    step_s: list[float] = field(default_factory=list)  # per step: wall seconds

    @property
    def new_tokens(self) -> int:
        return sum(len(o) for o in self.outputs)

    @property
    def mean_accepted_len(self) -> float:
        """Tokens gained per request-step, bonus included (τ)."""
        return float(np.mean(self.accepted) + 1) if self.accepted else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.decode_s if self.decode_s > 0 else 0.0


def check_policy(policy) -> None:
    if policy is not None and "realized" in policy.reads:
        raise InputError(
            f"policy {policy.name!r} reads realized outcomes (an oracle): the engine cannot run it"
        )


def generate(
    engine: Engine,
    prompts: list[list[int]],
    max_new_tokens: int,
    *,
    policy=None,
    cost=None,
    seed: int = 0,
    record_full: bool = False,
    temperatures: tuple[float, ...] | None = None,
) -> Generation:
    """Decode ``prompts`` together; ``policy=None`` or no drafter is plain target decoding.

    One seed makes the run reproducible: a generator for the engine's sampling, another (numpy)
    for policies that draw random numbers. ``record_full`` verifies all γ drafts each step to
    record A while keeping the policy's outcome (costs a γ-token verify).
    """
    check_policy(policy)
    gen = torch.Generator(device=engine.device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    temps = None  # per-position STS temperatures T_k, [γ], or None for raw confidences
    if temperatures and engine.drafter is not None:
        temps = torch.tensor(temperatures[: engine.gamma], device=engine.device)
    speculative = engine.drafter is not None and policy is not None and policy.name != "none"
    trace = Generation(outputs=[[] for _ in prompts])
    t0 = time.perf_counter()
    active = {engine.add(p, gen): i for i, p in enumerate(prompts)}
    trace.first = [engine.slots[s].generated[0] for s in active]  # dicts keep prompt order
    trace.prefill_s = time.perf_counter() - t0
    history = History(engine.cache.slots, engine.gamma, lag_of(policy) if policy else 0)
    t0 = time.perf_counter()
    while active:
        ts = time.perf_counter()
        slots = list(active)
        kept = 0
        if speculative:
            d = engine.draft(slots, gen)
            trace.draft_s += engine.last["draft"]
            tp = time.perf_counter()
            logits = d.conf_logits if temps is None else d.conf_logits / temps  # STS
            conf = torch.sigmoid(logits).double().cpu().numpy()  # [R, γ]
            kw = policy_inputs(policy, np.asarray(slots), trace.steps, history, cost, rng)
            ell = policy(conf, **kw)
            trace.policy_s += time.perf_counter() - tp
            v = engine.verify(slots, d, ell.tolist(), gen, full=record_full)
        else:
            conf, ell = None, np.zeros(len(slots), dtype=np.int64)
            v = engine.verify(slots, None, None, gen)
        trace.verify_s += engine.last["verify"]
        if conf is not None:
            history.record(np.asarray(slots), trace.steps, conf)
            history.count(np.asarray(slots), np.asarray(v.accepted), ell)
        trace.steps += 1
        for i, s in enumerate(slots):
            out = trace.outputs[active[s]]
            new = v.tokens[i][: max_new_tokens - len(out)]
            out.extend(new)
            kept += len(new)
            trace.accepted.append(v.accepted[i])
            trace.verified.append(int(ell[i]))
            if v.full_accepted is not None:
                trace.full_accepted.append(v.full_accepted[i])
            if conf is not None:
                trace.conf.append(conf[i].tolist())
            if len(out) >= max_new_tokens or engine.room(s) < engine.gamma + 2:
                engine.remove(s)
                del active[s]
        trace.step_requests.append(len(slots))
        trace.step_tokens.append(kept)
        trace.step_s.append(time.perf_counter() - ts)
    trace.decode_s = time.perf_counter() - t0
    return trace


def complete(engine: Engine, prompt: list[int], max_new_tokens: int, *, policy=None, cost=None,
             seed: int = 0, temperatures: tuple[float, ...] | None = None) -> dict:  # fmt: skip
    """One prompt decoded (``spectune decode``): its text and ``max_new_tokens`` tokens, the
    speed, mean accepted length and decode steps, and the seconds in draft and verify."""
    trace = generate(engine, [prompt], max_new_tokens, policy=policy, cost=cost, seed=seed,
                     temperatures=temperatures)  # fmt: skip
    # The first new token comes from the prefill; the decode steps supply the rest.
    tokens = ([trace.first[0]] + trace.outputs[0])[:max_new_tokens]
    return {
        "text": bytes(tokens).decode("utf-8", errors="replace"),
        "tokens": tokens,
        "tokens_per_s": round(trace.tokens_per_s, 2),
        "mean_accepted_len": round(trace.mean_accepted_len, 4),
        "steps": trace.steps,
        "draft_s": round(trace.draft_s, 4),
        "verify_s": round(trace.verify_s, 4),
    }


def policy_inputs(policy, slots, step, history, cost, rng) -> dict:
    """Keyword inputs a policy reads: cost model, generator, and from ``history``
    (policies/history.py) lagged confidences and per-request totals at decode ``step``."""
    kw: dict = {"rng": rng, **history.inputs(policy, slots, step)}
    if "cost" in policy.reads:
        if cost is None:
            raise InputError(f"policy {policy.name!r} needs a cost model (--cost FILE)")
        kw["cost"] = cost
    return kw


def measure_cost(engine: Engine, requests: int = 1, repeats: int = 5):
    """A quick measured SPS table of this engine (verify seconds over batch tokens B)."""
    from profiles import CostModel

    gamma = max(engine.gamma, 1)
    prompt = list(b"def measure(x):\n    return x\n" * 4)
    gen = torch.Generator(device=engine.device).manual_seed(0)
    slots = [engine.add(prompt, gen) for _ in range(requests)]
    xs, ys = [], []
    for ell in range(gamma + 1):
        times = []
        for _ in range(repeats):
            d = engine.draft(slots, gen) if engine.drafter is not None else None
            engine.verify(slots, d, [ell] * requests, gen)
            times.append(engine.last["verify"])
        for s in slots:  # keep the context length fixed
            engine.slots[s].length = engine.cache.lengths[s] = len(prompt)
        xs.append(requests * (1 + ell))
        ys.append(1.0 / float(np.median(times)))
    for s in slots:
        engine.remove(s)
    return CostModel.from_sps_table(xs, ys, source=f"measured: spectune engine quick, R={requests}")
