"""Named recipes: what a plain ``rxwgan train`` gets, what typed flags, old commands and resumed
runs keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rxwgan.cli import build_run_wgangp_parser, main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.train.config import TrainConfig
from rxwgan.train.recipes import RECIPES, recipe_config


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=40, size=32, seed=3)


def recorded(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["config"]


def train(table: Path, out: Path, *flags: str) -> int:
    return main(["train", "-i", str(table), "-o", str(out), "--epochs", "1", "--n_splits", "2",
                 "--no-progress", *flags])


def test_a_plain_command_on_a_cpu_gets_the_cpu_recipe(table, tmp_path, capsys):
    assert train(table, tmp_path / "run", "--model", "tiny") == 0
    assert capsys.readouterr().out.startswith("recipe cpu (the default on a CPU")
    config, cpu = recorded(tmp_path / "run"), RECIPES["cpu"]
    assert config["recipe"] == "cpu"
    assert (config["batch_size"], config["n_critic"], config["lr"], config["betas"], config["dropout"]) == \
        (cpu.batch_size, cpu.n_critic, cpu.lr, list(cpu.betas), cpu.dropout)
    assert config["model"] == "tiny"  # a typed flag wins over the recipe


def test_typed_flags_win_and_architectures_without_dropout_get_none(table, tmp_path):
    assert train(table, tmp_path / "run", "--model", "tiny", "--lr", "0.001", "--recipe", "keras") == 0
    config = recorded(tmp_path / "run")
    assert (config["lr"], config["n_critic"], config["recipe"]) == (0.001, RECIPES["keras"].n_critic, "keras")
    assert recipe_config("cpu", input="t.csv", output="o", model="resnet64").dropout is None


def test_a_resumed_run_keeps_its_recorded_settings_whatever_the_default(table, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(table, out, "--model", "tiny", "--recipe", "keras") == 0
    capsys.readouterr()
    # The same folder without --recipe: today's default would be cpu; the run continues as recorded.
    assert main(["train", "-i", str(table), "-o", str(out), "--epochs", "2", "--n_splits", "2",
                 "--no-progress"]) == 0
    assert "resuming with the settings the run recorded" in capsys.readouterr().out
    config = recorded(out)
    assert (config["recipe"], config["lr"], config["batch_size"]) == ("keras", 1e-4, 16)


def test_the_old_commands_compute_what_they_always_did(table, tmp_path):
    args = build_run_wgangp_parser().parse_args(["-i", str(table), "-o", str(tmp_path)])
    from rxwgan.cli.train import typed_settings
    from rxwgan.train.recipes import resolved_settings

    settings, _ = resolved_settings(typed_settings(args), "cpu", None)
    old = TrainConfig(input=str(table), output=str(tmp_path), model="v1")
    mine = TrainConfig(**settings)
    for name in ("model", "batch_size", "n_critic", "lr", "betas", "dropout"):
        assert getattr(mine, name) == getattr(old, name), name
    from_files, _ = resolved_settings({"input": "t.csv", "output": "o", "generator": "g", "critic": "c"},
                                      "cpu", None)
    assert from_files["recipe"] == "keras" and "model" not in from_files
    on_a_gpu, line = resolved_settings({"input": "t.csv", "output": "o"}, "cuda", None)
    assert (on_a_gpu["recipe"], on_a_gpu["model"]) == ("gpu", "resnet128") and "on a GPU" in line


def test_an_unknown_recipe_is_refused_in_one_line(table, tmp_path, capsys):
    assert train(table, tmp_path / "run", "--recipe", "fast") == 2
    error = capsys.readouterr().err
    assert "--recipe" in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_sweep_takes_the_recipe_and_a_continued_study_what_it_recorded(table, tmp_path, capsys):
    from rxwgan.base.layout import SWEEP_FILE
    from rxwgan.cli import build_parser
    from rxwgan.cli.sweep import sweep_plan

    flags = ["sweep", "-i", str(table), "-o", str(tmp_path), "--gpus-per-run", "0"]
    base, _ = sweep_plan(build_parser().parse_args(flags))
    assert (base.recipe, base.lr, base.model) == ("cpu", RECIPES["cpu"].lr, RECIPES["cpu"].model)
    old = TrainConfig(input=str(table), output=str(tmp_path)).to_dict()  # a study from before recipes
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"config": old}))
    capsys.readouterr()
    base, _ = sweep_plan(build_parser().parse_args(flags))
    assert (base.lr, base.batch_size, base.model) == (1e-4, 16, None)
    assert "settings the study recorded" in capsys.readouterr().out
