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


def _save(path, **arrays) -> str:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return str(path)


def test_round_trip_keeps_arrays_and_meta(records, tmp_path):
    path = tmp_path / "rounds.npz"
    write_records(path, records)
    back = read_records(path)
    assert back.digest() == records.digest()
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
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arrays_are_one_line_input_errors(records, tmp_path, case):
    arrays = {k: np.array(v, copy=True) for k, v in _arrays(records).items()}
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


def _rows_of(records: Records, req: int) -> tuple[np.ndarray, np.ndarray]:
    mask = records.request == req
    order = np.argsort(records.step[mask])
    return records.logits[mask][order], records.accepted[mask][order].astype(int)


def test_replays_one_request_in_order_then_chains_same_domain(records):
    model = RecordsAcceptance(records)
    rng = np.random.default_rng(0)
    cursor = model.start("code", rng)
    first = cursor.req
    logits, acc = _rows_of(records, int(records.request[model._bounds[first]]))
    conf, got = model.draw(cursor, len(acc) + 50, rng)
    assert np.array_equal(got[: len(acc)], acc)
    assert np.allclose(conf[: len(acc)], 1 / (1 + np.exp(-logits.astype(float))))
    # after the recorded request ends, the stream continues with a request of the same domain
    next_id = int(records.request[model._bounds[cursor.req]])
    assert records.domain[records.request == next_id][0] == "code"


def test_wrap_repeats_the_same_request(records):
    model = RecordsAcceptance(records, end="wrap")
    rng = np.random.default_rng(1)
    cursor = model.start("chat", rng)
    n = int(model._bounds[cursor.req + 1] - model._bounds[cursor.req])
    _, acc = model.draw(cursor, 2 * n, rng)
    assert np.array_equal(acc[:n], acc[n:])


def test_temperatures_scale_logits(records):
    temps = (2.0, 1.0, 0.5, 1.0)
    hot, cold = RecordsAcceptance(records, temps), RecordsAcceptance(records)
    conf_hot, _ = hot.draw(
        hot.start("code", np.random.default_rng(5)), 40, np.random.default_rng(6)
    )
    conf_raw, _ = cold.draw(
        cold.start("code", np.random.default_rng(5)), 40, np.random.default_rng(6)
    )
    raw_logits = np.log(conf_raw / (1 - conf_raw))
    assert np.allclose(conf_hot, 1 / (1 + np.exp(-raw_logits / np.asarray(temps))), atol=1e-6)
    with pytest.raises(InputError, match="4 positive temperatures"):
        RecordsAcceptance(records, (1.0, 1.0))


def test_unknown_domain_and_options(records, tmp_path):
    model = RecordsAcceptance(records)
    with pytest.raises(InputError, match="no domain 'math'"):
        model.start("math", np.random.default_rng(0))
    path = tmp_path / "r.npz"
    write_records(path, records)
    with pytest.raises(InputError, match="unknown or malformed option"):
        load_acceptance(f"records:{path}?temp=1")
    with pytest.raises(InputError, match="end must be"):
        load_acceptance(f"records:{path}?end=loop")


def test_simulator_replay_reproduces_recorded_acceptance(records, cost, tmp_path):
    """Under fixed:k=γ the simulated accepted length is the records' round-weighted one.
    α: one seed (0); tolerance 3% (chaining makes the stationary mix round-weighted)."""
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
    assert s["mean_accepted_len"] == pytest.approx(model.expected_accepted_len("code"), rel=0.03)
