"""The README's own ```bash command blocks, extracted from README.md and run as a user would:
under a pseudo-terminal (progress bars drawn) and piped (no bars), each must exit 0 (or the code
the README documents) without a traceback. So the docs cannot drift from what runs.

Small settings are added where a block would be long, and only there: ``demo`` and ``tune`` get
``--quick``; a trace replay without ``--limit`` gets ``--limit 300``; a builtin-workload replay
without ``--num-requests`` gets ``--num-requests 200``; the live replay runs 6 requests. The
``...`` of a README line stands for the previous command's arguments. Files the profile block
names (``scrape.prom``, ``sps_table.json``, ``steps.csv``, ``rounds.npz``, ``ttft.csv``,
``sts.json``, ``shard.0.pt``) are small fixtures
copied from the test data; blocks naming ``../shared/traces`` skip when the traces are absent.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"
GUARD_S = 3600  # a hang guard only: no assertion depends on how long a command takes
EXIT = {"audit --policy global_sync": 3}  # the README: exit 3 when a policy is not lossless
FIXTURES = {"scrape.prom": "tests/profiles/data/vllm_metrics.prom",
            "sps_table.json": "tests/profiles/data/sglang_sps.json",
            "steps.csv": "tests/profiles/data/cost.csv",
            "rounds.npz": "profiles/data/records-dspark.npz",
            "ttft.csv": "tests/profiles/data/ttft.csv",
            "sts.json": "tests/profiles/data/sglang_sts.json",
            "shard.0.pt": "tests/profiles/data/sglang_sts_shard.0.pt"}  # fmt: skip
# sections whose blocks run for minutes (or tens of seconds) on a shared 2-core machine
SLOW = ("Set-up", "Tuning", "Live", "Replaying", "Profiles")


def readme_blocks() -> list[tuple[str, list[str]]]:
    """(section heading, command lines) of every ```bash block, continuation lines joined."""
    out, section, block = [], "", None
    for line in README.read_text(encoding="utf-8").splitlines():
        if block is None and line.startswith("## "):
            section = line[3:].strip()
        elif block is None and line.strip() == "```bash":
            block = []
        elif block is not None and line.strip() == "```":
            text = "\n".join(block).replace("\\\n", " ")
            out.append((section, [x for x in text.splitlines() if x.strip()]))
            block = None
        elif block is not None:
            block.append(line)
    return out


def plan(lines: list[str]) -> list[tuple[list[str], str | None]]:
    """(argv, reason to skip or None) per command of a block, small settings applied."""
    steps, previous = [], {}
    for line in lines:
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)
            if not argv:
                continue
            if argv[0] in ("python3", ".venv/bin/pip"):
                steps.append((argv, "installs into a venv; the tests run in the installed one"))
                continue
            if argv[:3] == [".venv/bin/python", "-m", "pytest"]:
                steps.append((argv, "the test command itself (checked against .ci/run)"))
                continue
            assert argv[0] in ("spectune", ".venv/bin/spectune"), part
            args = argv[1:]
            if "..." in args:  # the previous command of the same subcommand, plus this line's
                i = args.index("...")
                args = previous[args[0]] + _drop_brackets(args[i + 1 :])
            previous[args[0]] = [a for a in args if a not in ("--resume",)]
            if "ray" in args:
                steps.append((args, "Ray is tested in tests/runner/test_tune.py (a local cluster)"))
                continue
            steps.append((_small(args), None))
    return steps


def _drop_brackets(args: list[str]) -> list[str]:
    out, inside = [], False
    for a in args:
        inside = inside or a.startswith("[")
        if not inside:
            out.append(a)
        inside = inside and not a.endswith("]")
    return out


def _small(args: list[str]) -> list[str]:
    cmd, has = args[0], set(args)
    if cmd in ("demo", "tune") and "--quick" not in has:
        args = [*args, "--quick"]
    if cmd == "replay" and "--backend" in has and "--num-requests" in has:
        i = args.index("--num-requests")
        args = [*args[: i + 1], "6", *args[i + 2 :]]
    elif cmd == "replay" and "--trace" in has and "--limit" not in has:
        args = [*args, "--limit", "300"]
    elif cmd == "replay" and "--trace" not in has and "--num-requests" not in has:
        args = [*args, "--num-requests", "200"]
    return args


def _cases():
    for n, (section, lines) in enumerate(readme_blocks()):
        slow = section.startswith(SLOW)
        for mode in ("pty", "pipe"):
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(
                section,
                lines,
                mode,
                marks=marks,
                id=f"{n}-{re.sub(r'[^a-z]+', '-', section.lower())}-{mode}",
            )


@pytest.mark.parametrize(("section", "lines", "mode"), list(_cases()))
def test_readme_block(section, lines, mode, tmp_path):
    text = " ".join(lines)
    if "../shared/traces" in text and not (SHARED / "traces").is_dir():
        pytest.skip("needs ../shared/traces")
    if ("--backend live" in text or "fidelity" in text or "demo" in text) and not _has_torch():
        pytest.skip("needs the engine extra (torch)")
    cwd = tmp_path / "repo"  # ../shared resolves as from a checkout beside shared/
    cwd.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    for name, src in FIXTURES.items():
        shutil.copy(ROOT / src, cwd / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    ran = 0
    for args, reason in plan(lines):
        if reason is not None:
            continue
        argv = [sys.executable, "-m", "runner.cli", *args]
        rc, out, err = (_pty if mode == "pty" else _pipe)(argv, cwd, env)
        said = shlex.join(["spectune", *args])
        assert "Traceback" not in out + err, f"{said}\n{out}{err}"
        want = next((code for key, code in EXIT.items() if key in said), 0)
        assert rc == want, f"{said}: exit {rc}\n{out}{err}"
        if mode == "pipe":
            assert "\r" not in err, f"{said}: a progress bar on a pipe"
            if "--json" in args:
                json.loads(out)  # one clean JSON document on stdout
        elif args[0] in ("replay", "tune") and "--quiet" not in args:
            assert ("requests arrived" if args[0] == "replay" else "points:") in out, said
        ran += 1
    assert ran, "every command of the block was skipped"


def test_ci_runs_the_readme_test_command():
    """.ci/run ends with exactly the README's test command, which prints pytest's summary."""
    cmds = [a for _, lines in readme_blocks() for a, _ in plan(lines)]
    readme = next(a for a in cmds if a[:3] == [".venv/bin/python", "-m", "pytest"])
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert shlex.split(ci) == readme
    assert "-qq" not in readme and readme.count("-q") <= 1  # "N passed" stays visible


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _pipe(argv, cwd, env):
    p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=GUARD_S)  # fmt: skip
    return p.returncode, p.stdout, p.stderr


def _pty(argv, cwd, env):
    """Run with stdin, stdout and stderr on a 100x30 pseudo-terminal; (rc, output, '')."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)  # fmt: skip
    os.close(slave)
    chunks, end = [], time.monotonic() + GUARD_S
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
    finally:
        os.close(master)
    rc = proc.wait(timeout=60)
    return rc, b"".join(chunks).decode("utf-8", errors="replace"), ""
