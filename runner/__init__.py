"""The experiment library (DESIGN §1): points and their executors, the search, ``tune`` and its
typed report, the scheduler document, export writers, fidelity; no argument parsing, no printing.
The ``spectune`` command line beside it is ``runner/cli/`` (commands: parse → call → print)."""

from profiles.version import __version__

__all__ = ["__version__"]
