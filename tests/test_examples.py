"""Every script in examples/ runs and prints exactly its golden ``.out`` file (SimPy-docs style)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if p.with_suffix(".out").exists())


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_output_is_golden(script: Path):
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=EXAMPLES.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == script.with_suffix(".out").read_text()


def test_every_example_has_a_golden_output():
    assert SCRIPTS and len(SCRIPTS) == len(list(EXAMPLES.glob("*.py")))
