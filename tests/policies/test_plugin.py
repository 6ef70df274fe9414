"""Third-party policies: a package built in tmp_path, found through the ``spectune.policies``
entry-point group by ``importlib.metadata`` (a ``*.dist-info`` on ``sys.path``, no pip), is
listed by ``spectune policies`` and usable by spec, by the auditor and by the CLI; ``tune``
searches its declared parameters and ``export`` writes it exactly or its nearest expressible
policy, saying why."""

from __future__ import annotations

import csv
import json
from importlib.metadata import entry_points

import numpy as np
import pytest

from policies import available, make_policy, registry
from policies.audit import audit_many
from runner.cli import main
from runner.scheduler import load_scheduler
from tests.policies.plugin import write_plugin


@pytest.fixture
def tmp_plugin(tmp_path, monkeypatch):
    """Install the plugin package ``tmp_plugin`` for one test; the registry is restored after."""
    available()  # the builtins registered before the copy (restored with it after)
    write_plugin(tmp_path, "tmp_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    return "tmp_plugin"


def test_entry_point_is_visible_to_importlib_metadata(tmp_plugin):
    names = [ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)]
    assert tmp_plugin in names


def test_plugin_is_listed_and_usable(tmp_plugin, capsys):
    assert tmp_plugin in available()
    assert main(["policies", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["policies"]}
    assert listed[tmp_plugin]["module"] == "spectune_tmp_plugin"
    assert [p["name"] for p in listed[tmp_plugin]["parameters"]] == ["floor", "cap"]
    assert listed[tmp_plugin]["lossless"] is True

    policy = make_policy(f"{tmp_plugin}:floor=0.5,cap=1")
    assert policy(np.array([[0.9, 0.9], [0.4, 0.9]])).tolist() == [1, 0]
    assert all(r.lossless for r in audit_many(policy))
    assert main(["audit", "--policy", f"{tmp_plugin}:cap=3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lossless"] is True


def test_plugin_is_searched_by_tune_and_handled_by_export(tmp_plugin, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--out", str(out), "--policies", f"fixed:k=1,{tmp_plugin}",
                 "--concurrency", "2,8", "--num-requests", "16", "--per-user", "2",
                 "--rounds", "1", "--bisect", "0", "--sla", "tps_per_user_p50>=1", "--quiet",
                 "--no-plots", "--json", "--profile", "builtin:h100-8b",
                 "--acceptance", "paper:qwen3-8b-dspark"]) == 0  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    with open(out / "results.csv", newline="") as f:
        tried = {row["policy"] for row in csv.DictReader(f)}
    mine = {p for p in tried if p.startswith(tmp_plugin)}
    # the coarse grid of both declared parameters, then a refinement round
    assert {f"{tmp_plugin}:floor={f},cap=2" for f in (0.4, 0.6, 0.8)} <= mine
    assert {f"{tmp_plugin}:floor=0.6,cap={c}" for c in (1, 2, 4)} <= mine
    assert s["policies"][tmp_plugin]["settings_tried"] == len(mine) > 5
    assert s["best"] == tmp_plugin  # verifying confident drafts beats MTP-1 here
    cfg = load_scheduler(out / "best.yaml")
    assert cfg.policy().name == tmp_plugin and cfg.verify["lag_steps"] == 0

    assert main(["export", "--from", str(out / "best.yaml"), "--format", "all",
                 "--out", str(tmp_path / "export"), "--json"]) == 0  # fmt: skip
    manifests = {m["format"]: m for m in json.loads(capsys.readouterr().out)}
    assert manifests["spectune"]["exact"] is True
    for fmt in ("sglang", "vllm", "trtllm", "sglang-adaptive"):
        m = manifests[fmt]  # a confidence-reading plugin: the nearest policy, and why
        assert m["exact"] is False and not m["exported_policy"].startswith(tmp_plugin), fmt
        assert any(tmp_plugin in note for note in m["notes"]), fmt
        assert m["approximation"]["simulated"] is True, fmt


def test_plugin_is_gone_after_the_test():
    assert "tmp_plugin" not in available()
