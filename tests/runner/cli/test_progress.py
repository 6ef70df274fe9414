"""Progress bars (runner/cli/progress.py), the overload estimate (simulator/capacity.py) and tune's
reasons for an infeasible entry: no terminal or timing needed."""

from __future__ import annotations

import argparse
import io

import numpy as np

from runner.cli import progress
from runner.cli.text import why_not
from runner.report import closest
from runner.scheduler import parse_sla
from simulator import capacity


def test_an_off_bar_takes_every_call_and_draws_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = progress.bar(argparse.Namespace(quiet=False), "x", total=None)  # not a terminal
    assert not bar.on
    with bar:
        bar.update(3), bar.tick("req"), bar.start(9), bar.grow(2, 1), bar.note("n")
        bar.write("line"), bar.describe("d")
    assert err.getvalue() == ""


def test_quiet_wins_over_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert not progress.enabled(argparse.Namespace(quiet=True))
    assert not progress.enabled(None, quiet=True)


def test_a_drawn_bar_with_an_unknown_total_survives_truth_tests(monkeypatch):
    """The crash of issue 12: ``if bar:`` on a tqdm with total=None raises TypeError."""
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = progress.Progress(True, "requests arrived", total=None, unit="req")
    bar.tick(), bar.tick()
    bar.close()
    assert "requests arrived" in err.getvalue() and "2req" in err.getvalue().replace(" ", "")


def test_overload_needs_a_busy_server_and_offered_beyond_capacity():
    arrivals = np.linspace(0.0, 100.0, 1001)  # 10 req/s offered
    busy = {"request_throughput_req_s": 2.0, "engine_busy_fraction": 0.999,
            "queue_mean_s": 30.0, "e2e_mean_s": 40.0}  # fmt: skip
    o = capacity.overload(busy, arrivals, rate_scale=1.0)
    assert o is not None and o.offered_req_s == 10.0 and o.capacity_req_s == 2.0
    assert o.rate_scale == 0.2 and "--rate-scale <= 0.2" in o.message()
    assert capacity.overload({**busy, "engine_busy_fraction": 0.5}, arrivals, 1.0) is None
    assert capacity.overload({**busy, "request_throughput_req_s": 9.5}, arrivals, 1.0) is None
    assert capacity.overload(busy, np.zeros(50), 1.0) is None  # all at once: a closed batch
    # a few requests that hardly waited: their completion rate is not the server's capacity
    brief = {**busy, "queue_mean_s": 0.003, "e2e_mean_s": 1.4}
    assert capacity.overload(brief, arrivals, 1.0) is None
    assert capacity.overload(busy, arrivals, 4.0).rate_scale == 0.8  # scales the current one


def test_grid_overload_at_the_lowest_load():
    pts = [{"requests_completed": 100, "window_s": 50.0}, {"requests_completed": 100,
                                                          "window_s": 40.0}]  # fmt: skip
    o = capacity.grid_overload(pts, offered_at_1=10.0, loads=(1.0, 2.0))
    assert o is not None and o.capacity_req_s == 2.5 and o.rate_scale == 0.25
    assert capacity.grid_overload(pts, offered_at_1=2.0, loads=(1.0, 2.0)) is None


def test_infeasible_entries_say_their_best_value_and_capped_ones_say_so():
    sla = [parse_sla("tps_per_user_p50>=150"), parse_sla("ttft_p99_s<=2")]
    pts = [{"tps_per_user_p50": 120.0, "ttft_p99_s": 3.0},
           {"tps_per_user_p50": 140.0, "ttft_p99_s": 5.0}]  # fmt: skip
    best = closest(pts, sla)
    assert best == {"tps_per_user_p50>=150": 140.0, "ttft_p99_s<=2": 3.0}
    s = {"mode": "concurrency", "policies": {
        "fixed:k=1": {"feasible": False, "closest": best},
        "dspark": {"feasible": True, "at_top_of_grid": True, "load": 256.0},
        "fixed": {"feasible": True, "at_top_of_grid": False, "load": 8.0}}}  # fmt: skip
    lines = why_not(s)
    assert any("fixed:k=1" in x and "tps_per_user_p50 140" in x and "ttft_p99_s 3" in x
               for x in lines)  # fmt: skip
    assert any("capped" in x and "dspark" in x and "--concurrency" in x for x in lines)
    assert not any(" fixed:" in x and "capped" in x for x in lines)
