"""``spectune policies`` and ``spectune audit``: output, JSON, exit codes, bad input."""

from __future__ import annotations

import json

import pytest

from policies.scenarios import SCENARIOS
from runner.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policies_text_and_json(capsys):
    code, out, _ = run(capsys, "policies")
    assert code == 0
    assert "dspark_lagged" in out and "min_verify_len: int = 0" in out
    code, out, _ = run(capsys, "policies", "--json")
    rows = {p["name"]: p for p in json.loads(out)["policies"]}
    assert code == 0
    assert rows["global_sync"]["lossless"] is False
    assert rows["clairvoyant"]["lossless"] is None
    assert {"name": "lag", "type": "int", "default": 2} in rows["dspark_lagged"]["parameters"]
    assert rows["batch_table"]["parameters"][0]["default"] == [8, 32, 128]


def test_audit_acceptance_case(capsys):
    code, out, _ = run(
        capsys, "audit", "--policy", "global_sync", "--scenario", "paper-appendix-a", "--json"
    )
    result = json.loads(out)
    assert code == 3
    assert result["lossless"] is False
    assert result["output_distribution"] == {"A": 0.85, "B": 0.15}
    assert result["target_distribution"] == {"A": 0.7, "B": 0.3}
    assert result["total_variation"] == pytest.approx(0.15)


def test_audit_lossless_policy_over_all_scenarios(capsys):
    code, out, _ = run(capsys, "audit", "--policy", "dspark:min_verify_len=1", "--json")
    result = json.loads(out)
    assert code == 0 and result["lossless"] is True
    assert len(result["scenarios"]) == len(SCENARIOS)
    assert {"target_distribution", "output_distribution", "total_variation"} <= set(result)
    code, out, _ = run(capsys, "audit", "--policy", "dspark", "--scenario", "jagged-pair")
    assert code == 0 and "jagged-pair: lossless" in out and "A|B" in out


def test_audit_all(capsys):
    code, out, _ = run(capsys, "audit", "--all")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert "caught" in lines["global_sync"]
    assert "FAIL" not in out
    code, out, _ = run(capsys, "audit", "--all", "--json", "--scenario", "paper-appendix-a")
    result = json.loads(out)
    assert code == 0 and result["lossless_claims_hold"] is True
    verdicts = {p["policy"].split(":")[0]: p["verdict"] for p in result["policies"]}
    assert verdicts["global_sync"] == "caught" and verdicts["dspark"] == "ok"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "--policy", "nope"], "unknown policy 'nope'"),
        (["audit", "--policy", "dspark:bogus=1"], "has no parameter 'bogus'"),
        (["audit", "--policy", "dspark:min_verify_len=x"], "is not a valid int"),
        (["audit", "--policy", "dspark:min_verify_len"], "expected key=value"),
        (["audit", "--policy", "dspark", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["audit"], "one of the arguments --policy --all is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) if argv == ["audit"] else _no_raise() as caught:
        code = main(argv)
    if caught is not None and hasattr(caught, "value"):
        code = caught.value.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("spectune: error:") and message in err and err.count("\n") == 1


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
