"""Where commands write: every output path is checked here, before any long work starts.

- :func:`out_file` for a single-file option (``--out FILE.yaml``, ``--plot FILE.png``): the
  path must be non-empty, its parent an existing directory we may write in, and it must not be a
  directory; an existing file is replaced only with ``--force``.
- :func:`out_dir` for a results directory (``--out DIR``): it must not be a file; a directory
  that is not empty is written into only if an earlier run of the *same command* left its
  marker there (``.spectune`` names the command; tune's ``run.yaml`` and export's
  ``export.json`` count too), or with ``--force``. The marker is written when the directory is
  claimed, so the next run of that command may replace its own files.
- :func:`hold` is the lock of a directory (``.spectune.lock`` holding the pid): a second run
  on the same directory exits naming the first's pid; the lock of a dead process is taken over.

All problems raise ``InputError`` naming the option and the path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from profiles.errors import InputError

MARKER = ".spectune"
LOCK = ".spectune.lock"


def _parent_ok(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` is a directory we may write in."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{option}: cannot write in {parent} (permission denied)")
            return


def _nonempty(text: str | os.PathLike | None, option: str) -> Path:
    if text is None or not str(text).strip():
        raise InputError(f"{option}: empty path")
    return Path(text)


def out_file(text: str | os.PathLike, option: str = "--out", *, force: bool = False) -> Path:
    """Check a single output file (its directory must exist); returns the path."""
    path = _nonempty(text, option)
    _parent_ok(path, option)
    if not path.parent.is_dir():
        raise InputError(f"{option}: directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{option}: {path} is a directory (expected a file name)")
    if path.exists() or path.is_symlink():
        if not force:
            raise InputError(f"{option}: {path} exists; pass --force to replace it")
        if not os.access(path, os.W_OK):
            raise InputError(f"{option}: cannot write {path} (permission denied)")
    return path


def out_dir(
    text: str | os.PathLike,
    command: str,
    option: str = "--out",
    *,
    force: bool = False,
    known: tuple[str, ...] = (),
    mark: bool = True,
) -> Path:
    """Check and claim a results directory of ``command`` (see the module docstring)."""
    path = _nonempty(text, option)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option}: {path} is a file (expected a directory)")
    _parent_ok(path, option)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{option}: cannot write in {path} (permission denied)")
        if not force and not _ours(path, command, known):
            raise InputError(f"{option}: {path} is not empty and is not the directory of an "
                             f"earlier `spectune {command}`; pass --force to write into it "
                             "(files of the same name are replaced)")  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if mark and not marker.exists():
        marker.write_text(f"{command}\n", encoding="utf-8")
    return path


def _ours(path: Path, command: str, known: tuple[str, ...]) -> bool:
    entries = {p.name for p in path.iterdir()} - {LOCK}
    if not entries:
        return True
    if MARKER in entries:
        try:
            return (path / MARKER).read_text(encoding="utf-8").strip() == command
        except (OSError, UnicodeDecodeError):
            return False
    return any(name in entries for name in known)


@contextlib.contextmanager
def hold(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock for the duration of the block."""
    lock = directory / LOCK
    for _ in range(2):  # a stale lock is removed once, then taken
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _pid_in(lock)
            if pid is not None and _alive(pid):
                raise InputError(
                    f"{directory} is in use by another spectune run (pid {pid}); "
                    f"wait for it, or remove {lock} if that process is gone"
                ) from None
            lock.unlink(missing_ok=True)
    else:
        raise InputError(f"cannot take the lock {lock}")
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if _pid_in(lock) == os.getpid():
            lock.unlink(missing_ok=True)


def _pid_in(lock: Path) -> int | None:
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True
