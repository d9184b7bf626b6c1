"""``rxwgan utility --local`` killed with SIGKILL leaves no process behind.

The driver runs the real ``_run_local`` (process pool, spawn) on a worker that naps instead of
training a classifier, so the test takes seconds, not the minutes a study fixture needs; the
nap is defined in the driver file, which spawn imports again in each worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="finding a process's workers needs Linux's /proc/<pid>/task/<pid>/children")

DRIVER = textwrap.dedent("""
    import time

    from rxwgan.utility.workers import UtilityOptions, _run_local


    def nap(seconds):
        time.sleep(seconds)
        return {"state": "done"}


    if __name__ == "__main__":
        # Two quick tasks (their lines say the workers are up and take tasks), then two long ones.
        _run_local(nap, [(0,), (0,), (600,), (600,)], UtilityOptions(local=True, workers=2),
                   lambda index, outcome: print(index, outcome.state, flush=True))
""")
DEADLINE_S = 15.0


def identity(pid: int) -> tuple[int, str] | None:
    """``pid`` and its start time (so that a reused pid is not mistaken for it); None once it has
    ended (a zombie has: a reparented child waits on its new parent to be reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (pid, fields[19])


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every live process below ``pid``, as ``identity`` gives it."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = [identity(int(child)) for child in children]
    return [p for p in found if p] + [d for p in found if p for d in descendants(p[0])]


def still_there(processes: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [p for p in processes if identity(p[0]) == p]


def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return "(ended)"


def test_sigkill_of_a_local_run_leaves_no_process(tmp_path):
    driver, lines = tmp_path / "driver.py", tmp_path / "stdout"
    driver.write_text(DRIVER)
    with open(lines, "w") as stdout:
        parent = subprocess.Popen([sys.executable, str(driver)], stdout=stdout, cwd=tmp_path)
    below: list[tuple[int, str]] = []
    try:
        wait_until(lambda: len(lines.read_text().splitlines()) >= 2 or parent.poll() is not None, 60)
        assert parent.poll() is None and len(lines.read_text().splitlines()) >= 2, "no worker ran"
        time.sleep(0.5)  # the long tasks are taken at once by the two now idle workers
        below = descendants(parent.pid)
        assert len(below) >= 2, below  # the two workers (and multiprocessing's resource tracker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not still_there(below), DEADLINE_S)
        assert [command_line(pid) for pid, _ in still_there(below)] == []
    finally:
        parent.kill()
        parent.wait()
        for pid, _ in still_there(below):
            os.kill(pid, signal.SIGKILL)
