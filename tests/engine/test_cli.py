"""CLI contracts of train/decode/evaluate: no torch at start-up, one-line user errors, and (with
the committed checkpoints) greedy speculative output equal to plain greedy output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner.cli import main

pytest.importorskip("torch")

from engine import checkpoint  # noqa: E402

HAVE_CHECKPOINTS = all(
    checkpoint.path_of(n).exists() for n in ("target", "dspark", "dflash", "ar", "mtp1")
)


@pytest.mark.parametrize("command", ["train", "decode", "evaluate"])
def test_help_does_not_import_torch(command):
    code = (
        "import sys; from runner.cli import build_parser; "
        f"build_parser({command!r}); build_parser(None); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["decode", "--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["decode", "--prompt", "x", "--temperature", "-1"], "--temperature"),
        (["decode", "--prompt", "x", "--device", "tpu"], "--device"),
        (["train", "drafter"], "--kind"),
        (["train", "drafter", "--kind", "eagle"], "unknown drafter"),
        (["evaluate", "--domains", "poetry"], "--domains"),
        (["evaluate", "--drafters", "nosuch"], "no checkpoint"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # refused by argparse (bounded option types)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune: error:") and message in err and err.count("\n") == 1


@pytest.mark.skipif(not HAVE_CHECKPOINTS, reason="committed checkpoints not present")
def test_oracle_policy_is_refused(capsys):
    argv = ["decode", "--prompt", "x", "--policy", "clairvoyant", "--max-new-tokens", "4"]
    assert main(argv) == 2
    assert "realized" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_CHECKPOINTS, reason="committed checkpoints not present")
@pytest.mark.parametrize(
    "prompt",
    ["def parse(self, text):\n    ", "The import statement\n", "a = 17\nb = 42\nc = a * b = "],
)
def test_greedy_dspark_equals_plain(prompt, capsys):
    outs = []
    for drafter in ("dspark", "none"):
        argv = ["decode", "--prompt", prompt, "--greedy", "--drafter", drafter]
        assert main([*argv, "--max-new-tokens", "48", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["text"] == outs[1]["text"] and outs[0]["tokens"] == outs[1]["tokens"]
    assert outs[0]["mean_accepted_len"] > 1.0
    assert set(outs[0]) >= {"text", "tokens", "tokens_per_s", "mean_accepted_len", "steps"}
