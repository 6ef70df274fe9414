"""Trace readers: each format, auto-detection, every kind of bad input, and the real traces."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.errors import InputError
from simulator.traces import MAX_TOKENS, _wallclock, inspect_trace
from simulator.workload import WorkloadSpec, open_workload

DATA = Path(__file__).parent / "data"
TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces"


def rows(path: Path | str, **kw) -> list[tuple]:
    return [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.domain) for r in read(path, **kw)]


def read(path: Path | str, **kw) -> list:
    return list(open_workload(WorkloadSpec(str(path), **kw)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- each format parses ---------------------------------------------------------------------


def test_azure_seven_digit_timestamps_midnight_and_idle_gap():
    got = rows(DATA / "azure_conv_tiny.csv")
    assert [r[1:] for r in got] == [
        (374, 44, "chat"),
        (396, 109, "chat"),
        (879, 8, "chat"),
        (91, 12, "chat"),
        (1024, 300, "chat"),
    ]
    t = [r[0] for r in got]
    assert t[0] == 0.0
    assert t[1] == pytest.approx(1e-7, abs=1e-9)  # the 7th fractional digit counts
    assert t[3] - t[2] == pytest.approx(200.0)  # a 200 s idle gap across midnight replays as is
    assert t[4] == pytest.approx(201.5)


def test_azure_code_trace_is_labelled_code():
    assert {r[3] for r in rows(DATA / "azure_code_tiny.csv")} == {"code"}


def test_burstgpt_failures_are_skipped_and_counted():
    w = open_workload(WorkloadSpec(str(DATA / "burstgpt_tiny.csv")))
    got = [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in w]
    assert got == [(5.0, 472, 18), (118.0, 417, 175), (118.0, 1360, 222)]
    assert (w.stats.rows_read, w.stats.failed_requests, w.stats.requests) == (4, 1, 3)
    assert w.stats.bad_rows_skipped == 0


def test_mooncake_ms_and_bucketed_ties():
    got = rows(DATA / "mooncake_tiny.jsonl")
    assert [r[0] for r in got] == [0.0, 0.0, 3.0, 3.0]
    assert [r[1:3] for r in got] == [(6758, 500), (7322, 490), (2290, 316), (40160, 6)]


def test_generic_csv_with_domains_and_jsonl_without():
    assert rows(DATA / "generic_tiny.csv") == [
        (0.0, 100, 20, "code"),
        (0.5, 200, 30, "math"),
        (0.5, 300, 40, "chat"),
    ]
    assert rows(DATA / "generic_tiny.jsonl") == [(0.25, 100, 20, "chat"), (1.0, 200, 30, "chat")]


def test_generic_accepts_integral_floats_extra_columns_quotes_crlf_and_bom(tmp_path):
    text = '\ufeffprompt_tokens,note,arrival_s,output_tokens\r\n12.0,"a, b",0.5,3\r\n\r\n'
    assert rows(write(tmp_path, "t.csv", text)) == [(0.5, 12, 3, "chat")]


@pytest.mark.parametrize(
    "stamp, seconds",
    [
        ("2023-11-16 18:15:47", 1.0),
        ("2023-11-16T18:15:46.5", 0.5),
        ("2023-11-16 18:15:46.2500000Z", 0.25),
        ("2023-11-16 19:15:46.0000000+01:00", 0.0),
        ("2023-11-16 18:15:46.000-00:30", 1800.0),
    ],
)
def test_wallclock_variants(stamp, seconds):
    parse = _wallclock()
    assert parse("2023-11-16 18:15:46.0000000") == 0.0
    assert parse(stamp) == pytest.approx(seconds)


@given(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)), st.integers(0, 9))
def test_wallclock_matches_datetime(when, seventh):
    """Seconds between two stamps agree with datetime, plus the 7th digit datetime cannot read."""
    parse = _wallclock()
    first = datetime(2000, 1, 1)
    parse(first.strftime("%Y-%m-%d %H:%M:%S.%f") + "0")
    got = parse(when.strftime("%Y-%m-%d %H:%M:%S.%f") + str(seventh))
    want = (when - first) / timedelta(seconds=1) + seventh * 1e-7
    assert got == pytest.approx(want, abs=1e-5)


# ---- detection and overrides ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("azure_conv_tiny.csv", "azure"),
        ("burstgpt_tiny.csv", "burstgpt"),
        ("mooncake_tiny.jsonl", "mooncake"),
        ("generic_tiny.csv", "generic"),
        ("generic_tiny.jsonl", "generic"),
    ],
)
def test_auto_detection(name, fmt):
    assert inspect_trace(str(DATA / name)).format == fmt
    assert open_workload(WorkloadSpec(str(DATA / name))).label.startswith(f"{fmt} trace {name}")


def test_detection_ignores_the_extension(tmp_path):
    path = write(tmp_path, "trace.txt", (DATA / "mooncake_tiny.jsonl").read_text())
    assert inspect_trace(str(path)).format == "mooncake"


def test_format_override_must_fit_the_header():
    assert inspect_trace(str(DATA / "generic_tiny.jsonl"), "generic").format == "generic"
    with pytest.raises(InputError, match=r"azure_conv_tiny.csv:1: missing column 'Timestamp'"):
        open_workload(WorkloadSpec(str(DATA / "azure_conv_tiny.csv"), format="burstgpt"))
    with pytest.raises(InputError, match="'azure' is not read from JSON lines"):
        open_workload(WorkloadSpec(str(DATA / "mooncake_tiny.jsonl"), format="azure"))


def test_override_wins_when_a_header_fits_two_formats(tmp_path):
    text = "arrival_s,prompt_tokens,output_tokens,TIMESTAMP,ContextTokens,GeneratedTokens\n"
    text += "1.5,10,20,2023-11-16 18:15:46.0000000,30,40\n"
    path = write(tmp_path, "both.csv", text)
    assert rows(path) == [(0.0, 30, 40, "chat")]  # auto: azure is tried first
    assert rows(path, format="generic") == [(1.5, 10, 20, "chat")]


# ---- bad input ------------------------------------------------------------------------------

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD_AZ = "2023-11-16 18:15:46.0000000,10,20\n"
GEN = "arrival_s,prompt_tokens,output_tokens\n"
BAD_ROWS = [  # (file name, text, line of the bad row, message fragment)
    ("a.csv", AZ + GOOD_AZ + "2023-11-16 18:15:47.0000000,10\n", 3, "expected 3 fields, got 2"),
    ("a.csv", AZ + GOOD_AZ + "2023-11-16 18:15:47.0,x,20\n", 3, "ContextTokens 'x' is not a"),
    ("a.csv", AZ + GOOD_AZ + "2023-13-16 18:15:47.0,1,20\n", 3, "TIMESTAMP '2023-13-16"),
    ("a.csv", AZ + GOOD_AZ + "2023-11-16 18:15:45.0000000,1,2\n", 3, "goes backwards"),
    ("a.csv", AZ + GOOD_AZ + "2023-11-16 18:15:47.0000000,0,2\n", 3, "prompt length 0 tokens"),
    ("g.csv", GEN + "1,1,1\n-1.0,10,20\n", 3, "goes backwards"),
    ("g.csv", GEN + "-1.0,10,20\n2,1,1\n", 2, "negative arrival time"),
    ("g.csv", GEN + "1,1,1\n0.5,10,20\n", 3, "goes backwards"),
    ("g.csv", GEN + "1,1,1\nnan,10,20\n", 3, "arrival time is nan"),
    ("g.csv", GEN + "1,1,1\ninf,10,20\n", 3, "arrival time is inf"),
    ("g.csv", GEN + "1,1,1\n2,10,-3\n", 3, "output length -3 tokens"),
    ("g.csv", GEN + "1,1,1\n2,10,2.5\n", 3, "output_tokens '2.5' is not a"),
    ("g.csv", GEN + f"1,1,1\n2,{MAX_TOKENS + 1},5\n", 3, "is absurd"),
    ("g.csv", GEN.strip() + ",domain\n1,1,1,x\n2,3,4,\n", 3, "empty domain label"),
    ("g.csv", GEN + '1,1,1\n2,"3\n', 3, "expected 3 fields, got 2"),
    ("b.csv", "Timestamp,Request tokens,Response tokens\n1,1,1\n0,5,5\n", 3, "goes backwards"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 5}\n{"timest', 2, "bad JSON"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 5}\n[1]\n', 2, "got list"),
    ("m.jsonl", '{"timestamp": 9, "input_length": 5, "output_length": 5}\n{"timestamp": 1}', 2, ""),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 5}\n\n{}\n', 3, "missing"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 0}\n', 1, "output length 0"),
    ("m.jsonl", '{"timestamp": NaN, "input_length": 5, "output_length": 2}\n', 1, "is nan"),
    ("m.jsonl", '{"timestamp": "0", "input_length": 5, "output_length": 2}\n', 1, "not a number"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5.5, "output_length": 2}\n', 1, "not a whole"),
    ("m.jsonl", '{"timestamp": 0, "input_length": true, "output_length": 2}\n', 1, "not a whole"),
    ("g.jsonl", '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 2, "domain": 3}', 1, "str"),
    ("g.jsonl", '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 2}\n'
     '{"arrival_s": 1, "prompt_tokens": 5, "output_tokens": 2, "domain": "x"}', 2, "every line"),
]  # fmt: skip


@pytest.mark.parametrize("name, text, line, fragment", BAD_ROWS)
def test_bad_row_stops_with_file_and_line(tmp_path, name, text, line, fragment):
    path = write(tmp_path, name, text)
    with pytest.raises(InputError) as err:
        read(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, text, line, fragment", BAD_ROWS)
def test_bad_row_is_skipped_and_counted(tmp_path, name, text, line, fragment):
    w = open_workload(WorkloadSpec(str(write(tmp_path, name, text)), skip_bad_rows=True))
    got = list(w)
    assert w.stats.bad_rows_skipped == 1
    assert w.stats.rows_read == w.stats.requests + 1 == len(got) + 1


def test_skipping_keeps_time_order_against_the_last_good_row(tmp_path):
    text = GEN + "1,1,1\n5,1,1\n3,1,1\n4,1,1\n6,1,1\n"
    w = open_workload(WorkloadSpec(str(write(tmp_path, "g.csv", text)), skip_bad_rows=True))
    assert [r.arrival_s for r in w] == [1.0, 5.0, 6.0]
    assert w.stats.bad_rows_skipped == 2


BAD_FILES = [  # (file name, bytes, message fragment): the file itself is bad, skip or not
    ("empty.csv", b"", "empty trace file"),
    ("blank.csv", b"\n  \n", "empty trace file"),
    ("header.csv", GEN.encode(), "header but no data rows"),
    ("h.csv", b"time,prompt,output\n1,2,3\n", "unrecognised trace header"),
    ("h.csv", b"arrival_s,prompt_tokens\n1,2\n", "unrecognised trace header"),
    ("h.csv", b"arrival_s,prompt_tokens,output_tokens,prompt_tokens\n", "duplicate column"),
    ("h.jsonl", b'{"timestamp": 0, "input_length": 5}\n', "unrecognised trace header"),
    ("h.jsonl", b"timestamp,input_length,output_length\n", "expected a JSON object"),
    ("h.jsonl", b'{"timestamp": 0,\n', "bad JSON"),
    ("h.jsonl", b"[1, 2]\n", "expected a JSON object"),
    ("latin1.csv", GEN.encode() + b"1,2,3\n\xff\xfe,1,1\n", "not UTF-8 text"),
]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("name, data, fragment", BAD_FILES)
def test_bad_file_always_stops(tmp_path, name, data, fragment, skip):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=fragment) as err:
        read(path, skip_bad_rows=skip)
    assert str(err.value).startswith(str(path))


def test_missing_file_and_directory_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read trace: No such file"):
        open_workload(WorkloadSpec(str(tmp_path / "nope.csv")))
    with pytest.raises(InputError, match="cannot read trace"):
        open_workload(WorkloadSpec(str(tmp_path)))


def test_unknown_format_is_an_input_error():
    with pytest.raises(InputError, match="unknown trace format 'parquet'"):
        WorkloadSpec(str(DATA / "generic_tiny.csv"), format="parquet")
    with pytest.raises(InputError, match="unknown trace format"):
        inspect_trace(str(DATA / "generic_tiny.csv"), "parquet")


def test_header_is_checked_eagerly_rows_lazily(tmp_path):
    path = write(tmp_path, "g.csv", GEN + "1,1,1\n0,1,1\n")
    w = open_workload(WorkloadSpec(str(path)))  # the bad row is not read yet
    with pytest.raises(InputError, match=":3: "):
        list(w)


def test_limit_and_window_stop_reading_before_later_bad_rows(tmp_path):
    path = write(tmp_path, "g.csv", GEN + "1,1,1\n2,1,1\n9,1,1\nbad\n")
    assert len(read(path, limit=2)) == 2
    assert len(read(path, duration_s=5.0)) == 2


# ---- the real traces ------------------------------------------------------------------------

real = pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/traces not present")


@real
@pytest.mark.parametrize(
    "name, count, domain",
    [
        ("azure_llm_2023_conv.csv", 19_366, "chat"),
        ("azure_llm_2023_code.csv", 8_819, "code"),
        ("mooncake_conversation_trace.jsonl", 12_031, "chat"),
        ("mooncake_synthetic_trace.jsonl", 3_993, "chat"),
    ],
)
def test_real_trace_counts(name, count, domain):
    w = open_workload(WorkloadSpec(str(TRACES / name)))
    n, last, domains = 0, 0.0, set()
    for r in w:
        assert r.id == n and r.arrival_s >= last
        n, last = n + 1, r.arrival_s
        domains.add(r.domain)
    assert n == count == w.stats.rows_read == w.stats.requests
    assert domains == {domain}
    assert w.stats.bad_rows_skipped == w.stats.failed_requests == 0


@real
def test_real_azure_spans_and_mooncake_spans():
    conv = read(TRACES / "azure_llm_2023_conv.csv")
    assert conv[-1].arrival_s == pytest.approx(3501.72, abs=0.01)
    code = read(TRACES / "azure_llm_2023_code.csv")
    gaps = [b.arrival_s - a.arrival_s for a, b in zip(code, code[1:], strict=False)]
    assert max(gaps) == pytest.approx(217.17, abs=0.01)  # the longest idle gap
    moon = read(TRACES / "mooncake_conversation_trace.jsonl")
    assert len({r.arrival_s for r in moon}) < len(moon) / 5  # bucketed: many share a time


# ---- through the CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("g.csv", GEN + "1,1,1\n0,1,1\n", "g.csv:3: arrival time goes backwards"),
        ("a.csv", AZ + GOOD_AZ + "2023-11-16 18:15:47.0,x,20\n", "a.csv:3: ContextTokens 'x'"),
        ("h.csv", "time,prompt,output\n1,2,3\n", "h.csv:1: unrecognised trace header"),
        ("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 5}\n{', "m.jsonl:2: bad"),
        ("e.csv", "", "e.csv: empty trace file"),
    ],
)
def test_cli_reports_bad_trace_in_one_line(tmp_path, capsys, name, text, where):
    from runner.cli import main

    path = write(tmp_path, name, text)
    assert main(["replay", "--trace", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spectune: error: ") and where in err
