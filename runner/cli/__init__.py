"""The ``spectune`` console script: one parser, subcommands found in ``runner/cli/commands/``.

Each module in ``runner.cli.commands`` defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; nothing else needs editing to add a command. Commands are imported only
when chosen, so ``spectune replay`` never imports torch.

Exit codes: 0 success, 2 user error (one line ``spectune: error: ...`` on stderr), 1 internal
error (traceback), other codes as a command documents (``audit`` uses 3 for "not lossless").
Outputs are checked before any long work (``runner/paths.py``): an existing file is replaced,
and a foreign non-empty directory written into, only with ``--force``. An empty option value
never means "default"; OS errors a user's machine causes (full disk, read-only, permissions)
and a missing ``engine`` extra are one line and exit 2 here, at the boundary.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Sequence

import runner.cli.commands
from profiles.errors import InputError

ENGINE_EXTRA = ("torch", "safetensors")  # modules of the `engine` extra (pyproject)
# OS errors a user's environment causes (not bugs): one line and exit 2.
USER_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ENOSPC", "EROFS", "EDQUOT", "EACCES", "EPERM", "ENOENT", "EISDIR", "ENOTDIR", "EEXIST",
    "EFBIG", "ENAMETOOLONG", "ELOOP", "EMFILE", "ENFILE", "ENXIO", "ETXTBSY", "EIO",
) if hasattr(errno, n))  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line error format and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"spectune: error: {message}\n")
        raise SystemExit(2)


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(runner.cli.commands.__path__) if not m.ispkg)


def _module_attrs(module: str) -> dict[str, str]:
    """NAME and HELP of a command module, read from its source without importing it (so that
    ``spectune --help`` stays light and never imports torch)."""
    spec = importlib.util.find_spec(f"runner.cli.commands.{module}")
    attrs = {"NAME": module.replace("_", "-"), "HELP": ""}
    if not (spec and spec.origin):
        return attrs
    with open(spec.origin, encoding="utf-8") as f:
        for line in f:
            key = line.split(" = ", 1)[0]
            if key in attrs and " = " in line:
                attrs[key] = line.split(" = ", 1)[1].strip().strip("\"'")
    return attrs


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spectune",
        description="Tune speculative-decoding verification policies under production load.",
    )
    from runner import __version__

    parser.add_argument("--version", action="version", version=f"spectune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules():
        attrs = _module_attrs(module)
        if attrs["NAME"] == selected:
            mod = importlib.import_module(f"runner.cli.commands.{module}")
            p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(attrs["NAME"], help=attrs["HELP"], add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    for key, value in vars(args).items():  # an empty value never silently means "default"
        if value == "" or (isinstance(value, list) and "" in value):
            return _error(f"argument --{key.replace('_', '-')}: empty value")
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a full disk under stdout fails here, not at interpreter exit
        return code
    except InputError as exc:
        return _error(str(exc))
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ENGINE_EXTRA:
            raise
        return _error(f"{args.command} needs the engine extra: pip install -e '.[engine]' "
                      f"(no module {exc.name!r})")  # fmt: skip
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the machine said no: full disk, read-only, permissions, ...
        if exc.errno not in USER_ERRNOS:
            raise
        where = exc.filename or "output"
        return _error(f"{where}: {exc.strerror or exc}" if where else (exc.strerror or str(exc)))
    except KeyboardInterrupt:
        sys.stderr.write("spectune: interrupted\n")
        return 130


def _error(message: str) -> int:
    sys.stderr.write(f"spectune: error: {_one_line(message)}\n")
    return 2


def _one_line(text: str) -> str:
    return " ".join(text.split())
