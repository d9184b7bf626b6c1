"""Patient-level folds downstream of training: ``table split --group-column``, and ``utility`` and
``evaluate --memorisation`` reading the grouping from the runs and refusing groups that changed."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import quiet
from helpers import run_config as config
from rxwgan.cli import main
from rxwgan.data.splits import SplitSpec
from rxwgan.data.table import read_table
from rxwgan.data.twin_phantoms import PATIENT_COLUMN, write_twin_table
from rxwgan.train.folder import check_split_file
from rxwgan.train.loop import train
from rxwgan.train.run_info import read_run
from rxwgan.utility.plan import fold_rows, study_folds

GROUPED = SplitSpec(fold=0, n_splits=2, group_column=PATIENT_COLUMN)


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """One grouped fold of a study, both classes trained for an epoch on a twin-rich table."""
    root = tmp_path_factory.mktemp("grouped")
    table = write_twin_table(root / "data", n_patients=24, size=32, seed=0)
    for target in (0, 1):
        run = config(table, root / "study" / GROUPED.name / f"target_{target}", target=target, epochs=1,
                     cache_dir=str(root / "cache"))
        train(dataclasses.replace(run, split=GROUPED), log=quiet)
    return root / "study"


def table_of(study: Path) -> Path:
    return Path(read_run(study / GROUPED.name / "target_0").config.input)


def test_table_split_keeps_patients_whole_and_says_how_many(tmp_path, capsys):
    table = write_twin_table(tmp_path / "data", n_patients=30, size=32, seed=1)
    out = tmp_path / "split.csv"
    assert main(["table", "split", str(table), "--test", "0", "--sort", "3", "--group-column", PATIENT_COLUMN,
                 "-o", str(out)]) == 0
    assert f"{PATIENT_COLUMN} groups" in capsys.readouterr().out
    frame = pd.read_csv(out, index_col=0)
    sides = [set(frame.loc[frame["partition"] == name, PATIENT_COLUMN]) for name in ("train", "val", "test")]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    code = main(["table", "split", str(table), "--fold", "0", "--n_splits", "2", "--group-column", "subject",
                 "-o", str(tmp_path / "other.csv")])
    assert "no column 'subject'" in one_line_error(capsys, code)


def test_utility_takes_the_grouping_from_the_runs_and_keeps_patients_whole(study):
    [fold] = study_folds(study)
    assert fold.split == GROUPED
    table = read_table(fold.table, check_files=False)
    patients = table.frame[PATIENT_COLUMN].to_numpy()
    for seed in (0, 1):
        rows = fold_rows(fold, table, seed, stop_share=0.3)
        sides = [set(patients[rows[name]]) for name in ("fit", "stop", "test")]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_utility_refuses_a_table_whose_groups_changed(study, capsys):
    table = table_of(study)
    frame = pd.read_csv(table, index_col=0)
    changed = table.parent / "changed.csv"  # beside the table: the same image paths, as written
    frame.assign(**{PATIENT_COLUMN: np.roll(frame[PATIENT_COLUMN].to_numpy(), 1)}).to_csv(changed)
    code = main(["utility", str(study), "--table", str(changed), "--local"])
    assert f"{changed}: its rows, images or {PATIENT_COLUMN} groups changed" in one_line_error(capsys, code)
    frame.drop(columns=PATIENT_COLUMN).to_csv(changed)
    code = main(["utility", str(study), "--table", str(changed), "--local"])
    assert f"{changed}: no column '{PATIENT_COLUMN}'" in one_line_error(capsys, code)
    frame.to_csv(changed)  # the same table elsewhere is accepted
    assert [fold.split for fold in study_folds(study, changed)] == [GROUPED]


def test_memorisation_refuses_a_run_whose_split_file_groups_changed(study, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(study / GROUPED.name / "target_1", run)
    info = read_run(run)
    check_split_file(info.split_csv, info.config)  # the run as it was: accepted
    rows = pd.read_csv(info.split_csv, index_col=0)
    first_train_patient = rows.loc[rows["partition"] == "train", PATIENT_COLUMN].iloc[0]
    rows.loc[rows["partition"] == "val", PATIENT_COLUMN] = first_train_patient  # one patient, both sides
    rows.to_csv(info.split_csv)
    code = main(["evaluate", "--memorisation", str(run)])
    error = one_line_error(capsys, code)
    assert f"its {PATIENT_COLUMN} column no longer gives the run's partition column" in error


def test_evaluate_reads_a_grouped_partition_of_the_real_table(tmp_path):
    """--group-column reaches evaluate's real-table partition: its val rows are the grouped
    split's, which share no patient with the training rows (before, a grouped spec there
    raised a ValueError)."""
    import torch

    from rxwgan.data.splits import partition_table
    from rxwgan.metrics.sources import table_images

    csv = write_twin_table(tmp_path / "twins", n_patients=20, size=16, seed=3)
    spec = SplitSpec(fold=0, n_splits=2, group_column=PATIENT_COLUMN)
    val = table_images(csv, 16, split=spec, partition="val", cache_dir=tmp_path / "cache")
    table = read_table(csv)
    parts = partition_table(table, spec)
    patients = table.frame[PATIENT_COLUMN].to_numpy()
    assert not set(patients[parts.val]) & set(patients[parts.train])
    assert torch.equal(val.images, val.fit_images[torch.as_tensor(parts.val)])


def test_table_check_refuses_an_unknown_group_column_before_reading_any_image(tmp_path, capsys):
    csv = write_twin_table(tmp_path / "twins", n_patients=6, size=16, seed=2)
    assert main(["table", "check", str(csv), "--fold", "0", "--n_splits", "2", "--group-column", "nosuch",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    said = capsys.readouterr()
    assert said.out == "" and "no column 'nosuch' to group rows by" in said.err
    assert not (tmp_path / "cache").exists()
