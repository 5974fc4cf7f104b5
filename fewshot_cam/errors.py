"""The one exception type for bad user input.

Library code raises :class:`UserError` at a boundary (a file, a setting, an episode request) with
the offending value and path in its message. The CLI prints it as one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input: a missing or corrupt file, an impossible setting, a mismatched checkpoint.

    The message is one line that names the value and, where there is one, the path.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        message = " ".join(str(message).split())
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else Path(path)
