"""The live backend: the simulator drives a real (tiny, random) engine step by step."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.engine import Engine  # noqa: E402
from engine.live import LiveBackend  # noqa: E402
from policies import make_policy  # noqa: E402
from profiles.builtin import load_acceptance, load_cost  # noqa: E402
from profiles.errors import InputError  # noqa: E402
from simulator.backend import StepShape  # noqa: E402
from simulator.request import Request  # noqa: E402
from simulator.run import simulate  # noqa: E402
from simulator.server import ServerConfig  # noqa: E402
from tests.engine.conftest import tiny_drafter, tiny_target  # noqa: E402

TEXT = b"def add(x, y):\n    return x + y\n\nclass A:\n    pass\n" * 40
CORPORA = {"code": types.SimpleNamespace(data=np.frombuffer(TEXT, dtype=np.uint8))}


def _engine(temperature: float, slots: int = 4) -> Engine:
    target = tiny_target(vocab=256)
    return Engine(target, tiny_drafter(target, "dspark"), slots=slots, temperature=temperature)


def _requests(n: int = 6) -> list[Request]:
    return [Request(i, 0.01 * i, 20 + 3 * i, 10 + 2 * i, "code") for i in range(n)]


def _run(policy: str, temperature: float, seed: int = 0, time: str = "measured"):
    cost = load_cost("builtin:h100-8b")
    backend = LiveBackend(_engine(temperature), CORPORA, seed=seed, time=time, cost=cost)
    config = ServerConfig(max_concurrency=4, gamma=backend.gamma)
    acc = load_acceptance("paper:qwen3-8b-dspark")
    res = simulate(_requests(), make_policy(policy), cost, acc, config, seed=seed, backend=backend)
    return res, backend


def test_live_replay_completes_with_real_tokens():
    res, backend = _run("fixed:k=2", temperature=1.0)
    s = res.summary
    assert s["requests_completed"] == 6
    assert s["output_tokens"] == sum(r.output_tokens for r in _requests())
    assert s["duration_s"] > 0 and "live engine" in s["backend"]
    for req in _requests():
        assert len(backend.texts[req.id]) == req.output_tokens


def test_live_greedy_text_equals_plain_greedy_decoding():
    """Greedy speculative decoding in the live simulator reproduces the target's own greedy
    output for each request's prompt (speculation and batching change nothing)."""
    res, backend = _run("fixed:k=3", temperature=0.0)
    plain = Engine(backend.engine.target, None, slots=1, temperature=0.0)
    for req in _requests():
        slot = plain.add(backend.prompt_for(req))  # prefill samples the first token
        while len(plain.slots[slot].generated) < req.output_tokens:
            plain.verify([slot], None)
        expected = plain.remove(slot)[: req.output_tokens]
        assert list(backend.texts[req.id]) == expected, req.id


def test_same_seed_same_live_text_with_cost_timing():
    """With time from the cost model the schedule, hence the batches and the engine's draws,
    repeat exactly. (With measured time the schedule follows wall-clock noise, so which
    requests share a batch, and so the sampled text, may differ between runs.)"""
    _, a = _run("fixed:k=2", temperature=1.0, seed=5, time="cost")
    _, b = _run("fixed:k=2", temperature=1.0, seed=5, time="cost")
    assert a.texts == b.texts


def test_cost_timing_mode_uses_the_cost_model():
    cost = load_cost("builtin:h100-8b")
    backend = LiveBackend(_engine(1.0), CORPORA, time="cost", cost=cost)
    assert backend.step_time(StepShape(2, 6, 100, 0)) == pytest.approx(cost.step_time(2, 6, 100, 0))


def test_request_beyond_context_is_an_input_error():
    backend = LiveBackend(_engine(1.0), CORPORA)
    with pytest.raises(InputError, match="exceed the engine context"):
        backend.prefill([(0, Request(0, 0.0, 50, 500, "code"))])


def test_unknown_domain_is_an_input_error():
    backend = LiveBackend(_engine(1.0), CORPORA)
    with pytest.raises(InputError, match="no corpus for domain 'chat'"):
        backend.prefill([(0, Request(0, 0.0, 10, 5, "chat"))])


def test_clairvoyant_is_refused_by_the_live_engine():
    from engine.decode import check_policy

    with pytest.raises(InputError, match="oracle"):
        check_policy(make_policy("clairvoyant"))


def test_prompts_completing_in_one_step_prefill_in_one_forward():
    """The simulator prices a step's prefill chunk as one forward; the live backend runs one."""
    backend = LiveBackend(_engine(1.0), CORPORA, time="measured")
    calls = []
    add_many = backend.engine.add_many
    backend.engine.add_many = lambda prompts, gen=None: (
        calls.append(len(prompts)) or add_many(prompts, gen)
    )
    backend.prefill([(0, _requests()[0]), (1, _requests()[1])])
    assert calls == [2]
    assert backend.step_time(StepShape(0, 0, 0, 43)) == backend.engine.last["prefill"] > 0
    assert backend.context_basis == "padded"  # the engine pads keys to the longest context
