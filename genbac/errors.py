"""The root of every error that is the user's to fix, with its exit status.

Each module raises its own subclass (DataError, GrowError, StoreError, …), whose message says what
is wrong and how to fix it; the CLI catches UserError once, prints `genbac: error: MESSAGE` and
exits with `exit_code`. Anything else reaching the CLI is a genbac bug (GB999, exit 3).
"""

from __future__ import annotations

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


class UserError(Exception):
    """A mistake of the user's or a refusal with a reason; never shown with a traceback."""

    exit_code = EXIT_USAGE


class RefusedError(UserError):
    """`genbac run` will not start: a precondition does not hold (preflight). Nothing was done."""

    exit_code = EXIT_SPEC
