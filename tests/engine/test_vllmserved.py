"""The served vLLM profile's fit (engine/vllmserved.py) on synthetic step logs (no vLLM needed).

The step times are synthetic, labelled so: T = 5 ms + 0.5 ms·R + 0.1 ms·M + (K/4)·(2 + 0.3·R) ms
for decode steps, 3 ms + 0.2 ms per token for prefill-only steps.
"""

from __future__ import annotations

import pytest

from engine import vllmserved
from profiles.store import read_cost, write_yaml


def _ms(k: int, r: int, m: int) -> float:
    return 5 + 0.5 * r + 0.1 * m + k / 4 * (2 + 0.3 * r)


def _samples() -> dict:
    steps = []
    for k in (1, 2, 4):
        for r in (1, 2, 4, 8, 16):
            for ctx in (0, 64):
                m = r * (1 + k) + ctx
                for _ in range(3):
                    steps.append({"k": k, "burst": 0, "index": len(steps), "ctx_requests": ctx > 0,
                                  "ctx_tokens": ctx, "gen_requests": r, "gen_tokens": r * (1 + k),
                                  "elapsed_ms": _ms(k, r, m)})  # fmt: skip
        for c in (32, 64, 128):
            steps.append({"k": k, "burst": 0, "index": len(steps), "ctx_requests": 1,
                          "ctx_tokens": c, "gen_requests": 0, "gen_tokens": 0,
                          "elapsed_ms": 3 + 0.2 * c})  # fmt: skip
    bursts = [{"k": 1, "concurrency": 1, "round": 0, "requests": 3, "completed": 3, "steps": 10,
               "wall_s": 0.12, "logged_s": 0.1, "gap_ms": 2.0}]  # fmt: skip
    return {"steps": steps, "bursts": bursts, "servers": [], "wall_s": 1.0,
            "max_num_batched_tokens": 2048}  # fmt: skip


def test_the_fit_prices_the_logged_steps_and_adds_the_measured_gap():
    cost, err = vllmserved.fit(_samples(), "synthetic: test")
    assert err["rms_rel_error"] < 0.03 and err["step_gap_s"] == pytest.approx(2e-3)
    assert cost.prefill_fused and cost.drafter == "autoregressive" and cost.draft_positions == 4
    for k, r in ((1, 1), (2, 4), (4, 8), (4, 16)):
        m = r * (1 + k)
        got = cost.step_time(r, m, 0, 0, drafts=k)
        assert got == pytest.approx(1e-3 * (_ms(k, r, m) + 2.0), rel=0.05), (k, r)
    assert cost.prefill_time(64) == pytest.approx(1e-3 * (3 + 0.2 * 64), rel=0.05)


def test_the_document_loads_with_its_envelope(tmp_path):
    cfg = vllmserved.ServedProfileConfig()
    cost, err = vllmserved.fit(_samples(), "synthetic: test")
    doc = vllmserved.document(_samples(), cost, err, {"engine": "vllm:x,draft=y"}, cfg)
    env = doc["metadata"]["envelope"]
    assert env["requests"] == [1, 16] and env["speculative_tokens"] == [1, 4]
    write_yaml(tmp_path / "p.yaml", doc)
    back = read_cost(tmp_path / "p.yaml")
    assert back.step_time(4, 12, 0, 0, drafts=2) == pytest.approx(
        cost.step_time(4, 12, 0, 0, drafts=2)
    )


@pytest.mark.parametrize("bad", [{"ks": (4,)}, {"ks": (0, 4)}, {"requests": (0, 1)},
                                 {"per_slot": 0}])  # fmt: skip
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        vllmserved.ServedProfileConfig(**bad)


def test_no_decode_steps_is_an_error():
    s = _samples()
    s["steps"] = [x for x in s["steps"] if not x["gen_requests"]]
    with pytest.raises(ValueError, match="no decode steps"):
        vllmserved.fit(s)


def test_noisy_medians_give_rising_curves_that_price_near_the_log():
    """Medians that zig-zag by ±20% over R (a loaded machine) must not leave peaks that the cost
    model's monotone repair would lift every larger batch to."""
    s = _samples()
    for x in s["steps"]:
        if x["gen_requests"]:
            x["elapsed_ms"] *= 1.2 if x["gen_requests"] in (2, 8) else 0.8
    cost, err = vllmserved.fit(s, "synthetic: test")
    assert all(n == 0 for n in cost.repaired().values()), cost.repaired()
    for curve in (cost.verify, cost.alpha, cost.draft):
        assert all(b >= a for a, b in zip(curve.y[:-1], curve.y[1:], strict=True)), curve
    for k, r in ((4, 1), (4, 4), (4, 16)):  # within the noise of the logged steps
        m = r * (1 + k)
        got = cost.step_time(r, m, 0, 0, drafts=k)
        assert got == pytest.approx(1e-3 * (_ms(k, r, m) + 2.0), rel=0.25), (k, r)


def test_every_k_serves_at_once_and_each_round_visits_every_k_and_r(tmp_path, monkeypatch):
    """measure() with a stand-in server and client: all K servers are up before the first
    burst, each is warmed up unsampled, and every round runs each (K, R) once, shuffled (so K's
    are compared within minutes, not one server after another)."""
    from engine import bench, serve

    events, up = [], set()

    class _Served:
        def __init__(self, cfg, log, timeout) -> None:
            self.k = cfg.speculative["num_speculative_tokens"]
            self.log, self.startup_s, self.url = log, 1.0, f"http://k{self.k}"

        def __enter__(self):
            up.add(self.k)
            self.log.write_text("")
            return self

        def __exit__(self, *exc) -> None:
            up.discard(self.k)

    def _run(url, name, todo, load):
        k = int(url.removeprefix("http://k"))
        events.append((k, load.concurrency, len(todo), frozenset(up)))
        line = (f"Iteration({len(events)}): 0 context requests, 0 context tokens, "
                f"{load.concurrency} generation requests, {load.concurrency * (k + 1)} generation "
                "tokens, iteration elapsed time: 10.0 ms\n")  # fmt: skip
        with open(tmp_path / f"server-k{k}.log", "a") as f:
            f.write(line)
        return [bench.Outcome(1, "code", 32, 4, sent=0.0, first=0.01, finish=0.02, tokens=4)]

    monkeypatch.setattr(serve, "Served", _Served)
    monkeypatch.setattr(bench, "run", _run)
    monkeypatch.setattr(vllmserved.time, "sleep", lambda s: None)
    cfg = vllmserved.ServedProfileConfig(requests=(1, 2, 4), ks=(1, 4), repeats=2, per_slot=1)
    samples = vllmserved.measure("t", "d", cfg, tmp_path)
    warm, bursts = events[:2], events[2:]
    assert [(k, r) for k, r, _, _ in warm] == [(1, 4), (4, 4)]  # warm-ups at the top R
    assert all(seen == {1, 4} for *_, seen in bursts)  # both servers up for every burst
    rounds = [sorted((k, r) for k, r, _, _ in bursts[i : i + 6]) for i in (0, 6)]
    assert rounds[0] == rounds[1] == sorted((k, r) for k in (1, 4) for r in (1, 2, 4))
    assert [(k, r) for k, r, _, _ in bursts] != sorted((k, r) for k, r, _, _ in bursts)
    assert [(b["k"], b["concurrency"]) for b in samples["bursts"]] == [(k, r) for k, r, *_ in
                                                                       bursts]  # fmt: skip
    assert len(samples["steps"]) == 12 and {s["k"] for s in samples["steps"]} == {1, 4}
