"""``rxwgan utility`` and ``rxwgan report`` on a conditional study: each fold's one generator gives
both classes, its results are filed apart from per-class generators', and a split holding both
kinds of run needs ``--runs``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import train
from rxwgan.utility.driver import run_utility
from rxwgan.utility.plan import study_folds
from rxwgan.utility.results import fold_key
from tiny_study import LOCAL, SETTINGS, train_study


@pytest.fixture(scope="module")
def conditional_study(tmp_path_factory) -> Path:
    """Two folds of 40 phantoms, each with one conditional ``tiny`` run of one epoch, and the
    utility run over both."""
    root = tmp_path_factory.mktemp("conditional")
    with pytest.MonkeyPatch.context() as patch:  # before conftest's per-test cache folder
        patch.setenv("RXWGAN_CACHE_DIR", str(root / "cache"))
        table = write_demo_data(root / "data", n_images=40, size=32, seed=3)
        for fold in (0, 1):
            train(TrainConfig(input=str(table), output=str(root / "study" / f"fold_{fold}" / "conditional"),
                              conditional=True, model="tiny", epochs=1, batch_size=4, n_critic=1,
                              split=SplitSpec(fold=fold, n_splits=2), save_for_each=10, disp_for_each=10,
                              precision="fp32", cache_dir=str(table.parent / "cache"), progress=False),
                  log=lambda _: None)
        run_utility(root / "study", SETTINGS, LOCAL, log=lambda _: None)
    return root / "study"


def results(study: Path) -> list[dict]:
    found = sorted((study / "utility" / "runs").glob("*/*/*_seed*.json"))
    return [json.loads(path.read_text()) for path in found]


def test_the_tables_cover_both_folds_with_the_conditional_generators(conditional_study):
    runs = pd.read_csv(conditional_study / "utility" / "utility.csv")
    assert set(runs["split"]) == {"fold_0", "fold_1"} and len(runs) == 2 * 4
    record = json.loads((conditional_study / "utility" / "utility.json").read_text())
    assert record["runs"] == "conditional"
    assert {fold["state"] for fold in record["folds"].values()} == {"complete"}
    assert "> generators: conditional runs" in (conditional_study / "utility" / "summary.md").read_text()


def test_each_result_names_the_one_file_under_both_classes(conditional_study):
    found = results(conditional_study)
    assert len(found) == 8
    for record in found:
        used = record["generators"]
        assert set(used) == {"0", "1"} and used["0"]["file"] == used["1"]["file"]
        run = conditional_study / record["split"] / "conditional"
        assert Path(used["0"]["file"]).parent == run.resolve()
        synthetic = record["condition"] != "real"
        assert (used["0"]["synthetic"] > 0, used["1"]["synthetic"] > 0) == (synthetic, synthetic)


@pytest.fixture(scope="module")
def mixed_study(conditional_study, tmp_path_factory) -> Path:
    """The conditional study, plus per-class runs of fold_0: a split holding both kinds."""
    study = tmp_path_factory.mktemp("mixed") / "study"
    shutil.copytree(conditional_study, study)
    train_study(conditional_study.parent / "data" / "table.csv", study, (0,))
    return study


def test_a_split_with_both_kinds_needs_runs(mixed_study, capsys):
    with pytest.raises(RxwganError, match="--runs per-class or --runs conditional"):
        run_utility(mixed_study, SETTINGS, LOCAL, log=lambda _: None)
    assert main(["utility", str(mixed_study), "--local"]) == 2
    err = capsys.readouterr().err
    assert "--runs" in err and err.count("\n") == 1
    with pytest.raises(RxwganError, match="--runs must be one of auto, per-class, conditional"):
        study_folds(mixed_study, runs="both")


def test_runs_chooses_the_generators_and_their_results_are_keyed_apart(mixed_study):
    [per_class] = study_folds(mixed_study, runs="per-class")  # fold_1 has no per-class runs
    conditional = study_folds(mixed_study, runs="conditional")
    assert [fold.split.name for fold in conditional] == ["fold_0", "fold_1"]
    assert per_class.split == conditional[0].split
    assert per_class.generators[0] != per_class.generators[1]
    assert conditional[0].generators[0] == conditional[0].generators[1]
    keys = {fold_key(SETTINGS, fold).key for fold in (per_class, conditional[0])}
    assert len(keys) == 2  # same table and partition, other generators: never each other's results

    lines: list[str] = []
    result = run_utility(mixed_study, SETTINGS, LOCAL, runs="per-class", log=lines.append)
    assert set(result.runs["split"]) == {"fold_0"}
    assert "left out, a class run not finished: fold_1" in lines
    record = json.loads((mixed_study / "utility" / "utility.json").read_text())
    assert record["runs"] == "per-class"
    summary = (mixed_study / "utility" / "summary.md").read_text()
    assert "> generators: per-class runs" in summary and "> not ready: fold_1: a class run" in summary
    folders = {Path(record["generators"]["0"]["file"]).parent.name for record in results(mixed_study)}
    assert folders == {"target_0", "conditional"}  # each kind's results kept, apart


def test_the_report_lists_conditional_runs(conditional_study, tmp_path, capsys):
    assert main(["report", str(conditional_study), "-o", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(zip(runs["run"], runs["target"], strict=True)) == [("fold_0/conditional", "both"),
                                                                   ("fold_1/conditional", "both")]
    best = pd.read_csv(tmp_path / "best.csv")
    assert list(best["target"]) == ["both"] and best["run"].iloc[0] in set(runs["run"])
    markdown = (tmp_path / "report.md").read_text()
    assert "Both targets, conditional (2 runs)" in markdown and "> generators: conditional runs" in markdown
    assert (tmp_path / "samples_target_conditional.png").stat().st_size > 0
