"""The data layer's hardening: wide-depth PNGs, rebased written tables, refused files,
a table check that decodes, and progress bars that suit a log file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import write_png
from rxwgan.cache import ImageCache
from rxwgan.cli import main
from rxwgan.progress import progress_bar
from rxwgan.table import read_table


def write_table(folder: Path, names: list[str], targets: list[int] | None = None) -> Path:
    targets = targets or [i % 2 for i in range(len(names))]
    frame = pd.DataFrame({"target": targets, "raw_image_path": [f"images/{n}" for n in names]})
    csv = folder / "table.csv"
    frame.to_csv(csv, index=False)
    return csv


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and "Warning" not in captured.err, captured.err
    return lines[0]


# --- 8: a written table keeps finding its images -------------------------------------------

def test_written_table_rebases_relative_paths(make_table, tmp_path):
    table = read_table(make_table(n=4))
    absolute = str(table.paths[0])
    table.frame.loc[table.frame.index[0], "raw_image_path"] = absolute
    out = tmp_path / "elsewhere" / "deeper" / "split.csv"
    table.write(out, {"partition": ["train"] * 4})
    again = read_table(out)
    assert all(path.is_file() for path in again.paths)
    assert [path.resolve() for path in again.paths] == table.paths
    assert again.frame["raw_image_path"].iloc[0] == absolute  # absolute stays absolute
    assert not Path(again.frame["raw_image_path"].iloc[1]).is_absolute()


def test_table_split_to_another_folder(make_table, tmp_path, capsys):
    out = tmp_path / "runs" / "split.csv"
    out.parent.mkdir()
    assert main(["table", "split", str(make_table(n=10)), "--fold", "0", "--n_splits", "5",
                 "-o", str(out)]) == 0
    assert all(path.is_file() for path in read_table(out).paths)


# --- 11: one-line refusals ------------------------------------------------------------------

def test_symlink_loop_is_one_line(tmp_path, capsys):
    root = tmp_path / "d"
    write_png(root / "images" / "ok.png", np.zeros((8, 8), np.uint8))
    os.symlink("loop.png", root / "images" / "loop.png")
    csv = write_table(root, ["ok.png", "loop.png"])
    line = one_line_error(capsys, main(["cache", str(csv), "--size", "8"]))
    assert "row 2 (line 3)" in line and "loop.png" in line and "symbolic links" in line
    assert main(["table", "check", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "row 2 (line 3)" in err and "symbolic links" in err


# --- 14: progress bars off a terminal -------------------------------------------------------

def test_progress_off_a_terminal_writes_a_few_plain_lines():
    stream = io.StringIO()
    for _ in progress_bar(range(1000), file=stream, desc="images", mininterval=0):
        pass
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 12 and "1000/1000" in lines[-1]

    stream = io.StringIO()
    bar = progress_bar(total=10, file=stream, leave=False)  # tqdm would clear it with '\r'
    bar.update(10)
    bar.close()
    assert "\r" not in stream.getvalue() and "10/10" in stream.getvalue().splitlines()[-1]


def test_cache_progress_in_a_log_has_no_carriage_returns(make_table, tmp_path, capsys):
    table = read_table(make_table(n=64, size=8))
    ImageCache(tmp_path / "c").load(table.paths, 8, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "64/64" in err
