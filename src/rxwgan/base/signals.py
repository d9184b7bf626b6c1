"""SIGINT/SIGTERM as a polite request: the loop finishes its step and checkpoints first."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_requests(on_request: Callable[[str], None]) -> Iterator[None]:
    """Call ``on_request(signal name)`` on the first SIGINT/SIGTERM; a second one stops at once.

    Signal handlers exist only in the main thread: elsewhere (a Ray worker's thread, a
    notebook's executor) the block runs with the process's own handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requested = False

    def handle(signum: int, _frame: Any) -> None:
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        on_request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
