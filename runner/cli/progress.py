"""Progress bars of the commands: one place decides whether a bar is drawn.

A bar is drawn on stderr only when stderr is a terminal and the command was not given
``--quiet``; it never touches stdout, so ``--json`` output stays one clean object. Library code
does not draw: it takes a callback (``on_point``, ``on_request``, ``tick``, ...) and the command
passes one of these bars' methods. A ``Progress`` that is off accepts every call and does
nothing, so callers never test it (a tqdm with ``total=None`` has no truth value).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def enabled(args: argparse.Namespace | None = None, *, quiet: bool = False) -> bool:
    """True when a bar should be drawn: stderr is a terminal and neither ``--quiet`` nor
    ``quiet`` says otherwise."""
    if quiet or (args is not None and getattr(args, "quiet", False)):
        return False
    return sys.stderr.isatty()


class Progress:
    """A tqdm bar on stderr when ``on``, else a no-op with the same methods."""

    def __init__(self, on: bool, desc: str, *, total: int | None = None, unit: str = "it",
                 initial: int = 0) -> None:  # fmt: skip
        self.bar: Any = None
        if on:
            from tqdm import tqdm

            cols, rows = _size()  # a terminal of unknown size (0 x 0) still gets a bar
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                            ncols=cols, nrows=rows, dynamic_ncols=cols is None)  # fmt: skip

    @property
    def on(self) -> bool:
        return self.bar is not None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def tick(self, *_: Any) -> None:
        """``update(1)``, ignoring arguments: fits any ``on_item(x)`` callback."""
        self.update(1)

    def start(self, total: int) -> None:
        """Set the total once it is known (a callback such as ``on_total``)."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def grow(self, more: int, done: int = 0) -> None:
        """Add ``more`` items to the total, ``done`` of them already finished."""
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + more
            self.bar.update(done)
            self.bar.refresh()

    def note(self, text: str) -> None:
        """Text shown after the counts (e.g. the best result so far)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def describe(self, text: str) -> None:
        """Replace the label before the counts (e.g. the current stage)."""
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)

    def write(self, line: str) -> None:
        """A line on stderr above the bar (only when the bar is drawn)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _size() -> tuple[int | None, int | None]:
    """(None, None) when the terminal reports its size (tqdm follows it), else 80 x 24."""
    try:
        if os.get_terminal_size(sys.stderr.fileno()).columns > 0:
            return None, None
    except (OSError, ValueError):
        pass
    return 80, 24


def bar(args: argparse.Namespace | None, desc: str, *, total: int | None = None,
        unit: str = "it", quiet: bool = False, initial: int = 0) -> Progress:  # fmt: skip
    """The command's bar: drawn when ``enabled(args, quiet=quiet)``."""
    return Progress(enabled(args, quiet=quiet), desc, total=total, unit=unit, initial=initial)


class PointsBar:
    """The tune bar: points done / total and the best throughput at the SLA so far."""

    def __init__(self, enabled: bool, sla) -> None:
        self.bar = Progress(enabled, "points", total=0, unit="pt")
        self.sla = sla
        self.best: tuple[float, str] = (0.0, "")

    def grow(self, total: int, cached: int) -> None:
        self.bar.grow(total, cached)

    def done(self, result: dict) -> None:
        if all(s.met(result) for s in self.sla) and result["throughput_tok_s"] > self.best[0]:
            load = f"{result['mode'][:4]}={result['load']:g}"
            self.best = (result["throughput_tok_s"], f"{result['policy'][:32]} @ {load}")
        if self.best[1]:
            self.bar.note(f"best {self.best[0]:,.0f} tok/s at the SLA: {self.best[1]}")
        else:
            self.bar.note("no point meets the SLA yet")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
