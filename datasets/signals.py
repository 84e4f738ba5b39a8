"""Ctrl-C held off for the few renames that swap a finished dataset into place."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


@contextmanager
def ctrl_c_held():
    """Ignore Ctrl-C inside the block (main thread only: signal handlers live there). For swaps
    that must end whole: a Ctrl-C in the middle left neither the old files nor the new ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
