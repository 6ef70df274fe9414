"""The speed reference's measurement from a live run's outcomes and server log rows (no server,
no timing: the outcomes and rows are made up)."""

from __future__ import annotations

import pytest

from engine.bench import Outcome
from engine.vllmbench import decode_span_s, logged_decode_steps, speed_measurement


def _row(i: int, ctx: int, gen: int, gen_tokens: int, ms: float) -> dict[str, float]:
    return {"index": i, "ctx_requests": ctx, "ctx_tokens": 32 * ctx, "gen_requests": gen,
            "gen_tokens": gen_tokens, "elapsed_ms": ms}  # fmt: skip


def test_wall_per_decode_step_is_the_decode_span_over_the_logged_decode_steps():
    outs = [Outcome(0, "code", 32, 8, sent=0.0, first=0.05, finish=0.15, tokens=8),
            Outcome(1, "code", 32, 8, sent=0.2, first=0.25, finish=0.35, tokens=8),
            Outcome(2, "code", 32, 8, sent=0.4, first=0.41, error="timeout")]  # fmt: skip
    rows = [_row(0, 1, 0, 0, 20.0), *(_row(1 + i, 0, 1, 5 if i % 2 else 3, 9.0) for i in range(4)),
            _row(5, 1, 0, 0, 20.0), *(_row(6 + i, 0, 1, 5, 9.0) for i in range(4))]  # fmt: skip
    assert len(logged_decode_steps(rows)) == 8
    assert decode_span_s(outs) == pytest.approx(0.2)  # the failed request is not counted
    m = speed_measurement(outs, rows)
    assert m["decode_steps"] == 8 and m["requests"] == 2
    assert m["wall_per_step_s"] == pytest.approx(0.2 / 8)
    assert m["step_tokens"] == [[3, 2], [5, 6]] and m["logged_step_ms_mean"] == 9.0


def test_a_reference_without_one_request_decode_steps_is_refused():
    with pytest.raises(ValueError, match="one-request decode steps"):
        speed_measurement([], [_row(0, 1, 0, 0, 20.0), _row(1, 0, 2, 10, 9.0)])
