"""``utility`` reports, per fold, the test rows that are twins of training rows (twins, part 4)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rxwgan.data.twin_phantoms import PATIENT_COLUMN, write_twin_table
from rxwgan.utility.driver import run_utility
from tiny_study import LOCAL, SETTINGS, train_study

QUICK = SETTINGS.__class__(repeats=1, classifier=SETTINGS.classifier)  # no control: 3 runs a fold


@pytest.fixture(scope="module")
def twin_table(tmp_path_factory) -> Path:
    return write_twin_table(tmp_path_factory.mktemp("twins"), n_patients=30, size=32, seed=4)


def identical_test_rows(run: Path, test: str = "val") -> int:
    """Test rows with an identical image among the training rows, read from the run's split.csv."""
    rows = pd.read_csv(run / "split.csv")
    pixels = rows["raw_image_path"].map(
        lambda path: hashlib.sha256(np.asarray(Image.open(run / path)).tobytes()).hexdigest())
    trained = set(pixels[rows["partition"] == "train"])
    return int(pixels[rows["partition"] == test].isin(trained).sum())


def test_the_test_rows_identical_to_training_rows_are_counted_per_fold(twin_table, tmp_path):
    study = tmp_path / "study"
    train_study(twin_table, study, (0, 1))
    lines: list[str] = []
    run_utility(study, QUICK, LOCAL, log=lines.append)
    leakage = json.loads((study / "utility" / "utility.json").read_text())["leakage"]
    for fold in ("fold_0", "fold_1"):
        expected = identical_test_rows(study / fold / "target_0")
        assert leakage[fold]["exact_twin_in_training"] == expected
        assert f"leakage: {fold}: {expected} of {leakage[fold]['test_rows']} test rows" in "\n".join(lines)
    assert sum(leak["exact_twin_in_training"] for leak in leakage.values()) > 0  # blanks, re-exports
    assert "> leakage: fold_0:" in (study / "utility" / "summary.md").read_text()


def test_a_grouped_study_shares_no_patient_across_its_folds(twin_table, tmp_path):
    study = tmp_path / "study"
    train_study(twin_table, study, (0, 1), group_column=PATIENT_COLUMN)
    run_utility(study, QUICK, LOCAL, log=lambda _: None)
    leakage = json.loads((study / "utility" / "utility.json").read_text())["leakage"]
    for fold, leak in leakage.items():
        assert leak["shared_groups"] == 0
        # only blank films, each its own patient, can still be identical across the split
        assert leak["exact_twin_in_training"] == identical_test_rows(study / fold / "target_0")


def test_after_a_dedupe_no_test_row_is_identical_to_a_training_row(twin_table, tmp_path):
    from rxwgan.cli import main

    deduped = tmp_path / "deduped.csv"
    assert main(["table", "dedupe", str(twin_table), "-o", str(deduped), "--cache-dir",
                 str(twin_table.parent / "cache")]) == 0
    study = tmp_path / "study"
    train_study(deduped, study, (0, 1))
    run_utility(study, QUICK, LOCAL, log=lambda _: None)
    leakage = json.loads((study / "utility" / "utility.json").read_text())["leakage"]
    assert [leak["exact_twin_in_training"] for leak in leakage.values()] == [0, 0]
    assert any(leak["near_twin_in_training"] for leak in leakage.values())  # follow-ups still are
