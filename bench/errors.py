"""User errors (one line: the problem and the fix, exit status 2, no traceback) and one-line warnings."""

import sys


class BenchError(Exception):
    """A user error: printed as one line (problem and fix), exit status 2, no traceback."""


_WARNED: set[str] = set()


def warn(message: str) -> None:
    """One line on stderr, once per process for the same message."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    from tqdm.auto import tqdm

    tqdm.write(f"bench: warning: {message}", file=sys.stderr)
