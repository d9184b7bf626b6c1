"""``rxwgan utility``: classifier runs per fold x condition x seed, from a study's generators."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.table import read_table
from rxwgan.report.render import write_report
from rxwgan.utility.driver import run_utility
from rxwgan.utility.plan import study_folds
from rxwgan.utility.results import fold_key
from rxwgan.utility.settings import ClassifierSettings, UtilitySettings
from rxwgan.utility.task import run_task
from rxwgan.utility.workers import UtilityOptions
from tiny_study import LOCAL, SETTINGS, results_of, train_study


@pytest.fixture
def study(tiny_study) -> Path:
    return tiny_study


def test_one_row_per_fold_condition_and_seed_with_every_score(study):
    runs = pd.read_csv(study / "utility" / "utility.csv")
    assert len(runs) == 2 * 4  # two folds x (real, real+synth, synth, swapped) x one seed
    assert set(runs["condition"]) == {"real", "real+synth", "synth", "swapped"}
    assert runs[["auc", "sp_index", "sens_at_spec90", "spec_at_sens90"]].notna().all().all()
    assert (runs["n_test"] == 20).all()  # each fold's validation half of 40 rows
    mixed = runs[runs["condition"] == "real+synth"]
    assert (mixed["n_fit_synthetic"] == mixed["n_fit_real"]).all()  # ratio 1: one per real image
    assert (runs.loc[runs["condition"] == "synth", "n_fit_real"] == 0).all()
    summary = pd.read_csv(study / "utility" / "summary.csv")
    assert set(summary["n_folds"]) == {2}
    assert (study / "utility" / "roc.png").stat().st_size > 0


def test_test_rows_are_never_trained_or_stopped_on_nor_seen_by_the_folds_generators(study):
    table = read_table(study.parent / "data" / "table.csv")
    found = sorted((study / "utility" / "runs").glob("*/*/*_seed*.json"))
    records = [json.loads(path.read_text()) for path in found]
    assert len(records) == 8
    for record in records:
        rows = {name: set(values) for name, values in record["rows"].items()}
        assert rows["test"] and rows["fit"] and rows["stop"]
        assert not rows["test"] & rows["fit"] and not rows["test"] & rows["stop"]
        assert not rows["fit"] & rows["stop"]
        for target in (0, 1):
            split = pd.read_csv(study / record["split"] / f"target_{target}" / "split.csv")
            generator_rows = set(np.flatnonzero((split["partition"] == "train").to_numpy()))
            assert not rows["test"] & generator_rows
        assert len(rows["fit"] | rows["stop"] | rows["test"]) == len(table)  # k-fold: nothing else


def test_a_rerun_does_nothing(study, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    before = (copy / "utility" / "utility.csv").read_bytes()
    lines: list[str] = []
    run_utility(copy, SETTINGS, LOCAL, log=lines.append)
    assert any("8 done before, 0 to run" in line for line in lines)
    assert (copy / "utility" / "utility.csv").read_bytes() == before


def test_the_same_study_and_seeds_give_the_same_table_on_ray(study, tmp_path):
    pytest.importorskip("ray")
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    shutil.rmtree(copy / "utility")
    result = run_utility(copy, SETTINGS, UtilityOptions(), log=lambda _: None)
    assert result.ok
    assert (copy / "utility" / "utility.csv").read_bytes() == (study / "utility" / "utility.csv").read_bytes()


def test_the_report_shows_the_summary_and_the_roc_figure(study, tmp_path):
    report = write_report(study, tmp_path / "report")
    markdown = report.markdown.read_text()
    assert "Does the synthetic data help?" in markdown and "real+synth x1 - real: AUC" in markdown
    assert (tmp_path / "report" / "utility_roc.png").is_file()


def test_swapped_labels_score_below_real_with_a_generator_that_draws_real_phantoms(tmp_path, monkeypatch):
    """The control can fail: with synthetic images that are real phantoms of the generator's
    class, real+synth helps or keeps AUC, and swapping their labels must pull it down."""
    import rxwgan.utility.task as task_module
    from rxwgan.utility.plan import UtilityTask

    table = write_demo_data(tmp_path / "data", n_images=100, size=32, seed=11)
    train_study(table, tmp_path / "study", (0,))
    pool = write_demo_data(tmp_path / "pool", n_images=80, size=32, seed=12)
    import torch

    from rxwgan.data.cache import ImageCache

    pool_table = read_table(pool)
    images = torch.from_numpy(ImageCache().load_rows(pool_table, 32, progress=False))
    by_class = {t: images[torch.from_numpy(pool_table.targets == t)] for t in (0, 1)}

    def drawn_from_the_class(generator, indices, seed=0, **_):
        target = int(generator.drawn_class)
        return by_class[target][list(indices)]

    fold = study_folds(tmp_path / "study")[0]
    settings = UtilitySettings(classifier=ClassifierSettings(size=32, max_epochs=30))
    key = fold_key(settings, fold).key
    real_loader = task_module.load_generator

    def load_marked(path, device="cpu", weights="ema", target=None):
        module, sha = real_loader(path, device, weights, target)
        module.drawn_class = 1 if "target_1" in str(path) else 0
        return module, sha

    monkeypatch.setattr(task_module, "synthetic_images", drawn_from_the_class)
    monkeypatch.setattr(task_module, "load_generator", load_marked)
    scores = {condition: run_task(fold, UtilityTask("fold_0", key, condition, 1.0, 0), settings,
                                  tmp_path / "out")["auc"] for condition in ("real", "swapped")}
    assert scores["real"] > 0.85
    assert scores["swapped"] < scores["real"] - 0.25


@pytest.mark.parametrize("args, message", [
    (["--ratio", "abc"], "--ratio 'abc'"),
    (["--ratio", "0"], "--ratio: each ratio must be above 0"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--folds", "fold_7"], "--folds: fold_7 not in"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_bad_flags_are_one_line_errors(study, capsys, args, message):
    assert main(["utility", str(study), "--local", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_fold_with_an_unfinished_or_missing_class_run_is_named(study, tmp_path, capsys):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    (copy / "fold_1" / "target_1" / "generator_trained.safetensors").unlink()
    # asked for by --folds (without it, such a fold is left out: see the test below)
    assert main(["utility", str(copy), "--local", "--folds", "0-1"]) == 2
    assert "fold_1/target_1: this run has not finished" in capsys.readouterr().err
    shutil.rmtree(copy / "fold_1" / "target_1")
    assert main(["utility", str(copy), "--local", "--overwrite", "--folds", "0-1"]) == 2
    assert "fold_1: no run of target 1" in capsys.readouterr().err
    assert main(["utility", str(tmp_path / "nowhere"), "--local"]) == 2
    assert "no such study folder" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (dict(gpus_per_task=-1), "--gpus_per_task must be 0 or more, not -1"),
    (dict(cpus_per_task=0), "--cpus_per_task must be at least 1, not 0"),
    (dict(max_retries=-1), "--max_retries must be at least 0, not -1"),
])
def test_an_impossible_resource_request_is_refused_before_anything_is_written(study, tmp_path, options,
                                                                            message):
    """--gpus_per_task -1 gave a traceback; a notebook's UtilityOptions were not checked at all
    (study hardening, case 12)."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    before = results_of(copy)
    with pytest.raises(RxwganError, match=f"^{message}$"):
        run_utility(copy, SETTINGS, dataclasses.replace(LOCAL, **options), log=lambda _: None)
    assert results_of(copy) == before


