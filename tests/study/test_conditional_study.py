"""Conditional studies (``sweep --conditional``): one run per split at ``<split>/conditional/``,
planned, recorded in sweep.json, shown by ``sweep --status`` and resumed like per-class runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sweep import base, cli_flags, quiet

from rxwgan.cli import build_parser, main
from rxwgan.cli.sweep import sweep_plan
from rxwgan.data.phantoms import write_demo_data
from rxwgan.study.plan import (
    RunPlan,
    is_finished,
    plan_runs,
    plan_splits,
    planned_epochs,
    study_runs,
    study_status,
)
from rxwgan.study.status import format_status
from rxwgan.train.loop import train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("conditional") / "data", n_images=40, size=32, seed=3)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, RunPlan]:
    """A study with one conditional run, trained for --kimg 0.05 outside any sweep."""
    study = tmp_path_factory.mktemp("study")
    [run] = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), conditional=True)
    train(run.config(base(data, kimg=0.05), study), log=quiet)
    return study, run


def test_a_conditional_plan_has_one_run_per_split_that_learns_both_classes(data, tmp_path):
    runs = plan_runs(plan_splits("kfold", n_splits=2), conditional=True)
    assert [run.path for run in runs] == ["fold_0/conditional", "fold_1/conditional"]
    config = runs[1].config(base(data), tmp_path)
    assert config.conditional and config.classes == (0, 1)
    assert (config.split.fold, config.output) == (1, str(tmp_path / "fold_1" / "conditional"))
    per_class = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), [1])[0].config(config, tmp_path)
    assert not per_class.conditional and per_class.target == 1  # a per-class run of the same base


def test_a_plan_round_trips_through_its_sweep_json_entry():
    [conditional] = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), conditional=True)
    [per_class] = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), [0])
    for run in (conditional, per_class):
        assert RunPlan.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    older = {key: value for key, value in per_class.to_dict().items() if key != "conditional"}
    assert RunPlan.from_dict(older) == per_class  # sweep.json written before conditional runs


def test_the_sweep_flags_plan_conditional_runs(data, tmp_path):
    args = build_parser().parse_args(cli_flags(data, tmp_path, "--n_splits", "2", "--conditional"))
    config, runs = sweep_plan(args)
    assert config.conditional and [run.path for run in runs] == ["fold_0/conditional", "fold_1/conditional"]


def test_targets_with_conditional_is_refused_in_one_line(data, tmp_path, capsys):
    assert main(cli_flags(data, tmp_path / "study", "--conditional", "--targets", "1")) == 2
    err = capsys.readouterr().err
    assert "--targets" in err and "--conditional" in err and err.count("\n") == 1
    assert not (tmp_path / "study").exists()


def test_kimg_counts_the_images_of_both_classes(trained):
    study, run = trained
    folder = study / run.path
    saved = json.loads((folder / "config.json").read_text())
    assert saved["config"]["conditional"] and saved["train_images"] == 20  # both classes of fold_0's half
    epochs = planned_epochs(folder, base(Path("t.csv"), kimg=0.05))
    assert epochs == saved["epochs"] == 3  # 50 images, 5 batches of 4 an epoch
    assert is_finished(folder, epochs)


def test_status_and_study_runs_find_a_conditional_run_without_sweep_json(trained, capsys):
    study, run = trained
    assert study_runs(study) == [run]
    [row] = study_status(study)
    assert (row.path, row.target, row.state) == ("fold_0/conditional", None, "done")
    assert (row.epoch, row.epochs) == (3, 3)
    assert main(["sweep", "--status", str(study)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["fold_0/conditional", "done", "3/3"] and table[-1] == "1 done"


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from rxwgan.base.ray_runner import start_local_ray

    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_a_conditional_sweep_trains_records_and_resumes_its_runs(local_ray, data, tmp_path):
    flags = cli_flags(data, tmp_path, "--n_splits", "2", "--epochs", "1", "--conditional")
    assert main(flags) == 0
    paths = ["fold_0/conditional", "fold_1/conditional"]
    entries = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert [(entry["path"], entry["conditional"]) for entry in entries] == [(path, True) for path in paths]
    for path in paths:
        assert json.loads((tmp_path / path / "config.json").read_text())["config"]["conditional"] is True
        assert (tmp_path / path / "generator_trained.safetensors").is_file()
    assert [row.state for row in study_status(tmp_path)] == ["done", "done"]
    assert format_status(study_status(tmp_path)).splitlines()[-1] == "2 done"
    before = {path: (tmp_path / path / "checkpoint.json").stat().st_mtime_ns for path in paths}
    assert main(flags) == 0  # finished: nothing to train again
    assert before == {path: (tmp_path / path / "checkpoint.json").stat().st_mtime_ns for path in paths}
