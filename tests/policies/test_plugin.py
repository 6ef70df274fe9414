"""Third-party policies: a package built in tmp_path, found through the ``spectune.policies``
entry-point group by ``importlib.metadata`` (a ``*.dist-info`` on ``sys.path``, no pip), is
listed by ``spectune policies`` and usable by spec, by the auditor and by the CLI."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import numpy as np
import pytest

from policies import available, make_policy, registry
from policies.audit import audit_many
from runner.cli import main
from tests.policies.plugin import write_plugin


@pytest.fixture
def tmp_plugin(tmp_path, monkeypatch):
    """Install the plugin package ``tmp_plugin`` for one test; the registry is restored after."""
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


def test_plugin_is_gone_after_the_test():
    assert "tmp_plugin" not in available()
