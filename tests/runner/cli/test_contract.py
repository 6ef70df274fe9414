"""The bad-input contract by root cause (issue #12): one test or more per cause and input path.

The broad sweep over every subcommand is ``tests/test_hostile.py``; these tests pin each fixed
cause at its boundary: output paths (``runner/paths.py``), streams read once
(``simulator/traces.py``), bounded YAML/JSON (``profiles/documents.py``), finite JSON output,
policy specs, scheduler documents and the CLI's OS-error boundary.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from profiles.documents import json_line, parse_json, parse_yaml
from profiles.errors import InputError
from runner.cli import main
from runner.paths import LOCK, MARKER, hold, out_dir, out_file

ROOT = Path(__file__).resolve().parents[3]
ROWS = 300
TRACE = "arrival_s,prompt_tokens,output_tokens\n" + "".join(
    f"{i * 0.01:.2f},{16 + i % 7},{4 + i % 3}\n" for i in range(ROWS)
)


# ---- output paths --------------------------------------------------------------------------------


def test_out_file_refuses_empty_under_a_file_a_directory_and_an_existing_file(tmp_path):
    (tmp_path / "f").write_text("x")
    for bad, match in (("", "empty path"), (tmp_path / "f" / "x.yaml", "is a file"),
                       (tmp_path, "is a directory"), (tmp_path / "f", "exists")):  # fmt: skip
        with pytest.raises(InputError, match=match):
            out_file(bad)
    assert (tmp_path / "f").read_text() == "x"
    assert out_file(tmp_path / "f", force=True) == tmp_path / "f"
    with pytest.raises(InputError, match="does not exist"):
        out_file(tmp_path / "new" / "deep.yaml")
    assert not (tmp_path / "new").exists()


def test_out_dir_claims_empty_dirs_resumes_its_own_and_refuses_foreign_ones(tmp_path):
    d = out_dir(tmp_path / "run", "replay")
    assert (d / MARKER).read_text().strip() == "replay"
    (d / "summary.json").write_text("{}")
    assert out_dir(d, "replay") == d  # an earlier replay's directory: replaced as documented
    with pytest.raises(InputError, match="earlier `spectune tune`"):
        out_dir(d, "tune")  # another command's directory is foreign
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        out_dir(foreign, "replay")
    assert out_dir(foreign, "replay", force=True) == foreign
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        out_dir(tmp_path / "file", "replay")
    with pytest.raises(InputError, match="is a file"):
        out_dir(tmp_path / "file" / "sub", "replay")
    with pytest.raises(InputError, match="empty path"):
        out_dir("", "replay")
    old_tune = tmp_path / "old"
    old_tune.mkdir()
    (old_tune / "run.yaml").write_text("a: 1\n")
    assert out_dir(old_tune, "tune", known=("run.yaml",)) == old_tune  # written before markers


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_paths_refuse_a_directory_without_write_permission(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="permission"):
            out_file(ro / "x.yaml")
        with pytest.raises(InputError, match="permission"):
            out_dir(ro / "sub", "replay")
    finally:
        ro.chmod(0o700)


def test_lock_names_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    with hold(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match=f"pid {os.getpid()}"), hold(tmp_path):
            pass
    assert not (tmp_path / LOCK).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(f"{dead.pid}\n")
    with hold(tmp_path):  # the stale lock of an exited process is taken over
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())


def test_replay_into_a_foreign_directory_needs_force_and_leaves_files_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep")
    argv = ["replay", "--quiet", "--limit", "5", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (tmp_path / "notes.txt").read_text() == "keep"
    assert main(argv) == 0  # now an earlier replay's directory: replaced as documented


def test_single_file_out_needs_force_to_replace(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    out.write_text("mine\n")
    sps = tmp_path / "sps.json"
    sps.write_text(json.dumps({"sample_batch_tokens": [1, 8], "sample_steps_per_sec": [50, 40]}))
    assert main(["import", "sglang-sps", str(sps), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "mine\n"


def test_a_full_disk_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["replay", "--quiet", "--limit", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spectune: error: ") and "No space" in err[0]


def test_stdout_on_a_full_disk_is_one_line_exit_2():
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "runner.cli", "replay", "--quiet", "--limit",
                            "3", "--rate-scale", "0.05"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["spectune: error: output: No space left on device"]


# ---- traces are read once ------------------------------------------------------------------------


def _summary(argv: list[str], stdin: bytes | None = None) -> dict:
    p = subprocess.run([sys.executable, "-m", "runner.cli", *argv, "--json", "--quiet"],
                       input=stdin, capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_a_piped_trace_loses_no_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(TRACE)
    from_file = _summary(["replay", "--trace", str(path)])
    piped = _summary(["replay", "--trace", "/dev/stdin"], stdin=TRACE.encode())
    assert from_file["requests"] == piped["requests"] == ROWS
    assert piped["rows_read"] == ROWS
    assert piped["throughput_tok_s"] == from_file["throughput_tok_s"]


def test_a_fifo_and_an_os_pipe_stream_every_row_in_one_open(tmp_path):
    from simulator.workload import WorkloadSpec, open_workload

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write(target) -> None:
        with open(target, "w") as f:
            f.write(TRACE)

    threading.Thread(target=write, args=(fifo,), daemon=True).start()
    w = open_workload(WorkloadSpec(source=str(fifo)))
    assert len(list(w)) == ROWS and len(list(w)) == ROWS  # two passes, one read of the FIFO
    r, wfd = os.pipe()
    threading.Thread(target=write, args=(wfd,), daemon=True).start()
    try:
        w = open_workload(WorkloadSpec(source=f"/dev/fd/{r}"))
        assert len(list(w)) == ROWS
    finally:
        os.close(r)


def test_tune_refuses_a_pipe_it_would_have_to_reread(tmp_path):
    p = subprocess.run([sys.executable, "-m", "runner.cli", "tune", "--quick", "--quiet",
                        "--trace", "/dev/stdin", "--out", str(tmp_path / "t")],
                       input=TRACE.encode(), capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.returncode == 2
    assert b"save it to a file" in p.stderr


# ---- bounded documents ---------------------------------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(("text", "match"), [
    (LAUGHS, "aliases are expanded"),
    ("a: &a [*a]\n", "recursive alias"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper"),
    ("a: [unclosed\n", "invalid YAML"),
])  # fmt: skip
def test_parse_yaml_refuses_bombs_cycles_and_depth(text, match):
    assert len(LAUGHS) < 600
    with pytest.raises(InputError, match=match):
        parse_yaml(text, "f.yaml")


def test_parse_yaml_keeps_ordinary_aliases():
    assert parse_yaml("a: &x [1, 2]\nb: *x\n", "f.yaml") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize(("text", "match"), [
    ('{"x": NaN}', "NaN"),
    ('{"x": Infinity}', "Infinity"),
    ('{"x": 1e999}', "out of range"),
    ('{"x": 1' + "0" * 5000 + "}", "digits"),
    ("[" * 100_000 + "]" * 100_000, "nesting deeper"),
    ('{"x": ', "invalid JSON"),
])  # fmt: skip
def test_parse_json_refuses_non_numbers_huge_numbers_and_depth(text, match):
    with pytest.raises(InputError, match=match):
        parse_json(text, "f.json")


def test_json_output_never_holds_nan_or_infinity():
    text = json_line({"a": float("nan"), "b": [float("inf"), 1.5], "c": (float("-inf"),)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": [None]}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("field", ["request_sigma", "token_sigma"])
@pytest.mark.parametrize("value", [float("nan"), -1.0, True, "x", 1e9])
def test_acceptance_fields_are_checked_one_by_one(tmp_path, field, value):
    import yaml

    from profiles.builtin import load_acceptance
    from profiles.store import acceptance_to_dict, read_acceptance

    doc = acceptance_to_dict(load_acceptance("paper:qwen3-8b-dspark"))
    doc[field] = value
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match=field) as info:
        read_acceptance(path)
    assert str(path) in str(info.value)


# ---- policy specs and scheduler documents --------------------------------------------------------


def test_policy_spec_with_a_duplicate_key_is_an_error():
    from policies import make_policy

    with pytest.raises(InputError, match="'k' given twice"):
        make_policy("fixed:k=1,k=2")
    with pytest.raises(InputError, match="not a valid float"):
        make_policy("dspark_lagged:survival_eps=nan")


def test_a_draft_length_beyond_gamma_is_an_error_not_a_clamp(capsys):
    from policies import make_policy
    from policies.registry import check_gamma

    check_gamma(make_policy("fixed:k=7"), 7)
    with pytest.raises(InputError, match="k=1000 exceeds gamma 7"):
        check_gamma(make_policy("fixed:k=1000"), 7)
    with pytest.raises(InputError, match="max_verify_len=9 exceeds gamma 7"):
        check_gamma(make_policy("dspark:max_verify_len=9"), 7)
    assert main(["replay", "--quiet", "--limit", "3", "--policy", "fixed:k=1000"]) == 2
    assert "exceeds gamma" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["clairvoyant", "global_sync"])
def test_lossy_or_oracle_policies_are_never_written_or_loaded_as_schedulers(tmp_path, name):
    import dataclasses

    import yaml

    from runner.scheduler import load_scheduler, write_scheduler
    from tests.runner.test_scheduler import make_config

    cfg = dataclasses.replace(make_config(), policy_name=name, params=())
    with pytest.raises(InputError, match="never exported"):
        write_scheduler(tmp_path / "s.yaml", cfg)
    good = tmp_path / "good.yaml"
    write_scheduler(good, make_config())
    doc = yaml.safe_load(good.read_text())
    doc["policy"] = {"name": name, "params": {}}
    doc.pop("verify", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match="never exported"):
        load_scheduler(bad)


# ---- numeric and empty CLI values ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["replay", "--rate-scale", "nan"],
    ["replay", "--max-concurrency", "1000000000"],
    ["replay", "--limit", ""],
    ["replay", "--trace", ""],
    ["tune", "--out", "x", "--rounds", "-1"],
    ["tune", "--out", "x", "--concurrency", ""],
    ["tune", "--out", "x", "--workers", str((os.cpu_count() or 1) + 1)],
    ["demo", "--num-requests", "-1"],
])  # fmt: skip
def test_bad_numbers_and_empty_values_fail_before_any_work(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spectune: error: ")
    assert not (tmp_path / "x").exists()


# ---- a γ mismatch is an error or a stated note, never a silent clamp ---------------------------


def test_evaluate_states_each_drafter_run_below_gamma_and_refuses_a_gamma_none_reaches():
    pytest.importorskip("torch")
    from runner.cli.commands.evaluate import _blocks, _clips

    blocks = _blocks(["ar", "mtp1"])
    assert blocks == {"ar": 7, "mtp1": 1}
    notes = _clips(7, blocks)
    assert notes == ["note: mtp1 drafts 1 token(s) per step, so it is evaluated at gamma 1, not 7"]
    assert _clips(1, blocks) == []
    with pytest.raises(InputError, match="--gamma 8 exceeds every drafter's block"):
        _clips(8, blocks)
