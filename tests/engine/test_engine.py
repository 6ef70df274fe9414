"""The step API: greedy speculative decoding is plain greedy decoding, token for token, for
every drafter, with variable verify lengths in one batch and requests joining and leaving."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.drafter import Draft  # noqa: E402
from engine.engine import Engine  # noqa: E402
from tests.engine.conftest import GAMMA, tiny_drafter  # noqa: E402

PROMPTS = [[1, 2, 3], [7, 7, 0, 1, 5, 6, 2], [4], [3, 1, 4, 1, 5, 2, 6, 5, 3]]
KINDS = ["dspark", "dflash", "ar", "mtp1"]


def plain_greedy(target, prompt: list[int], n: int) -> list[int]:
    eng = Engine(target, None, slots=1, temperature=0.0)
    s = eng.add(prompt)
    while len(eng.slots[s].generated) < n:
        eng.verify([s], None)
    return eng.slots[s].generated[:n]


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_speculative_equals_plain(target, kind):
    drafter = tiny_drafter(target, kind)
    eng = Engine(target, drafter, slots=4, temperature=0.0)
    slots = [eng.add(p) for p in PROMPTS]
    step = 0
    while min(len(eng.slots[s].generated) for s in slots) < 30:
        d = eng.draft(slots)
        assert d.tokens.shape == d.conf_logits.shape == (4, drafter.cfg.gamma)
        lengths = [(step + i) % (drafter.cfg.gamma + 1) for i in range(4)]  # variable ℓ
        eng.verify(slots, d, lengths, full=step % 3 == 0)
        step += 1
    for s, p in zip(slots, PROMPTS, strict=True):
        assert eng.slots[s].generated[:30] == plain_greedy(target, p, 30)


def test_oracle_drafts_accept_up_to_the_first_wrong_token(target):
    """Drafts copied from the greedy continuation with one wrong token: rollback is exact."""
    truth = plain_greedy(target, PROMPTS[1], 40)
    drafter = tiny_drafter(target, "dflash")
    eng = Engine(target, drafter, slots=2, temperature=0.0)
    s = eng.add(PROMPTS[1])
    accepted = []
    for wrong in [2, 0, 3, 1, 4, 2]:
        have = len(eng.slots[s].generated)
        block = list(truth[have : have + GAMMA])
        if wrong < GAMMA:
            block[wrong] = (block[wrong] + 1) % 8
        eng.draft([s])  # keep the drafter's context cache in step (the draft itself is unused)
        d = Draft(torch.tensor([block]), torch.full((1, GAMMA, 8), 1 / 8), torch.zeros(1, GAMMA))
        v = eng.verify([s], d, [GAMMA])
        accepted.append(v.accepted[0])
        assert eng.slots[s].generated == truth[: len(eng.slots[s].generated)]
    assert accepted == [2, 0, 3, 1, 4, 2]


def test_requests_join_and_leave_between_steps(target):
    drafter = tiny_drafter(target, "dspark")
    eng = Engine(target, drafter, slots=3, temperature=0.0)
    want = {i: plain_greedy(target, p, 25) for i, p in enumerate(PROMPTS)}
    pending = list(range(len(PROMPTS)))
    running: dict[int, int] = {}  # slot -> prompt index
    done = {}
    while pending or running:
        while pending and eng.free_slots():
            i = pending.pop(0)
            running[eng.add(PROMPTS[i])] = i
        slots = list(running)
        d = eng.draft(slots)
        eng.verify(slots, d, [GAMMA - (s % 2) for s in slots])
        for s in slots:
            if len(eng.slots[s].generated) >= 25:
                done[running.pop(s)] = eng.remove(s)[:25]
    assert done == want


def test_full_verification_reports_a_and_keeps_outcome(target):
    drafter = tiny_drafter(target, "dspark")
    a_eng = Engine(target, drafter, slots=1, temperature=1.0)
    b_eng = Engine(target, drafter, slots=1, temperature=1.0)
    sa, sb = a_eng.add(PROMPTS[0]), b_eng.add(PROMPTS[0])
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(10):
        da, db = a_eng.draft([sa], ga), b_eng.draft([sb], gb)
        va = a_eng.verify([sa], da, [2], ga)
        vb = b_eng.verify([sb], db, [2], gb, full=True)
        assert va.accepted == vb.accepted and va.tokens[0][:-1] == vb.tokens[0][:-1]
        assert vb.accepted[0] == min(vb.full_accepted[0], 2)
        if va.accepted[0] < 2:  # a rejection inside ℓ: the resampled token is the same too
            assert va.tokens == vb.tokens
        if va.tokens != vb.tokens:  # bonus tokens differ (different positions): resync
            break


def test_timings_are_recorded(target):
    eng = Engine(target, tiny_drafter(target, "dspark"), slots=1)
    s = eng.add([1, 2, 3], torch.Generator().manual_seed(0))
    assert eng.last["prefill"] > 0
    eng.verify([s], eng.draft([s]), [2], torch.Generator().manual_seed(0))
    assert eng.last["draft"] > 0 and eng.last["verify"] > 0
