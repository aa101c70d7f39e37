"""SIGTERM, a scheduler's warning before it kills: inside a command's work it takes the same clean path
as Ctrl-C (the cell at work stops, its claim is released, the store stays resumable); outside it (the
interpreter tearing torch down after the command returned) the process ends at once with 128 + 15."""

from __future__ import annotations

import os
import signal
import sys


def exit_on_sigterm(signum=None, frame=None):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(143)


def on_sigterm(signum=None, frame=None):
    interrupt = KeyboardInterrupt()
    interrupt.signal_name = "SIGTERM"
    raise interrupt


def sigterm_interrupts():
    """Route SIGTERM to ``on_sigterm``; returns the handler it replaced (to hand back afterwards)."""
    return signal.signal(signal.SIGTERM, on_sigterm)


def sigterm_exits() -> None:
    signal.signal(signal.SIGTERM, exit_on_sigterm)


def restore_sigterm(previous) -> None:
    signal.signal(signal.SIGTERM, previous)
