"""Metrics one can compare: one feature space per study, content-keyed caches, untouched RNGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rxwgan.metrics.compute as metrics_module
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import RUN_SPACE_RECORD, STUDY_SPACE_FILE
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec, partition
from rxwgan.data.table import read_table
from rxwgan.metrics import evaluate_generator, space_builder
from rxwgan.metrics.space_per_study import study_space
from rxwgan.metrics.stats_cache import images_md5
from rxwgan.models import build_generator, save_model
from rxwgan.report.collect import select_best
from rxwgan.report.render import write_report
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import train

SIZE = 32


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("hardening"), n_images=40, size=SIZE, seed=3)


def config(table: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(input=str(table), output=str(out), model="tiny", epochs=1, batch_size=4, n_critic=2,
                  fold=0, n_splits=2, save_for_each=10, disp_for_each=10, precision="fp32",
                  progress=False, eval_for_each=1, eval_metrics=("kid", "pr"), eval_features="random")
    values.update(overrides)
    values["split"] = SplitSpec(fold=values.pop("fold"), n_splits=values.pop("n_splits"))
    return TrainConfig(**values)


def rows_images(table: Path, rows) -> tuple[torch.Tensor, np.ndarray]:
    from rxwgan.data.cache import ImageCache

    frame = read_table(table)
    images = ImageCache().load([frame.paths[i] for i in rows], SIZE, progress=False)
    return torch.from_numpy(images), frame.targets[rows]


# --- 16: the real set's features are keyed by its content ----------------------------------

def test_a_later_run_in_the_same_folder_scores_its_own_validation_images(table, tmp_path, monkeypatch):
    seen = []
    original = metrics_module._real_features

    def spy(space, real_set, *args):
        found = original(space, real_set, *args)
        seen.append((real_set.images.clone(), found, space(real_set.images)))
        return found

    monkeypatch.setattr(metrics_module, "_real_features", spy)
    out = tmp_path / "run"
    train(config(table, out, fold=0), log=quiet)
    train(config(table, out, fold=1, overwrite=True), log=quiet)  # same process, folder, other split
    (first, _, _), (second, found, expected) = seen
    assert not torch.equal(first, second)
    assert found.shape == expected.shape and torch.allclose(found, expected)  # not the first run's


# --- 17: evaluations leave every global generator alone ------------------------------------

def test_evaluation_never_reseeds_the_global_generators(table, tmp_path, monkeypatch):
    """The CUDA generators are reseeded only through torch.manual_seed / cuda.manual_seed*:
    seen here as calls, on a machine without a GPU."""
    torch.manual_seed(0)
    generator = build_generator("tiny")
    real, labels = rows_images(table, range(12))
    reseeded = []
    for name in ("manual_seed", "manual_seed_all"):
        monkeypatch.setattr(torch.cuda, name, lambda seed, name=name: reseeded.append((name, seed)))
    before = torch.get_rng_state()
    for space in ("random", "trained"):
        evaluate_generator(generator, real, ["kid", "pr"], features=space, seed=1)
    assert reseeded == []
    assert torch.equal(torch.get_rng_state(), before)


def test_loading_a_cached_encoder_leaves_the_cpu_generator_alone(table):
    real, labels = rows_images(table, range(12))
    space_builder.resolve_space("trained", real, labels, seed=2)  # trained once, cached on disk
    space_builder._MEMO.clear()
    before = torch.get_rng_state()
    space_builder.resolve_space("trained", real, labels, seed=2)  # read back from the cache
    assert torch.equal(torch.get_rng_state(), before)


# --- 15: one feature space per study, its id beside every number ---------------------------

def test_a_single_run_fits_its_space_on_its_training_rows_and_records_its_id(table, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, eval_features="trained"), log=quiet)
    record = json.loads((out / RUN_SPACE_RECORD).read_text())
    train_rows = partition(read_table(table).targets, SplitSpec(fold=0, n_splits=2)).train
    images, labels = rows_images(table, train_rows)
    assert record["id"] == space_builder.encoder_key("trained", images_md5(images, labels), SIZE, 512)
    assert record["fitted_on"]["n_rows"] == len(train_rows)


def test_a_resume_in_another_space_is_refused(table, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, epochs=1), log=quiet)
    with pytest.raises(RxwganError,
                       match=f"{RUN_SPACE_RECORD}: this run's metrics so far are in feature space"):
        train(config(table, out, epochs=2, eval_features="trained"), log=quiet)


def test_a_given_space_file_is_used_by_the_run_and_by_evaluate(table, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    splits = [SplitSpec(fold=0, n_splits=4)]
    file, record = study_space("trained", study, table, splits, SIZE, seed=0, path_column="raw_image_path",
                               target_column="target", cache_dir=None, fit_all=False, refit=False)
    assert file == str(study / STUDY_SPACE_FILE) and record["fitted_on"]["n_rows"] == 30
    assert set(record["fitted_on"]["row_indices"]).isdisjoint(
        partition(read_table(table).targets, splits[0]).val)
    out = tmp_path / "run"
    train(config(table, out, eval_features=file), log=quiet)
    assert json.loads((out / RUN_SPACE_RECORD).read_text())["id"] == record["id"]
    torch.manual_seed(0)
    save_model(build_generator("tiny"), tmp_path / "g.safetensors")
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--real", str(table), "--fake", str(tmp_path / "g.safetensors"), "-n", "20",
                 "--metrics", "kid", "--features", file, "--json", str(report)]) == 0
    saved = json.loads(report.read_text())
    assert saved["space_id"] == record["id"] and saved["features"]["fitted_on"]["n_rows"] == 30


def test_a_study_with_no_unscored_rows_needs_the_flag(table, tmp_path, capsys):
    flags = ["sweep", "-i", str(table), "-o", str(tmp_path / "study"), "--model", "tiny", "--n_splits", "2",
             "--eval_for_each", "1", "--eval_features", "trained"]
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert "--eval_fit_all" in err and err.count("\n") == 1
    splits = [SplitSpec(fold=f, n_splits=2) for f in (0, 1)]
    file, record = study_space("random", tmp_path / "study", table, splits, SIZE, seed=0,
                               path_column="raw_image_path", target_column="target", cache_dir=None,
                               fit_all=True, refit=False)
    assert record["fitted_on"]["n_rows"] == 40 and "--eval_fit_all" in record["fitted_on"]["rows"]
    with pytest.raises(RxwganError, match="--eval_fit_all"):  # the saved space saw scored rows
        study_space("random", tmp_path / "study", table, splits, SIZE, seed=0, path_column="raw_image_path",
                    target_column="target", cache_dir=None, fit_all=False, refit=False)


def test_report_refuses_to_rank_numbers_from_different_spaces():
    frame = pd.DataFrame({"run": ["fold_0/target_1", "fold_1/target_1", "fold_0/target_0"],
                          "test": [None, None, None], "target": [1, 1, 0], "kid": [0.2, 0.1, 0.3],
                          "val_kl_rf": [0.1, 0.2, 0.3],
                          "eval_space": ["trained-a", "trained-b", "trained-a"]})
    with pytest.raises(RxwganError, match=r"fold_0/target_1 \(trained-a\), fold_1/target_1 \(trained-b\)"):
        select_best(frame, "kid")
    assert list(select_best(frame, "val_kl_rf")["run"]) == ["fold_0/target_0", "fold_0/target_1"]
    frame["eval_space"] = "trained-a"
    assert list(select_best(frame, "kid")["run"]) == ["fold_0/target_0", "fold_1/target_1"]


def test_report_of_single_runs_in_their_own_spaces_refuses_kid(table, tmp_path, capsys):
    study = tmp_path / "study"
    for fold in (0, 1):
        train(config(table, study / f"fold_{fold}" / "target_1", fold=fold, epochs=1), log=quiet)
    assert main(["report", str(study), "--select", "kid"]) == 2
    err = capsys.readouterr().err
    assert "fold_0/target_1 (random-" in err and "fold_1/target_1 (random-" in err and err.count("\n") == 1
    # As if both had measured in one space (a study's): then kid ranks them.
    shutil.copy(study / "fold_0/target_1" / RUN_SPACE_RECORD, study / "fold_1/target_1" / RUN_SPACE_RECORD)
    report = write_report(study, select="kid")
    assert len(report.best) == 1 and report.runs["eval_space"].nunique() == 1
