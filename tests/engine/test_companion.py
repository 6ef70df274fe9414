"""The companion profiler: a cost profile measured between live steps, on its own engine."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.companion import MIN_TIMED_ROUNDS, Companion  # noqa: E402
from engine.engine import Engine  # noqa: E402
from tests.engine.conftest import tiny_drafter, tiny_target  # noqa: E402


def test_companion_measures_whole_rounds_and_leaves_the_live_engine_alone():
    target = tiny_target(vocab=256)
    live = Engine(target, tiny_drafter(target, "dspark"), slots=3, max_len=64)
    gen = torch.Generator().manual_seed(0)
    slot = live.add(list(range(10)), gen)
    draft = live.draft([slot], gen)
    live.verify([slot], draft, [2], gen)
    pending, length = live._pending, live.slots[slot].length
    comp = Companion(live, base_context=16)
    for _ in range(5):  # fewer calls than one round: measurements() completes the rounds
        comp.step()
    ms = comp.measurements()
    assert comp.timed_rounds >= MIN_TIMED_ROUNDS
    counts = {len(x) for kind in comp.samples.values() for x in kind}
    assert counts == {comp.timed_rounds}  # every point sampled equally
    assert all(t > 0 for t in ms.verify.mean + ms.context.mean + ms.context_one.mean)
    assert live._pending is pending and live.slots[slot].length == length
    assert list(live.slots) == [slot]
    cost = Companion(live, base_context=16).cost_model("test")
    assert cost.kind == "additive" and cost.context_basis == "padded"
    assert cost.context_queries == live.gamma + 1 and cost.step_time(2, 6, 2 * 20, 0, 3) > 0
