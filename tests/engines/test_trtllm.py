"""TensorRT-LLM judges the trtllm exports through its validator rules (``trtllm_rules``: its
package cannot be installed here, so the rules are transcribed with file and commit).

Every export × policy × profile passes ``validate``, and at every batch size the server can
reach TensorRT-LLM's lookup gives the draft length of the exported policy; the exports the issue
found rejected (``max_concurrency`` beside a schedule, first value != ``max_draft_len``) are
rejected by the rules."""

from __future__ import annotations

import pytest
import yaml

from policies import make_policy
from tests.engines import trtllm_rules
from tests.engines.conftest import POLICIES, PROFILES


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("spec", POLICIES)
def test_trtllm_accepts_every_export_and_runs_the_exported_policy(exports, profile, spec):
    d, m, cfg = exports[profile, spec, "trtllm"]
    argv = m["launch"]["argv"]
    assert argv[:2] == ["trtllm-serve", "$MODEL"]
    assert argv[argv.index("--max_batch_size") + 1] == str(cfg.max_concurrency)
    near = make_policy(m["exported_policy"])
    if "speculative_config.yaml" not in m["files"]:
        assert near.name == "none"
        return
    doc = yaml.safe_load((d / "speculative_config.yaml").read_text())
    sc = trtllm_rules.validate(doc["speculative_config"])
    for r in range(1, cfg.max_concurrency + 1):
        want = min(near.k, cfg.gamma) if near.name == "fixed" else near.k_for(r)
        assert trtllm_rules.draft_len(sc, r) == want, r
    if m["exact"]:
        tuned = cfg.policy()
        for r in range(1, cfg.max_concurrency + 1):
            ref = tuned.k_for(r) if tuned.name == "batch_table" else tuned.k
            assert trtllm_rules.draft_len(sc, r) == min(ref, cfg.gamma), r


@pytest.mark.parametrize("spec", [
    {"max_draft_len": 7, "draft_len_schedule": {8: 7, 40: 1}, "max_concurrency": 40},
    {"max_draft_len": 7, "draft_len_schedule": {8: 6, 40: 1}},
    {"max_draft_len": 3, "draft_len_schedule": {4: 3, 8: 5}},
    {"decoding_type": "Eagle3", "max_draft_len": 0},
])  # fmt: skip
def test_rules_reject_what_tensorrt_llm_rejects(spec, tmp_path):
    with pytest.raises(ValueError):
        trtllm_rules.validate(spec)
    from profiles.errors import InputError
    from runner.formats import _check_trtllm

    with pytest.raises(InputError):  # the fast first check agrees
        _check_trtllm({"speculative_config": spec}, "x.yaml")


def test_dspark_has_no_dynamic_draft_length_in_tensorrt_llm(exports):
    m = exports[PROFILES[0], "dspark_lagged", "trtllm"][1]
    assert "DSPARK" not in trtllm_rules.DYNAMIC_MODES
    assert not m["exact"] and m["exported_policy"].startswith("batch_table")
