"""Records: the .npz format round trip, one-line errors for every bad array, the by-request split,
and RecordsAcceptance replaying per-request streams. All records here are SYNTHETIC (drawn from a
parametric model in code), never engine measurements."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies import make_policy
from profiles import InputError
from profiles.acceptance import ParametricAcceptance
from profiles.builtin import load_acceptance
from profiles.records import (
    Records,
    RecordsAcceptance,
    read_records,
    split_by_request,
    synthesize,
    write_records,
)
from simulator.run import simulate
from simulator.server import ServerConfig
from tests.conftest import make_requests

MODEL = ParametricAcceptance({"code": (0.85, 0.8, 0.75, 0.7), "chat": (0.6, 0.55, 0.5, 0.5)})


@pytest.fixture(scope="module")
def records() -> Records:
    return synthesize(MODEL, requests=40, steps=30, seed=0)


def _arrays(r: Records) -> dict:
    return {
        "domain": r.domain,
        "request": r.request,
        "step": r.step,
        "logits": r.logits,
        "accepted": r.accepted,
        "meta": np.array(json.dumps(r.meta)),
    }


def _arrays_new(r: Records) -> dict:
    return {**_arrays(r), "verified": r.verified}


def _save(path, **arrays) -> str:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return str(path)


def test_round_trip_keeps_arrays_and_meta(records, tmp_path):
    path = tmp_path / "rounds.npz"
    write_records(path, records)
    back = read_records(path)
    assert back.digest() == records.digest()
    assert np.array_equal(back.verified, records.verified) and back.verified.dtype == np.int16
    assert back.meta["gamma"] == 4 and back.meta["source"].startswith("SYNTHETIC")
    assert back.logits.dtype == np.float32 and back.accepted.dtype == np.int16
    assert back.domains == ("chat", "code") and back.requests == 80


BAD = {
    "missing": (lambda a: a.pop("accepted"), "missing array(s) 'accepted'"),
    "object": (lambda a: a.update(domain=a["domain"].astype(object)), "array 'domain'"),
    "shape": (lambda a: a.update(step=a["step"][:-1]), "array 'step': must have shape"),
    "range": (lambda a: a["accepted"].__setitem__(0, 5), "array 'accepted': values must lie"),
    "nan": (lambda a: a["logits"].__setitem__((0, 0), np.nan), "array 'logits': contains NaN"),
    "dtype": (lambda a: a.update(request=a["request"] + 0.5), "array 'request': must be integers"),
    "dup": (lambda a: a["step"].__setitem__(1, a["step"][0]), "array 'step': request 0 has step"),
    "mixed": (lambda a: a["domain"].__setitem__(0, "math"), "spans two domains"),
    "meta_json": (lambda a: a.update(meta=np.array("{not json")), "array 'meta': invalid JSON"),
    "meta_list": (lambda a: a.update(meta=np.array("[1, 2]")), "array 'meta': must hold a JSON"),
    "gamma": (lambda a: a.update(meta=np.array('{"gamma": 7}')), "gamma is 7 but logits have 4"),
    "1d": (lambda a: a.update(logits=a["logits"][:, 0]), "array 'logits': must have shape"),
    "ver_range": (lambda a: a["verified"].__setitem__(0, 5), "array 'verified': values must lie"),
    "ver_float": (lambda a: a.update(verified=a["verified"] + 0.5), "'verified': must be integ"),
    "ver_shape": (lambda a: a.update(verified=a["verified"][:3]), "'verified': must have shape"),
    "meta_slots": (lambda a: a.update(meta=np.array('{"slots": 0}')), "field 'slots' must be"),
    "meta_runs": (
        lambda a: a.update(meta=np.array('{"engine_runs": {"x": {"code": {"a": -1}}}}')),
        "field 'engine_runs'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arrays_are_one_line_input_errors(records, tmp_path, case):
    arrays = {k: np.array(v, copy=True) for k, v in _arrays_new(records).items()}
    mutate, message = BAD[case]
    mutate(arrays)
    path = _save(tmp_path / f"{case}.npz", **arrays)
    with pytest.raises(InputError) as err:
        read_records(path)
    text = str(err.value)
    assert message in text and text.startswith(path) and "\n" not in text


@pytest.mark.parametrize("content", [b"", b"domain,request\ncode,1\n", b"PK\x03\x04broken"])
def test_not_an_npz_file(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.npz: not a records .npz file"):
        read_records(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_records(tmp_path / "absent.npz")
    with pytest.raises(InputError, match="not a file"):
        read_records(tmp_path)


def test_write_refuses_invalid_records(records):
    with pytest.raises(InputError, match="array 'accepted'"):
        Records(records.domain, records.request, records.step, records.logits, records.accepted + 9)


def test_split_is_by_request_stratified_and_seeded(records):
    fit, report = split_by_request(records, 0.5, seed=3)
    assert not set(fit.request) & set(report.request)
    assert fit.rounds + report.rounds == records.rounds
    for d in records.domains:
        assert np.unique(fit.request[fit.domain == d]).size == 20
    again, _ = split_by_request(records, 0.5, seed=3)
    assert np.array_equal(again.request, fit.request)
    other, _ = split_by_request(records, 0.5, seed=4)
    assert not np.array_equal(other.request, fit.request)


def test_split_needs_two_requests(records):
    one = records.take(records.request == 0)
    with pytest.raises(InputError, match="cannot split"):
        split_by_request(one, 0.5, 0)
    with pytest.raises(InputError, match="fraction"):
        split_by_request(records, 1.0, 0)


def _hand_records(end_two: bool = False) -> Records:
    """One code request of six rounds (γ = 4), A and ℓ chosen by hand:

    row  A  ℓ  gained  ends      starts at  anchor
    0    2  4  3       residual  0          bonus (prefill)
    1    4  2  3       bonus     3          residual
    2    0  1  1       residual  6          bonus
    3    3  3  4       bonus     7          residual
    4    1  0  1       bonus     11         bonus
    5    2  2  3       bonus     12         bonus      (15 tokens in all)
    """
    acc = np.array([2, 4, 0, 3, 1, 2])
    ver = np.array([4, 2, 1, 3, 0, 2])
    n = acc.size
    logits = np.arange(n * 4, dtype=np.float32).reshape(n, 4) / 10
    return Records(np.full(n, "code"), np.zeros(n, dtype=np.int64), np.arange(n), logits, acc,
                   {"gamma": 4}, ver)  # fmt: skip


def test_replay_goes_by_position_and_anchor_kind():
    model = RecordsAcceptance(_hand_records())
    s = model.stream(2)
    slot = np.array([1])
    s.join(1, "code", np.random.default_rng(0))
    seen = [int(s.row[1])]
    # (ℓ the replaying policy verifies) -> the row it should play next
    for ell, want in ((1, 2), (1, 3), (4, 1), (3, 4), (0, 5), (2, 0)):
        _, acc = s.rows(slot)
        gained = np.minimum(acc, ell) + 1
        s.advance(slot, acc >= ell, gained)
        seen.append(int(s.row[1]))
        assert seen[-1] == want, seen
    # A=2 ≥ 1 ends on a bonus, cursor 0 + 2: the first bonus-anchored round at ≥ 2 is row 2 (6);
    # A=0 < 1: residual, cursor 6 + 1 -> row 3 (7); A=3 < 4: residual, 7 + 4 = 11, none left ->
    # chained (the only request) at 0 -> row 1 (3); A=4 ≥ 3: bonus, 3 + 4 = 7 -> row 4 (11);
    # A=1 ≥ 0: bonus, 11 + 1 -> row 5 (12); A=2 ≥ 2: bonus, 12 + 3 = 15, the end -> row 0.
    conf, _ = s.rows(slot)
    assert np.allclose(conf[0], 1 / (1 + np.exp(-np.arange(4) / 10)))


def test_replay_under_the_recorded_lengths_plays_every_round_in_order(records):
    model = RecordsAcceptance(records, end="wrap")
    s = model.stream(1)
    slot = np.array([0])
    for _ in range(5):
        s.join(0, "chat", np.random.default_rng(_))
        req = int(records.request[np.lexsort((records.step, records.request))][
            model._index.bounds[s.req[0]]])  # fmt: skip
        mask = records.request == req
        order = np.argsort(records.step[mask])
        acc, ver = records.accepted[mask][order], records.verified[mask][order]
        for j in range(acc.size):
            assert s.acc[s.row[0]] == acc[j]
            s.advance(slot, np.array([acc[j] >= ver[j]]), np.array([min(acc[j], ver[j]) + 1]))
        assert s.pos[0] == 0  # wrapped to the request's start


def test_chain_moves_to_another_request_of_the_domain(records):
    model = RecordsAcceptance(records)
    s = model.stream(1)
    s.join(0, "code", np.random.default_rng(3))
    reqs = {int(s.req[0])}
    for _ in range(400):
        _, acc = s.rows(np.array([0]))
        s.advance(np.array([0]), np.array([True]), np.array([5]))
        reqs.add(int(s.req[0]))
    starts = np.flatnonzero(np.r_[True, np.diff(np.sort(records.request)) != 0])
    doms = records.domain[np.argsort(records.request, kind="stable")][starts]
    assert len(reqs) > 10 and set(doms[sorted(reqs)]) == {"code"}


def test_old_records_without_verify_lengths(records, tmp_path):
    arrays = _arrays(records)
    path = _save(tmp_path / "old.npz", **arrays)
    old = read_records(path)  # calibration reads only logits and A
    assert old.verified is None and old.digest() != records.digest()
    with pytest.raises(InputError, match="no array 'verified'.*re-record") as err:
        load_acceptance(f"records:{path}")
    assert "\n" not in str(err.value)


def test_replay_needs_every_step(records):
    gap = records.take(~((records.request == 3) & (records.step == 2)))
    with pytest.raises(InputError, match="request 3 misses step 2"):
        RecordsAcceptance(gap)


def test_temperatures_scale_logits(records):
    temps = (2.0, 1.0, 0.5, 1.0)
    hot, cold = RecordsAcceptance(records, temps).stream(1), RecordsAcceptance(records).stream(1)
    hot.join(0, "code", np.random.default_rng(5))
    cold.join(0, "code", np.random.default_rng(5))
    conf_hot, conf_raw = hot.rows(np.array([0]))[0], cold.rows(np.array([0]))[0]
    raw_logits = np.log(conf_raw / (1 - conf_raw))
    assert np.allclose(conf_hot, 1 / (1 + np.exp(-raw_logits / np.asarray(temps))), atol=1e-6)
    with pytest.raises(InputError, match="4 positive temperatures"):
        RecordsAcceptance(records, (1.0, 1.0))


def test_unknown_domain_and_options(records, tmp_path):
    model = RecordsAcceptance(records)
    with pytest.raises(InputError, match="no domain 'math'"):
        model.stream(1).join(0, "math", np.random.default_rng(0))
    path = tmp_path / "r.npz"
    write_records(path, records)
    with pytest.raises(InputError, match="unknown or malformed option"):
        load_acceptance(f"records:{path}?temp=1")
    with pytest.raises(InputError, match="end must be"):
        load_acceptance(f"records:{path}?end=loop")


def test_simulator_replay_reproduces_recorded_acceptance(records, cost, tmp_path):
    """Under fixed:k=γ the simulated accepted length is what the records' rounds give when each
    recorded request is replayed over its recorded tokens (SYNTHETIC rows carry no anchor
    effect, so only the requests' weights matter: tokens T_r, rounds T_r / g_r at g_r, the mean
    of min(A, γ) + 1 over its rows). α: one seed (0); tolerance 3%."""
    path = tmp_path / "r.npz"
    write_records(path, records)
    model = load_acceptance(f"records:{path}")
    assert "SYNTHETIC" in model.source and model.gamma == 4
    s = simulate(
        make_requests(300, 50.0, seed=1, domain="code"),
        make_policy("fixed:k=4"),
        cost,
        model,
        ServerConfig(max_concurrency=16, gamma=4),
        seed=0,
    ).summary
    code = records.take(records.domain == "code")
    tokens, rounds = 0.0, 0.0
    for r in np.unique(code.request):
        m = code.request == r
        t = float((np.minimum(code.accepted[m], code.verified[m]) + 1).sum())
        tokens, rounds = tokens + t, rounds + t / float(code.accepted[m].mean() + 1)
    assert s["mean_accepted_len"] == pytest.approx(tokens / rounds, rel=0.03)


def test_backend_replay_depends_on_the_request_alone(records, cost):
    """A request's replayed rows depend on (seed, request id) and its outcomes only — not on its
    slot or the slot's earlier occupant (common random numbers across policies)."""
    from simulator.backend import ProfiledBackend
    from simulator.request import Request

    model = RecordsAcceptance(records)

    def rows(backend, slot, req, steps=80):
        backend.join(slot, req)
        out = []
        for _ in range(steps):
            s = np.array([slot])
            out.append((backend.draft(s).copy(), backend.accepted(s).copy()))
            backend.verify(s, np.array([2]))
        backend.leave(slot)
        return out

    req = Request(42, 0.0, 10, 400, "code")
    fresh = rows(ProfiledBackend(cost, model, 4, 7, 4), 0, req)
    used = ProfiledBackend(cost, model, 4, 7, 4)
    rows(used, 2, Request(1, 0.0, 10, 30, "chat"), steps=20)
    again = rows(used, 2, req)
    for (c1, a1), (c2, a2) in zip(fresh, again, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(a1, a2)
