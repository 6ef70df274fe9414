"""Golden files: a small fixed tune, its ``best.yaml``, every export and the demo, byte for byte.

The files under ``tests/runner/golden/`` were produced by the commands below on the tree before
the runner was split into a library and a CLI (issue #16); this test reruns the same commands
and compares every file. Nothing in them is wall-clock (``results.csv`` and ``summary.json``
carry no ``wall`` fields; ``points.jsonl`` does and is not compared). When a change is *meant*
to alter behaviour, regenerate with ``SPECTUNE_REGEN_GOLDEN=1 pytest tests/runner/test_golden.py``
and say why in the commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.cli import main

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parent / "golden"
RECORDS = Path(__file__).resolve().parents[2] / "profiles" / "data" / "records-dspark.npz"
SMALL = ["--num-requests", "32", "--per-user", "2", "--rounds", "1", "--bisect", "1", "--quiet",
         "--workers", "1", "--seed", "3"]  # fmt: skip
H100 = ["--profile", "builtin:h100-8b", "--acceptance", "paper:qwen3-8b-dspark"]

# case -> commands run in order in one directory (stdout of each kept as NAME.out); the
# calibrated case tunes without `fixed` so that its best is a DSpark policy and the export
# carries the calibrated STS temperatures (on the 2026-12-04 profile fixed:k=3 ties it)
CASES = {
    "h100": [
        ("tune", ["tune", "--out", "tune", "--concurrency", "4,32",
                  "--policies", "fixed:k=1,fixed,dspark_lagged,clairvoyant",
                  "--sla", "tps_per_user_p50>=150", *SMALL, *H100]),
        ("export", ["export", "--from", "tune/best.yaml", "--format", "all", "--out", "export"]),
    ],
    "calibrated": [
        ("calibrate", ["calibrate", "--records", str(RECORDS), "--out", "calib.yaml",
                       "--no-plot"]),
        ("tune", ["tune", "--out", "tune", "--policies", "fixed:k=1,dspark_lagged",
                  "--concurrency", "2,8", "--sla", "tps_per_user_p50>=10", "--no-plots",
                  "--acceptance", "records:data:records-dspark.npz?temps=calib.yaml", *SMALL]),
        ("export", ["export", "--from", "tune/best.yaml", "--format", "all", "--out", "export"]),
    ],
    "demo": [
        ("demo", ["demo", "--quick", "--quiet", "--workers", "1", "--out", "run",
                  "--num-requests", "60"]),
    ],
}  # fmt: skip
SKIP = {".spectune", "points.jsonl"}  # a marker; the point stream carries wall-clock times
SKIP_SUFFIX = (".png",)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in SKIP and not p.name.endswith(SKIP_SUFFIX)
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_are_byte_identical_to_the_golden_files(case, tmp_path, monkeypatch, capsys):
    work = tmp_path / case
    work.mkdir()
    monkeypatch.chdir(work)
    for name, argv in CASES[case]:
        assert main(argv) == 0, name
        (work / f"{name}.out").write_text(capsys.readouterr().out, encoding="utf-8")
    got, golden = _files(work), GOLDEN / case
    if os.environ.get("SPECTUNE_REGEN_GOLDEN"):
        for rel, data in got.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_bytes(data)
    want = _files(golden)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], f"{case}/{rel} differs from the golden file"
