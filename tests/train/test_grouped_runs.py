"""Runs on patient-level folds (--group-column): recorded, resumed, refused when the grouping or
the groups change; a run without the flag keeps the fingerprint older versions recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import quiet
from helpers import run_config as config
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.splits import SplitSpec
from rxwgan.data.table import md5_of_file
from rxwgan.data.twin_phantoms import PATIENT_COLUMN, write_twin_table
from rxwgan.train.checkpoint import load_checkpoint
from rxwgan.train.loop import train

GROUPED = SplitSpec(fold=0, n_splits=2, group_column=PATIENT_COLUMN)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """About 50 images of 28 patients (1-5 images each, re-exports and blank films among them)."""
    return write_twin_table(tmp_path_factory.mktemp("twins"), n_patients=24, size=32, seed=0)


def grouped_config(table: Path, out: Path, split: SplitSpec = GROUPED, **overrides):
    return dataclasses.replace(config(table, out, **overrides), split=split)


def train_flags(table: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--batch_size", "4",
            "--n_critic", "2", "--precision", "fp32", "--no-progress", "--n_splits", "2", *extra]


def test_the_flag_is_recorded_in_config_and_split_csv_and_patients_stay_whole(table, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_flags(table, out, "--epochs", "1", "--group_column", PATIENT_COLUMN)) == 0
    split = json.loads((out / "config.json").read_text())["config"]["split"]
    assert split == {"fold": 0, "n_splits": 2, "test": None, "sort": None, "seed": 512,
                     "group_column": PATIENT_COLUMN}
    rows = pd.read_csv(out / "split.csv")
    sides = {name: set(rows.loc[rows["partition"] == name, PATIENT_COLUMN]) for name in ("train", "val")}
    assert sides["train"] and sides["val"] and not sides["train"] & sides["val"]
    assert f"whole {PATIENT_COLUMN} groups" in capsys.readouterr().out


def test_a_grouped_run_resumes_and_refuses_another_grouping(table, tmp_path):
    out = tmp_path / "run"
    train(grouped_config(table, out, epochs=1), log=quiet)
    train(grouped_config(table, out, epochs=2), log=quiet)
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2
    with pytest.raises(RxwganError, match=f"--group-column {PATIENT_COLUMN} -> None"):
        train(config(table, out, epochs=3), log=quiet)
    with pytest.raises(RxwganError, match=f"--group-column {PATIENT_COLUMN} -> sex"):
        other = dataclasses.replace(GROUPED, group_column="sex")
        train(grouped_config(table, out, other, epochs=3), log=quiet)


def test_a_resume_on_a_table_whose_groups_changed_is_refused(table, tmp_path):
    copy = tmp_path / "table.csv"
    frame = pd.read_csv(table, index_col=0)
    frame["raw_image_path"] = [str(table.parent / p) for p in frame["raw_image_path"]]
    frame.to_csv(copy)
    out = tmp_path / "run"
    train(grouped_config(copy, out, epochs=1), log=quiet)
    frame.loc[frame.index[0], PATIENT_COLUMN] = "someone else"
    frame.to_csv(copy)
    with pytest.raises(RxwganError, match=f"table changed since this run began \\(1 row\\(s\\) with another "
                                          f"{PATIENT_COLUMN}"):
        train(grouped_config(copy, out, epochs=2), log=quiet)
    frame.drop(columns=PATIENT_COLUMN).to_csv(copy)
    with pytest.raises(RxwganError, match=f"{copy}: no column '{PATIENT_COLUMN}'"):
        train(grouped_config(copy, out, epochs=2), log=quiet)


def test_a_run_without_the_flag_keeps_the_fingerprint_older_versions_recorded_and_resumes(table, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, epochs=1), log=quiet)
    frame = pd.read_csv(table, index_col=0)
    old_rows = [[path, md5_of_file(table.parent / path), int(target)]
                for path, target in zip(frame["raw_image_path"], frame["target"], strict=True)]
    old_sha = hashlib.sha256(json.dumps(old_rows).encode()).hexdigest()
    saved = json.loads((out / "config.json").read_text())
    assert saved["table_sha256"] == old_sha and "group_column" not in saved["config"]["split"]
    assert load_checkpoint(out)["table"] == {"sha256": old_sha, "rows": old_rows}
    train(config(table, out, epochs=2), log=quiet)
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2


def test_without_the_flag_identical_images_across_the_split_are_said_in_one_line(table, tmp_path):
    import numpy as np
    from PIL import Image

    lines: list[str] = []
    out = tmp_path / "run"
    train(config(table, out, epochs=1, target=0, split=SplitSpec(fold=0, n_splits=2)), log=lines.append)
    warned = [line for line in lines if "straddle training and validation" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "--group-column" in warned[0]
    rows = pd.read_csv(out / "split.csv")
    rows = rows[(rows["target"] == 0) & rows["partition"].isin(["train", "val"])]
    pixels = rows["raw_image_path"].map(
        lambda path: hashlib.sha256(np.asarray(Image.open(out / path)).tobytes()).hexdigest())
    sides = rows.groupby(pixels)["partition"].nunique()
    assert warned[0].startswith(f"warning: {int((sides > 1).sum())} group(s) of identical images")
