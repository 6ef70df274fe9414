"""The one exception a user can cause.

Everything that reads user input (traces, YAML, profiles, CLI values, policy specs) raises
``InputError`` with a message that names the file, line or field. The CLI turns it into one line
``spectune: error: ...`` and exit code 2; anything else escaping is an internal error (exit 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message is shown to the user verbatim, on one line."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
