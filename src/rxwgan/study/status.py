"""The status table of a study: what ``rxwgan sweep --status`` prints and the sweep redraws.

Only presentation: the rows come from ``rxwgan.study.plan`` (the run folders' files), so the
table needs neither Ray nor a running sweep.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rxwgan.base.progress import Log
from rxwgan.study.plan import STATES, STATUS_LOSSES, RunStatus, study_status


def format_status(rows: Sequence[RunStatus], max_lines: int | None = None) -> str:
    """The status table as fixed-width text, then one line per failed run's error.

    With ``max_lines`` (a terminal's height) a long table keeps the runs that are not
    done, so that a study of hundreds of runs still redraws in place.
    """
    shown = list(rows)
    if max_lines is not None and len(rows) + 3 > max_lines:
        shown = [row for row in rows if row.state not in ("done", "new")][:max(1, max_lines - 4)]
    header = ("run", "state", "epoch", "critic", "gen", "val kl_rf", "ETA", "try", "host")
    lines = [header]
    for row in shown:
        lines.append((
            row.path, row.state, f"{row.epoch}/{row.epochs if row.epochs else '?'}",
            *(_number(row.losses.get(key)) for key in STATUS_LOSSES),
            _duration(row.eta), str(row.attempt or ""), row.host or "",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    counts = {state: sum(row.state == state for row in rows) for state in STATES}
    hidden = f" ({len(rows) - len(shown)} more not shown)" if len(shown) < len(rows) else ""
    text.append(", ".join(f"{n} {state}" for state, n in counts.items() if n) + hidden)
    if max_lines is None:
        text += [f"{row.path}: {row.error}" for row in rows if row.state == "failed" and row.error]
    return "\n".join(text)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LiveTable:
    """The status table, redrawn in place on a terminal, printed now and then elsewhere."""

    def __init__(self, study: Path, log: Log = print, live: bool | None = None,
                 refresh: float | None = None, stream: TextIO | None = None):
        self.study = study
        self.log = log
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.refresh = refresh if refresh is not None else (2.0 if self.live else 30.0)
        self.shown_at = 0.0
        self.lines = 0

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.refresh:
            return
        self.shown_at = now
        rows = study_status(self.study)
        if self.live:  # move up over the previous table and clear to the end of the screen
            text = format_status(rows, shutil.get_terminal_size().lines - 1)
            erase = f"\x1b[{self.lines}F\x1b[J" if self.lines else ""
            self.stream.write(f"{erase}{text}\n")
            self.stream.flush()
            self.lines = text.count("\n") + 1
        else:
            self.log(format_status(rows))
