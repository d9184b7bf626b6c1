"""The memorisation check on a table with twins: re-exports, blank films, several images per patient."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import quiet, run_config, write_png
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.table import read_table
from rxwgan.data.twin_phantoms import near_copy, write_twin_table
from rxwgan.metrics.nearest_neighbours import TWIN_RADIUS, contrast_normalised, memorisation_scores
from rxwgan.metrics.sources import load_images
from rxwgan.synth.memorisation import FLAG_P, check_memorisation, summary_line
from rxwgan.train.run_info import read_run

NEW_IMAGES = 117


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory) -> Path:
    """A tiny generator trained for one epoch on the normal rows (blank films among them) of
    115 twin-rich patients at 32 px; fold 0 puts twins on both sides of the split."""
    from rxwgan.train.loop import train

    root = tmp_path_factory.mktemp("twins")
    table = write_twin_table(root / "data", n_patients=115, size=32, seed=0)
    train(run_config(table, root / "run", epochs=1, target=0), log=quiet)
    return root / "run"


def training_images(run: Path) -> list[np.ndarray]:
    """The run's training images of its class, as the files hold them."""
    info = read_run(run)
    paths = read_table(info.split_csv, check_files=False).paths
    return [np.asarray(Image.open(paths[i])) for i in info.rows("train")]


def new_patients(root: Path, seed: int) -> list[np.ndarray]:
    """``NEW_IMAGES`` normal images of other patients; their blank films are exact twins of
    the run's."""
    table = write_twin_table(root / f"patients_{seed}", n_patients=100, size=32, seed=seed)
    frame = pd.read_csv(table)
    paths = frame.loc[frame["target"] == 0, "raw_image_path"].iloc[:NEW_IMAGES]
    return [np.asarray(Image.open(table.parent / path)) for path in paths]


def folder_of(folder: Path, images: list[np.ndarray]) -> Path:
    for i, image in enumerate(images):
        write_png(folder / f"{i:04d}.png", image)
    return folder


