"""Ctrl-C or SIGTERM during training: finish the step, save a checkpoint, stop.

The first Ctrl-C (or the SIGTERM of `kill`, Slurm or torchrun) only asks; the training loop looks
at `requested` after each step, saves its checkpoint and ends, so no step since the last periodic
checkpoint is lost. A second Ctrl-C stops at once, as Python's own handler would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, for a whole command: a trainer stopped by a
    scheduler before its loop (loading, tokenising) cleans up and says where it got to instead of
    dying at once. Inside the loop StopAfterStep takes SIGTERM over. Main thread only."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) \
            is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StoppedAtStep(KeyboardInterrupt):
    """Training stopped on a signal after `step`, its checkpoint saved: a KeyboardInterrupt to
    callers, as the Ctrl-C it usually is."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


class StopAfterStep:
    """A context manager that catches SIGINT and SIGTERM while the loop runs (main thread only:
    signal handlers live there; a signal already ignored, as for a background job, stays ignored)."""

    def __init__(self, what: str = "step", announce: bool = True):
        self.what, self.announce = what, announce  # announce: False on torchrun's other ranks (one line, not N)
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}.get(self.signal, str(self.signal))

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            if signum == signal.SIGINT:  # asked twice: the user does not want to wait
                raise KeyboardInterrupt
            return
        self.signal = signum
        if not self.announce:
            return
        again = " (Ctrl-C again to stop at once, without it)" if signum == signal.SIGINT else ""
        # os.write, not print: a handler that ran inside a blocked write to stderr (a full pipe) and
        # printed there raised "reentrant call" instead of stopping
        try:
            os.write(2, f"\n{self.name}: stopping after this {self.what}, with a checkpoint{again}\n".encode())
        except OSError:  # stderr closed or a broken pipe: the stop matters more than the note
            pass

    def __enter__(self) -> StopAfterStep:
        if threading.current_thread() is threading.main_thread():
            for signum, defaults in ((signal.SIGINT, (signal.default_int_handler,)),
                                     (signal.SIGTERM, (signal.SIG_DFL, _interrupt))):
                if signal.getsignal(signum) in defaults:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
