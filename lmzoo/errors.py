"""One-line errors for mistakes in the user's input.

Every script's `main` runs under `run_main`: a `UsageError` (or a library error we translate into one) prints a
single line naming the culprit and exits with status 2, before any long work starts; an `OutOfSpaceError` prints
one line and exits with status 4 (3 is a diverged run). `LMZOO_DEBUG=1` shows the full traceback instead.
"""

import functools
import os
import sys


_usage_error_cleanups = []


def on_usage_error(cleanup) -> None:
    """Call `cleanup()` when a UsageError ends the command (a lock file it took, say), also in-process."""
    if cleanup not in _usage_error_cleanups:
        _usage_error_cleanups.append(cleanup)


class UsageError(Exception):
    """A mistake in the command line, a file or a folder the user named; shown as one line, no traceback."""


class OutOfSpaceError(Exception):
    """The disk is full, or would be before a write ends: one line naming the folder and the bytes (lmzoo.diskspace)."""


EXIT_USAGE, EXIT_DIVERGED, EXIT_OUT_OF_SPACE = 2, 3, 4


def debug_enabled() -> bool:
    return os.environ.get("LMZOO_DEBUG", "") not in ("", "0", "false", "False")


def run_main(main):
    """Call `main()`; turn a UsageError into `error: ...` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (UsageError, OutOfSpaceError) as err:
            for cleanup in _usage_error_cleanups:
                cleanup()
            if debug_enabled():
                raise
            script = os.path.basename(sys.argv[0]) or "lmzoo"
            print(f"{script}: error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_OUT_OF_SPACE if isinstance(err, OutOfSpaceError) else EXIT_USAGE)

    return wrapper


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)
