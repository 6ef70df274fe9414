"""The ``spectune`` console script: one parser, subcommands found in ``runner/commands/``.

Each module in ``runner.commands`` defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; nothing else needs editing to add a command. Commands are imported only
when chosen, so ``spectune replay`` never imports torch.

Exit codes: 0 success, 2 user error (one line ``spectune: error: ...`` on stderr), 1 internal
error (traceback), other codes as a command documents (``audit`` uses 3 for "not lossless").
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Sequence

import runner.commands
from profiles.errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line error format and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"spectune: error: {message}\n")
        raise SystemExit(2)


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(runner.commands.__path__) if not m.ispkg)


def _module_attrs(module: str) -> dict[str, str]:
    """NAME and HELP of a command module, read from its source without importing it (so that
    ``spectune --help`` stays light and never imports torch)."""
    spec = importlib.util.find_spec(f"runner.commands.{module}")
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
            mod = importlib.import_module(f"runner.commands.{module}")
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
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        sys.stderr.write(f"spectune: error: {_one_line(str(exc))}\n")
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        where = exc.filename or ""
        sys.stderr.write(f"spectune: error: {where}: {exc.strerror or exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("spectune: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    raise SystemExit(main())