def test_the_weights_recorded_are_those_each_generator_holds(study, tmp_path):
    """A generator trained with --ema_kimg 0 has no moving average: its raw weights are used,
    and utility.json and each run's record say so (study hardening, case 7)."""
    from rxwgan.models import load_model, save_model

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    no_average = copy / "fold_0" / "target_1" / "generator_trained.safetensors"
    save_model(load_model(no_average, role="generator", weights="raw"), no_average)
    run_utility(copy, SETTINGS, LOCAL, folds=["fold_0"], overwrite=True, log=lambda _: None)
    fold = json.loads((copy / "utility" / "utility.json").read_text())["folds"]["fold_0"]
    assert {t: entry["weights"] for t, entry in fold["generators"].items()} == {"0": "ema", "1": "raw"}
    for path in (copy / "utility" / "runs" / "fold_0" / fold["key"]).glob("*_seed*.json"):
        used = json.loads(path.read_text())["generators"]
        assert used["0"]["weights"] == "ema" and used["1"]["weights"] == "raw"


def test_a_classifier_size_its_blocks_cannot_take_is_refused_before_anything_is_written(study, tmp_path):
    """--size 7 failed late, in every task, after utility.json was saved; with --overwrite the
    finished results were gone first (study hardening, case 9)."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    before = results_of(copy)
    small = dataclasses.replace(SETTINGS, classifier=dataclasses.replace(SETTINGS.classifier, size=7))
    with pytest.raises(RxwganError, match="size 7 is too small for 4 blocks"):
        run_utility(copy, small, LOCAL, overwrite=True, log=lambda _: None)
    assert results_of(copy) == before


def test_a_second_utility_on_the_same_study_is_refused(study, tmp_path):
    """Two utility commands at once both ran every task (study hardening, case 10)."""
    from rxwgan.base import folder_lock

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    before = results_of(copy)
    with folder_lock.hold(copy / "utility"), pytest.raises(RxwganError, match="is in use by another rxwgan"):
        run_utility(copy, SETTINGS, LOCAL, log=lambda _: None)
    assert results_of(copy) == before


def test_without_folds_the_splits_whose_class_runs_finished_are_used(study, tmp_path):
    """The help says so; a split with an unfinished class run refused the command
    (study hardening, case 14)."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    (copy / "fold_1" / "target_1" / "generator_trained.safetensors").unlink()  # as if still training
    lines: list[str] = []
    result = run_utility(copy, SETTINGS, LOCAL, log=lines.append)
    assert set(result.runs["split"]) == {"fold_0"}
    assert "left out, a class run not finished: fold_1" in lines
    with pytest.raises(RxwganError, match="fold_1/target_1: this run has not finished"):
        run_utility(copy, SETTINGS, LOCAL, folds=["fold_1"], log=lines.append)


def test_a_damaged_result_file_is_run_again_and_never_counted(study, tmp_path):
    """A truncated or another task's result file gave a traceback on the next run, and --status
    counted it as finished (study hardening, case 4)."""
    from rxwgan.utility.driver import utility_status

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    results = sorted((copy / "utility" / "runs" / "fold_0").glob("*/*_seed*.json"))
    cut, foreign = results[0], results[1]
    cut.write_bytes(cut.read_bytes()[:50])
    foreign.write_bytes(results[2].read_bytes())  # valid JSON, but another task's
    assert "fold_0: 2/4 classifier runs finished" in utility_status(copy)
    lines: list[str] = []
    result = run_utility(copy, SETTINGS, LOCAL, log=lines.append)
    damaged = next(line for line in lines if "damaged" in line)
    assert damaged.startswith("2 damaged result file(s), run again: ")
    assert all(str(path.relative_to(copy / "utility")) in damaged for path in (cut, foreign))
    assert result.ok and len(result.runs) == 8
    assert "fold_0: 4/4 classifier runs finished" in utility_status(copy)
