"""Where tuning points run: a local process pool or Ray tasks (one simulation per task).

Both executors take a list of :class:`~runner.point.PointTask` and the (cost, acceptance) models,
and yield ``(task, result)`` as each point finishes, in completion order; the caller stores
results by key, so the order never reaches any output. A point's result depends only on the task
and the models (explicit seeds, no global random state), hence ``local`` and ``ray`` give
identical results for the same tasks. The models are shipped to each worker once (a pool
initializer, one ``ray.put``), not reloaded from their spec strings.

- ``local``: ``workers == 1`` runs in this process (no pool, easy to debug); more workers use a
  ``concurrent.futures.ProcessPoolExecutor``. Needs nothing beyond the base install.
- ``ray``: ``ray.remote(run_point)``; ``address=None`` starts a local Ray instance with
  ``workers`` CPUs, otherwise connects to ``address`` (e.g. ``ray://head:10001`` or ``auto``).
  Workers must be able to import spectune; the models travel in Ray's object store. Optional
  extra: ``pip install 'spectune[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from profiles.errors import InputError
from runner.point import PointTask, run_point

BACKENDS = ("local", "ray")
Models = tuple[Any, Any]  # (cost model, acceptance model)
_MODELS: Models | None = None  # a pool worker's models, set once by its initializer


class Executor(Protocol):
    def run(self, tasks: Sequence[PointTask], models: Models
            ) -> Iterator[tuple[PointTask, dict[str, Any]]]: ...  # fmt: skip
    def close(self) -> None: ...


def _init_worker(models: Models) -> None:
    global _MODELS
    _MODELS = models


def _run_in_worker(task: PointTask) -> dict[str, Any]:
    assert _MODELS is not None, "pool worker started without its models"
    return run_point(task, _MODELS)


class LocalExecutor:
    """In-process (1 worker) or a process pool."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool = None
        self._models: Models | None = None

    def run(self, tasks: Sequence[PointTask], models: Models
            ) -> Iterator[tuple[PointTask, dict[str, Any]]]:  # fmt: skip
        if self.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield task, run_point(task, models)
            return
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if self._pool is not None and self._models is not models:
            self.close()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker,
                                             initargs=(models,))  # fmt: skip
            self._models = models
        futures = {self._pool.submit(_run_in_worker, t): t for t in tasks}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    """One Ray task per point; a local Ray instance unless ``address`` is given."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("--backend ray needs Ray: pip install 'spectune[ray]'") from None
        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"address": address, "log_to_driver": False,
                                      "include_dashboard": False}  # fmt: skip
            if address is None:
                kwargs["num_cpus"] = max(1, workers)
            os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError) as exc:
                raise InputError(f"--address {address}: cannot connect to Ray ({exc})") from None
        self._remote = ray.remote(num_cpus=1)(run_point)
        self._ref: tuple[Models, Any] | None = None

    def run(self, tasks: Sequence[PointTask], models: Models
            ) -> Iterator[tuple[PointTask, dict[str, Any]]]:  # fmt: skip
        ray = self.ray
        if self._ref is None or self._ref[0] is not models:
            self._ref = (models, ray.put(models))  # once per run, not once per task
        pending = {self._remote.remote(t, self._ref[1]): t for t in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(backend: str, workers: int, address: str | None = None) -> Executor:
    if backend == "local":
        if address:
            raise InputError("--address applies to --backend ray only")
        return LocalExecutor(workers)
    if backend == "ray":
        return RayExecutor(workers, address)
    raise InputError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
