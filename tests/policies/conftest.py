"""Policy-test fixtures: cost models built in code, and the demo plugin on ``sys.path``.

The conformance suite must cover third-party policies too, so the demo plugin package
(tests/policies/plugin.py) is written to a temporary folder and put on ``sys.path`` when this
folder is collected — before test parametrisation reads the registry — and the registry is told
to rescan the ``spectune.policies`` entry points. It stays registered for the session.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from policies import registry
from profiles.cost import CostModel
from tests.policies.plugin import write_plugin

_PLUGIN_ROOT = Path(tempfile.mkdtemp(prefix="spectune-plugin-"))
write_plugin(_PLUGIN_ROOT, "demo_plugin")
sys.path.insert(0, str(_PLUGIN_ROOT))
registry._PLUGINS_LOADED = False  # rescan entry points with the plugin on sys.path
atexit.register(shutil.rmtree, _PLUGIN_ROOT, ignore_errors=True)

# A jagged 1D table (padding-bucket cliffs) and an additive table with the same jags.
SPS_TOKENS = [1, 8, 16, 17, 32, 33, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
SPS_VALUES = [80, 79, 78, 70, 69, 62, 60, 55, 45, 30, 18, 10, 5.2, 2.7]


def jagged_sps() -> CostModel:
    return CostModel.from_sps_table(SPS_TOKENS, SPS_VALUES, source="analytic: test table")


def jagged_additive() -> CostModel:
    return CostModel.additive(
        bias_seconds=0.004,
        bs_probes=[1, 64, 512],
        alpha_seconds=[0.0005, 0.002, 0.01],
        m_probes=SPS_TOKENS,
        theta_seconds=[1.0 / v - 0.004 for v in SPS_VALUES],
        source="analytic: test table",
    )
