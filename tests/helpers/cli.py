"""Running ``bench`` as a user does: a subprocess, its exit code, stdout and stderr."""

import os
import subprocess
import sys


def bench(*args, env_path=None, env=None, timeout=600):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if env_path:
        environment["BENCH_DATA_PATH"] = str(env_path)
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def one_error_line(done) -> str:
    """The single ``bench: error:`` line of a failed command (and nothing that looks like a traceback)."""
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]
