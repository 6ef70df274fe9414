"""A tiny third-party policy package, written to disk for the plugin tests.

``write_plugin(root, name)`` creates ``root/<module>/__init__.py`` (a conforming policy) and
``root/<dist>-0.1.0.dist-info/{METADATA,entry_points.txt}`` declaring it in the
``spectune.policies`` entry-point group. Putting ``root`` on ``sys.path`` makes
``importlib.metadata.entry_points`` find it exactly as if it were pip-installed. Its fields
declare their search spaces (``policies.base.searched``), so ``spectune tune`` searches them.
"""

from __future__ import annotations

from pathlib import Path

SOURCE = '''\
"""A third-party policy: verify the leading confident drafts, at most ``cap`` of them."""

from dataclasses import dataclass

import numpy as np

from policies.base import Policy, gamma_bound, searched


@dataclass(frozen=True)
class CappedConfident(Policy):
    """Verify the leading drafts with confidence >= floor, at most ``cap`` of them."""

    floor: float = searched(0.6, (0.4, 0.6, 0.8), 0.0, 1.0)  # confidence a draft needs
    cap: int = searched(2, (1, 2, 4), 1, gamma_bound)  # most drafts verified per request

    name = "{name}"
    reads = frozenset({{"conf"}})
    summary = "demo plugin: verify leading drafts with confidence >= floor, at most cap"

    def decide(self, conf, valid, ctx):
        ok = conf >= self.floor
        if valid is not None:
            ok &= valid
        n = np.cumprod(ok, axis=1).sum(axis=1)
        return np.minimum(n, self.cap).astype(np.int64)
'''


def write_plugin(root: Path, name: str = "demo_plugin") -> str:
    """Write the package under ``root``; returns its import name."""
    module = f"spectune_{name}"
    pkg = root / module
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(SOURCE.format(name=name), encoding="utf-8")
    info = root / f"{module}-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[spectune.policies]\n{name} = {module}:CappedConfident\n", encoding="utf-8"
    )
    return module
