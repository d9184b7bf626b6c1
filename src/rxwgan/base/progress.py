"""Telling the user how work goes: progress bars that suit where they are written, and ``Log``.

On a terminal (or in a notebook) a live tqdm bar. Written to a file or a pipe
(``rxwgan cache ... 2> log``, Ray worker logs), a bar's carriage-return updates would
flood the log, so there it prints a plain line now and then instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from tqdm.autonotebook import tqdm as notebook_or_std_tqdm
from tqdm.std import tqdm as std_tqdm

# Where a long job's one-line messages go: ``print`` by default, a list's append in tests.
Log = Callable[[str], None]
LINE_EVERY_S = 30.0  # off a terminal: a line at least this often while progressing...
LINE_EVERY_FRACTION = 0.1  # ...and at each tenth of the total


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> std_tqdm:
    """A tqdm bar (same arguments) that writes plain lines when not on a terminal."""
    stream = kwargs.get("file") or sys.stderr
    in_notebook = notebook_or_std_tqdm is not std_tqdm
    if in_notebook or _is_terminal(stream):
        return notebook_or_std_tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress(std_tqdm):
    """tqdm that prints whole lines (no '\\r'): at start, each tenth, every 30 s, and at the end."""

    def __init__(self, iterable: Iterable | None = None, **kwargs: Any):
        self._line_time = float("-inf")
        self._line_n: float = -1
        self._line_tenth = -1
        kwargs.setdefault("ascii", True)
        super().__init__(iterable, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its bar: a log has nothing to clear
            return False
        tenth = int(self.n / self.total / LINE_EVERY_FRACTION) if self.total else -1
        now = self._time()
        if tenth == self._line_tenth and now - self._line_time < LINE_EVERY_S:
            return False
        self._write_line(now, tenth)
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: earlier lines stay in the log."""

    def close(self) -> None:
        if not self.disable and self.n != self._line_n:
            self._write_line(self._time(), -1)  # the final count
        self.leave = False  # tqdm's own close then only "clears", which writes nothing here
        super().close()

    def _write_line(self, now: float, tenth: int) -> None:
        self._line_time, self._line_n, self._line_tenth = now, self.n, tenth
        self.fp.write(self.__str__().rstrip() + "\n")
        self.fp.flush()