def disguised(images: list[np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [near_copy(image, rng, gamma=1.15, noise=2.0) for image in images]


def is_blank(image: np.ndarray) -> bool:
    return bool(image.min() == image.max())


def test_disguised_copies_of_the_training_images_are_flagged(twin_run, tmp_path):
    copies = disguised(training_images(twin_run))
    record = check_memorisation(twin_run, folder_of(tmp_path, copies))
    twins = record["twins"]
    assert record["flagged"] and twins["n_copies"] > len(copies) / 2
    assert twins["n_copies"] + twins["n_common"] == len(copies)
    for scores in record["scores"].values():
        assert scores["near_copies"] > 0.9 and scores["threshold"] > 0


def test_a_fifth_of_disguised_copies_among_new_patients_is_flagged(twin_run, tmp_path):
    mixed = disguised(training_images(twin_run))[:24] + new_patients(tmp_path, 1)[:NEW_IMAGES - 24]
    assert check_memorisation(twin_run, folder_of(tmp_path / "mixed", mixed))["flagged"]


@pytest.mark.parametrize("seed", range(1, 11))
def test_new_patients_are_not_flagged_blank_films_included(twin_run, tmp_path, seed):
    images = new_patients(tmp_path, seed)
    blanks = sum(map(is_blank, images))
    record = check_memorisation(twin_run, folder_of(tmp_path / "new", images))
    assert blanks > 0 and record["twins"]["n_common"] >= blanks
    assert record["twins"]["n_copies"] == 0 and not record["flagged"], summary_line(record)


def test_one_exact_copy_among_new_patients_flags_the_set_on_its_own(twin_run, tmp_path):
    new = new_patients(tmp_path, 1)
    common = set(check_memorisation(twin_run, folder_of(tmp_path / "new", new))["twins"]["common"])
    names, images = read_run(twin_run).names("train"), training_images(twin_run)
    original = next(i for i, image in enumerate(images) if names[i] not in common and not is_blank(image))
    record = check_memorisation(twin_run, folder_of(tmp_path / "one", [*new, images[original]]))
    assert record["flagged"] and record["twins"]["copied"] == [names[original]]
    assert all(scores["near_copies_p"] >= FLAG_P for scores in record["scores"].values())
    assert "FLAGGED: 1 synthetic image is a copy of a training image" in summary_line(record)


def test_unseen_twins_of_training_images_are_named_and_left_out_of_the_reference(twin_run, tmp_path):
    record = check_memorisation(twin_run, folder_of(tmp_path, new_patients(tmp_path, 2)))
    split = pd.read_csv(twin_run / "split.csv")
    val = split[(split["partition"] == "val") & (split["target"] == 0)]
    blank_names = set(val.loc[val["comment"] == "blank film", "image_ID"])
    twins = record["twins"]
    assert blank_names and blank_names <= set(twins["leaked"])
    assert record["n_reference"] + twins["n_leaked"] + twins["n_unseen_duplicates"] == record["n_unseen"]
    assert all(scores["threshold"] > 0 for scores in record["scores"].values())


def test_the_twin_radius_holds_disguised_copies_and_keeps_other_patients_out(tmp_path):
    table = write_twin_table(tmp_path / "data", n_patients=60, size=32, seed=0)
    frame = pd.read_csv(table)
    originals = [np.asarray(Image.open(table.parent / path)) for path in frame["raw_image_path"]]
    rows = contrast_normalised(load_images(folder_of(tmp_path / "originals", originals), 32).images)
    copies = contrast_normalised(load_images(folder_of(tmp_path / "copies", disguised(originals)), 32).images)
    kept = torch.tensor((frame["comment"] != "blank film").to_numpy())
    assert float((copies - rows).norm(dim=1)[kept].max()) <= TWIN_RADIUS
    patients = frame["patient_id"].to_numpy()
    others = torch.tensor(patients[:, None] != patients[None, :]) & kept[:, None] & kept[None, :]
    assert float(torch.cdist(rows, rows)[others].min()) > TWIN_RADIUS


def test_authenticity_measures_a_training_image_against_its_nearest_distinct_one():
    # Training image 0 is there twice; its nearest distinct one is 10 away, so 0.1 is a copy.
    train = torch.tensor([[0.0], [0.0], [10.0]])
    scores, _ = memorisation_scores(torch.tensor([[0.1]]), train, torch.tensor([[3.0], [4.0], [6.0], [7.0]]))
    assert scores["authenticity"] == 0.0


def test_distances_tied_with_the_threshold_count_in_both_sets():
    train = torch.tensor([[0.0], [100.0]])
    # Four distinct unseen images 1 from a training image: the 5% quantile of 20 is tied four times.
    unseen = torch.tensor([[1.0], [-1.0], [99.0], [101.0], *([float(v)] for v in range(2, 18))])
    synthetic = torch.tensor([[1.0], [-1.0], [99.0], [101.0], *([v + 0.5] for v in range(2, 18))])
    scores, _ = memorisation_scores(synthetic, train, unseen)
    assert scores["threshold"] == 1.0 and scores["near_copies_unseen"] == pytest.approx(4 / 20)
    assert scores["near_copies"] == pytest.approx(4 / 20) and scores["near_copies_p"] > 0.3


def test_unseen_duplicates_of_training_images_never_make_the_threshold_0():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(10, 4, generator=generator)
    unseen = torch.cat([train[:3], torch.randn(7, 4, generator=generator)])
    synthetic = torch.cat([train[:1], torch.randn(5, 4, generator=generator)])
    scores, _ = memorisation_scores(synthetic, train, unseen)
    assert scores["threshold"] > 0 and scores["near_copies_unseen"] == pytest.approx(1 / 7)
    assert scores["near_copies"] < 1 / 5  # train[0] is in the unseen rows too: common, not tested


def test_a_moved_run_folder_is_checked_through_its_table(twin_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(twin_run, moved)
    fake = folder_of(tmp_path / "new", new_patients(tmp_path, 3)[:40])
    with pytest.raises(RxwganError, match="pass --table"):
        check_memorisation(moved, fake)
    record = check_memorisation(moved, fake, table=twin_run.parent / "data" / "table.csv")
    in_place = check_memorisation(twin_run, fake)
    assert record["scores"] == in_place["scores"] and record["twins"]["leaked"] == in_place["twins"]["leaked"]
    other = write_twin_table(tmp_path / "other", n_patients=115, size=32, seed=1)
    with pytest.raises(RxwganError, match="are not the ones"):
        check_memorisation(moved, fake, table=other)


def test_cli_names_the_copy_of_a_moved_run(twin_run, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(twin_run, moved)
    copied = next(image for image in training_images(twin_run) if not is_blank(image))
    fake = folder_of(tmp_path / "new", [*new_patients(tmp_path, 4)[:30], copied])
    table = twin_run.parent / "data" / "table.csv"
    assert main(["evaluate", "--memorisation", str(moved), "--fake", str(fake), "--table", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "FLAGGED: 1 synthetic image is a copy" in printed and "copies:  1 synthetic" in printed
