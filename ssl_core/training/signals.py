"""SIGINT and SIGTERM during training: while loading they stop at once (nothing is trained yet,
so nothing is lost); while training the first one asks the loop to stop after the current step
with a checkpoint, and a second one stops at once."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def _on_signals(handler: Callable) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` inside the `with` block (in the main thread: only it
    can set handlers; elsewhere, as in the app's threads, the signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interrupt_on_signals():
    """SIGINT/SIGTERM raise KeyboardInterrupt at once: for stages with nothing to save (loading)."""
    return _on_signals(signal.default_int_handler)


def stop_on_signals(stop: threading.Event):
    """The first SIGINT/SIGTERM sets `stop`, so the loop ends after the current step with a
    checkpoint; a second one raises KeyboardInterrupt at once, for a step that takes too long
    (or never ends: a file that hangs) and a user who does not want to wait."""
    def first(signum, frame) -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.default_int_handler)

    return _on_signals(first)
