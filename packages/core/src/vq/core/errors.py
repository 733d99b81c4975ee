"""The one exception type for user mistakes.

A ``UserError`` is something the person running a command can fix (a bad config key, a
missing file, an unknown component name). Command-line entry points print its message as
one line and exit with status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the input of a command: printed as one line, exit status 2."""


def few(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``names`` for a one-line message: ``a, b, ... (12 in all)``,
    or ``none``."""
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
