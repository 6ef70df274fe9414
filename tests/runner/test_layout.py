"""The runner's shape (issue #16): a library that neither parses arguments nor prints, a CLI
beside it that only the CLI imports, short command functions, and ``tune`` callable without it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from runner.executors import LocalExecutor
from runner.report import PolicyResult, TuneReport
from runner.scheduler import SLA, load_scheduler
from runner.tune import TuneConfig, tune
from simulator.server import ServerConfig
from simulator.workload import WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "runner" / "cli"
LIMIT = 40  # lines


def _modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_library_neither_parses_arguments_nor_prints():
    for path, tree in _modules(ROOT / "runner"):
        if CLI in path.parents:
            continue
        assert "argparse" not in _imports(tree), path
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "print"]  # fmt: skip
        assert not calls, f"{path}:{calls[0].lineno} prints"


def test_only_the_cli_imports_the_cli():
    for package in ("runner", "simulator", "profiles", "policies", "engine", "bench"):
        for path, tree in _modules(ROOT / package):
            if CLI in path.parents:
                continue
            bad = [m for m in _imports(tree) if m == "runner.cli" or m.startswith("runner.cli.")]
            assert not bad, f"{path} imports {bad}"


def test_command_functions_fit_on_a_screen():
    long = set()
    for path, tree in _modules(CLI / "commands"):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > LIMIT:
                long.add((path.stem, node.name))
    assert not long, f"command functions over {LIMIT} lines: {sorted(long)}"


def test_tune_is_a_library_call(tmp_path):
    from profiles.builtin import load_acceptance, load_cost

    cost, acceptance = load_cost("builtin:h100-8b"), load_acceptance("paper:qwen3-8b-dspark")
    cfg = TuneConfig(policies=("fixed:k=1", "fixed"), sla=(SLA("tps_per_user_p50", ">=", 150),),
                     workload=WorkloadSpec("builtin:azure-conv-like"), profile="builtin:h100-8b",
                     acceptance="paper:qwen3-8b-dspark", server=ServerConfig(gamma=7),
                     loads=(2.0, 8.0), requests=16, per_user=2, rounds=0, bisect=0)  # fmt: skip
    executor = LocalExecutor(1)
    try:
        rep = tune(cfg, cost, acceptance, tmp_path, executor)
    finally:
        executor.close()
    assert isinstance(rep, TuneReport) and set(rep.policies) == {"fixed:k=1", "fixed"}
    assert all(isinstance(r, PolicyResult) for r in rep.policies.values())
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(rep.to_dict())
    )
    assert rep.best is not None and rep.files[0] == "best.yaml"
    assert load_scheduler(tmp_path / "best.yaml").policy().spec == rep.policies[rep.best].best
    assert rep.points["simulated"] == rep.points["total"] > 0
