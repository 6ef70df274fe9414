"""``bench/policy_overhead.py --quick`` runs and writes only its own BENCHMARKS.md section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_its_section(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(
        "# Benchmarks\n\n## Other\n\nkeep me\n\n## Policy overhead\n\nold\n\n## Later\n\nme too\n"
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "policy_overhead.py"), "--quick", "--write", str(md)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert "keep me" in text and "me too" in text and "\nold\n" not in text
    assert text.count("## Policy overhead") == 1
    assert "| dspark | 5 |" in text and "### Cost curve `flat`" in text
