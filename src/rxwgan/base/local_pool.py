"""Local worker processes that end with the command that started them, SIGKILL included.

A ``ProcessPoolExecutor`` alone leaves its workers behind when its parent is killed: an idle
worker waits on a queue whose write end it holds itself, and multiprocessing's resource
tracker lives as long as any worker does. Each worker here watches its parent and exits
within ``PARENT_POLL_S`` of its death, idle or mid-task.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

PARENT_POLL_S = 1.0  # how often a worker checks that the command that started it is alive


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (no fork: torch's threads do not survive one)."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_end_with_parent,
                               initargs=(os.getpid(),))


def _end_with_parent(parent: int) -> None:
    """Pool initializer. Polling ``os.getppid`` works on every POSIX system and cannot miss;
    ``PR_SET_PDEATHSIG`` is Linux-only and fires when the *thread* that started the worker
    ends, which in a pool is not always the main one."""
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="rxwgan-parent-watch",
                     daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:  # an orphan's parent becomes init or a subreaper
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # not sys.exit: from this thread it would end the thread, and the task would go on
