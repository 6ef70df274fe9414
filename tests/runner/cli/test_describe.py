"""The export summary names what the engine runs: exact, the same spec under the engine's own
planner, or a different (nearest) spec."""

from pathlib import Path

from runner.cli.text import describe


def _manifest(tuned: str, exported: str, exact: bool) -> dict:
    return {"format": "vllm", "files": ["speculative_config.json"], "exact": exact,
            "tuned_policy": tuned, "exported_policy": exported}  # fmt: skip


def test_exact() -> None:
    text = describe(Path("out"), _manifest("fixed:k=2", "fixed:k=2", True))
    assert "exact: fixed:k=2" in text and "cannot" not in text


def test_same_spec_not_exact_is_not_called_inexpressible() -> None:
    text = describe(Path("out"), _manifest("dspark:lag=2", "dspark:lag=2", False))
    assert "cannot express" not in text and "nearest" not in text
    assert "same policy, not the same planner: dspark:lag=2" in text


def test_different_spec_names_both() -> None:
    text = describe(Path("out"), _manifest("dspark:lag=2", "batch_table:ks=3", False))
    assert "cannot express dspark:lag=2" in text and "nearest: batch_table:ks=3" in text
