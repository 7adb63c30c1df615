"""SIGTERM and Ctrl-C as a clean stop of a training run (no torch here: the CLI installs it first)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """From model loading on, SIGTERM and Ctrl-C (SIGINT) end the run after the current step, with a
    checkpoint and the adapter saved, instead of killing it mid-write; a second Ctrl-C aborts at once.
    Installed only in the main thread (Python allows signal handlers nowhere else); the previous
    handlers come back on exit, so an in-process caller (tests, a notebook) keeps its own."""

    def __init__(self):
        self.caught: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.caught is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.caught = name  # no logging here: the handler may interrupt a logging call

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
