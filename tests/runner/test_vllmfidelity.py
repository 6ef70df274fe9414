"""``fidelity --against vllm`` without a server: the harness's plumbing with a stand-in live side
(the simulator itself, so a fixed-K cell's prediction must equal its "live" run), the policy-list
parse, and the command's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies import make_policy
from profiles.acceptance import ParametricAcceptance
from profiles.builtin import load_cost
from runner.cli import main
from runner.cli.vllm import policies_of
from runner.fidelity import FidelityConfig, report_markdown
from runner.vllmfidelity import DEFAULT_POLICIES, VllmFidelityConfig, VllmFidelityHarness, predict
from simulator.server import ServerConfig

COST = load_cost("builtin:cpu-tiny-additive")
RATES = (0.7, 0.6, 0.5, 0.4)


class _Sim:
    """A stand-in session: 'live' is the simulation priced as the harness prices it."""

    def __init__(self, spec: str, where: Path, seen: list) -> None:
        self.spec, self.where, self.seen = spec, where, seen

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, requests: list, concurrency: int, out: Path) -> dict:
        self.seen.append((self.spec, out.name, concurrency, len(requests)))
        acc = ParametricAcceptance({d: RATES for d in ("chat", "code", "math")}, source="unit")
        s = predict(requests, make_policy(self.spec), COST, acc, ServerConfig(8, gamma=4), 0)
        return {**s, "vllm": {"scrapes": [f"{out}/before", f"{out}/after"]}}


def _harness(seen: list, imports: list, policies=DEFAULT_POLICIES):
    base = FidelityConfig(num_requests=6, max_prompt_tokens=32, max_output_tokens=16,
                          policies=policies, max_concurrency=8)  # fmt: skip
    cfg = VllmFidelityConfig(base=base, warmup_requests=3)

    def imported(after: str, before: str):
        imports.append((Path(after).parent.name, Path(before).parent.name))
        return ParametricAcceptance({"chat": RATES}, source="unit import")

    labels = {"date": "d", "command": "c", "engine": "e"}
    return VllmFidelityHarness(cfg, COST, 4, lambda s, w: _Sim(s, w, seen), imported, labels)


def test_every_cell_is_run_live_and_predicted(tmp_path):
    seen, imports = [], []
    result = _harness(seen, imports).run(tmp_path).to_dict()
    assert [(s[1], s[2]) for s in seen[:4]] == [("warmup", 8), ("light", 0), ("knee", 0),
                                                ("saturated", 0)]  # fmt: skip
    assert len(seen) == 8 and len(result["cells"]) == 6
    # the warm-up sizes the loads; the fixed-K session's first load to its last is the import
    assert imports == [("warmup", "warmup"), ("saturated", "light")]
    for c in result["cells"]:
        if c["policy"].startswith("fixed"):
            assert all(e == pytest.approx(0.0, abs=1e-12) for e in c["rel_error"].values())
    assert "| light | fixed:k=4 |" in report_markdown(result)


def test_the_first_policy_must_be_a_fixed_k():
    with pytest.raises(ValueError, match="first policy must be fixed"):
        _harness([], [], policies=DEFAULT_POLICIES[::-1])


def test_policy_lists_keep_table_specs_whole():
    assert policies_of("fixed:k=4,batch_table:sizes=4;8,ks=4;2,default=2") == DEFAULT_POLICIES
    assert policies_of("fixed:k=1,dspark") == ("fixed:k=1", "dspark")


def test_without_vllm_the_command_names_the_extra(capsys):
    pytest.importorskip("torch")
    from engine import vllm

    if not vllm.missing():
        pytest.skip("vllm is installed here")
    assert main(["fidelity", "--against", "vllm", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spectune: error:") and "vllm" in err[0]


def test_the_report_json_is_plain(tmp_path):
    result = _harness([], []).run(tmp_path).to_dict()
    json.dumps(result)  # every value serialises
