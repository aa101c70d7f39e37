class BenchError(Exception):
    """A user error: printed as one line (problem and fix), exit status 2, no traceback."""
