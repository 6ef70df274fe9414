"""Provenance of measurements: where, when and with which weights a profile or record was made.

Profiles (``spectune profile``) and acceptance records (``spectune record``) carry this in their
metadata, so a number can be traced to its machine, software versions, project commit and
checkpoint files.
"""

from __future__ import annotations

import torch


def environment(device: torch.device) -> dict:
    """Where and when: device, threads, versions, CPU, load average, date, project commit."""
    import datetime
    import os
    import platform

    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu(),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_count": os.cpu_count(),
    }
    return env


def load_average() -> list[float]:
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str:
    """The project's HEAD commit (``+dirty`` when tracked files differ), or ``unknown``."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty.strip() else "")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def checkpoint_digest(name: str) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint file: which weights were measured."""
    import hashlib

    from engine.checkpoint import path_of

    return hashlib.sha256(path_of(name).read_bytes()).hexdigest()[:16]
