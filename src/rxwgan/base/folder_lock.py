"""An exclusive OS lock on an output folder, so two processes never write one run.

The lock is ``flock`` on ``<folder>/.rxwgan.lock``: the kernel drops it when the holder
exits, SIGKILL included, so a killed run's folder is free for its resume at once. The
file holds the holder's pid, host and command, which a refused process names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import LOCK_FILE


@contextlib.contextmanager
def hold(folder: str | os.PathLike, flag: str = "-o") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (creating the folder); refuse if taken.

    ``flag`` names the option the folder came from, for the refusal message.
    """
    folder = Path(folder)
    check_writable_folder(folder, flag)
    path = folder / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise RxwganError(f"{flag} {folder}: cannot create {LOCK_FILE} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RxwganError(f"{flag} {folder} is in use by another rxwgan process "
                              f"({_describe(path)}); wait for it to end or choose another "
                              f"{flag}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "command": " ".join(sys.argv[:4])}))
        handle.flush()
        yield folder
    finally:
        handle.close()  # closing drops the lock


def check_writable_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed; refuse a path that is a file, under a file, or unwritable."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == folder else f"is under the file {parent}"
                raise RxwganError(f"{flag} {folder}: {where}, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RxwganError(f"{flag} {folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RxwganError(f"{flag} {folder}: not writable")


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        holder = {}
    if not holder.get("pid"):
        return "holder unknown"
    return f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
