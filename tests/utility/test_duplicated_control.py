"""``--control duplicated``: the real rows repeated to real+synth's count, so that a gain from
more images is told from a gain from new ones (finding, part 3)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from rxwgan.cli import main
from rxwgan.utility.driver import run_utility
from rxwgan.utility.plan import repeated_rows
from rxwgan.utility.settings import UtilitySettings
from tiny_study import LOCAL, SETTINGS, copy_of


def test_duplicated_trains_on_as_many_real_images_as_real_synth_and_is_compared_with_it(tiny_study, tmp_path):
    study = copy_of(tiny_study, tmp_path)
    lines: list[str] = []
    both = dataclasses.replace(SETTINGS, control=("swapped", "duplicated"))
    result = run_utility(study, both, LOCAL, log=lines.append)
    assert any("10 classifier runs (2 folds x 5), 8 done before, 2 to run" in line for line in lines)
    runs = result.runs.set_index(["split", "seed", "condition"])
    for split in ("fold_0", "fold_1"):
        mixed, duplicated = runs.loc[(split, 0, "real+synth")], runs.loc[(split, 0, "duplicated")]
        assert duplicated["n_fit_real"] == mixed["n_fit_real"] + mixed["n_fit_synthetic"]
        assert duplicated["n_fit_synthetic"] == 0
    markdown = (study / "utility" / "summary.md").read_text()
    line = next(line for line in markdown.splitlines() if line.startswith("real+synth x1 - duplicated x1:"))
    assert "repeat" in line  # says in words what the synthetic images earn beyond repetition
    assert "| duplicated | 1 |" in markdown
    assert pd.read_csv(study / "utility" / "utility.csv")["condition"].tolist().count("duplicated") == 2


def test_the_repeated_rows_are_the_classes_own_fit_rows_as_many_as_real_synth_adds():
    targets = np.array([0] * 7 + [1] * 5)
    fit = np.array([0, 2, 3, 5, 7, 8, 9])  # four of class 0, three of class 1
    extra = repeated_rows(fit, targets, 2.5, seed=3)
    assert set(extra) <= set(fit)
    assert [(targets[extra] == t).sum() for t in (0, 1)] == [round(2.5 * 4), round(2.5 * 3)]
    assert np.array_equal(extra, repeated_rows(fit, targets, 2.5, seed=3))
    counts = np.bincount(extra, minlength=12)[fit]
    for target in (0, 1):  # cycled through the class's rows, not drawn: each repeated as often, +-1
        of_class = counts[targets[fit] == target]
        assert of_class.max() - of_class.min() <= 1


def test_an_older_record_with_one_control_reads_as_a_list():
    record = {**SETTINGS.to_dict(), "control": "swapped"}
    assert UtilitySettings.from_dict(record).control == ("swapped",)
    assert UtilitySettings.from_dict({**record, "control": None}).control == ()


@pytest.mark.parametrize("value, message", [
    ("bogus", "--control: each of swapped, duplicated at most once, not bogus"),
    ("swapped,swapped", "--control: each of swapped, duplicated at most once, not swapped,swapped"),
])
def test_a_bad_control_is_one_line(tiny_study, capsys, value, message):
    assert main(["utility", str(tiny_study), "--local", "--control", value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
