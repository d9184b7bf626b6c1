"""evaluate refuses, in one line and before computing anything, what it used to ignore or fail on late
(study hardening, case 13)."""

from __future__ import annotations

import pytest

from rxwgan.base.layout import CONFIG_FILE, SPLIT_FILE
from rxwgan.cli import main


@pytest.fixture
def run_folder(tmp_path):
    """A run folder's two files, enough to be taken for one (every check here fires before reading them)."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in (CONFIG_FILE, SPLIT_FILE):
        (folder / name).write_text("kept as it was")
    return folder


@pytest.mark.parametrize("flags, message", [
    (["-n", "0"], "-n must be at least 1, not 0"),
    (["--size", "0"], "--size must be at least 1, not 0"),
    (["--size", "64"], "takes the rows, split, class and size from the run folder; drop --size"),
    (["--pairs", "pairs.txt"], "--pairs pairs.txt: name a picture file (.png, .pdf, .svg)"),
])
def test_memorisation_flags_that_would_be_ignored_or_fail_late(run_folder, capsys, flags, message):
    assert main(["evaluate", "--memorisation", str(run_folder), *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.parametrize("name, message", [(SPLIT_FILE, "name a .json file"),
                                           (CONFIG_FILE, "a file of the run in")])
def test_json_never_overwrites_a_file_of_the_run(run_folder, capsys, name, message):
    target = run_folder / name
    assert main(["evaluate", "--memorisation", str(run_folder), "--json", str(target), "--overwrite"]) == 2
    assert message in capsys.readouterr().err
    assert target.read_text() == "kept as it was"
