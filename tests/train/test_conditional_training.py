"""``train --conditional``: one run learns both classes of a fold, resumes exactly after a kill,
balances its batches and shows each latent under both classes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from test_training import assert_same_run, cli, train_args

from helpers import killer_script, quiet
from helpers import run_config as config
from rxwgan.base.errors import RxwganError
from rxwgan.data.phantoms import write_demo_data
from rxwgan.models import load_model
from rxwgan.models.conditioning import ClassBound
from rxwgan.train.loop import balanced_order, train
from rxwgan.train.state import GRID_SIDE, grid_batch


@pytest.fixture(scope="module")
def demo_table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=40, size=32, seed=3)


@pytest.fixture(scope="module")
def straight_run(demo_table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = cli(train_args(demo_table, out, "--conditional", "--fade_kimg", "0.02"))
    assert result.returncode == 0, result.stderr
    return out


def test_one_run_learns_both_classes(straight_run):
    record = json.loads((straight_run / "config.json").read_text())
    assert record["config"]["conditional"] is True
    assert record["generator"]["hparams"]["classes"] == record["critic"]["hparams"]["classes"] == 2
    split = (straight_run / "split.csv").read_text()
    assert record["train_images"] == sum(1 for line in split.splitlines()[1:] if line.endswith(",train"))
    generator = load_model(straight_run / "generator_trained")
    z = torch.randn(4, generator.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        zeros, ones = (ClassBound(generator, target)(z) for target in (0, 1))
    assert (zeros - ones).abs().mean() > 1e-4  # trained class terms: the class changes the image


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_conditional_run_resumes_to_the_same_result(demo_table, straight_run, tmp_path, sig):
    args = train_args(demo_table, tmp_path / "killed", "--conditional", "--fade_kimg", "0.02")
    killed = cli(args, killer_script(epoch=3, batch=1, signal_name=sig))
    assert killed.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 130), killed.stderr
    assert not (tmp_path / "killed" / "generator_trained.safetensors").exists()
    again = cli(args)
    assert again.returncode == 0, again.stderr
    assert "resuming from the checkpoint" in again.stdout
    assert_same_run(straight_run, tmp_path / "killed")


def test_resume_refuses_a_per_class_command_on_a_conditional_run(demo_table, straight_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(straight_run, copy)
    refused = cli(train_args(demo_table, copy, "--epochs", "6"))
    assert refused.returncode == 2
    assert "--conditional True -> False" in refused.stderr


def test_balanced_batches_take_the_classes_in_turn():
    labels = torch.tensor([0] * 5 + [1] * 15)
    order = balanced_order(labels, torch.Generator().manual_seed(0))
    assert len(order) == len(labels)
    assert labels[order].tolist() == [0, 1] * 10  # every batch of two holds one of each
    assert set(order[labels[order] == 0].tolist()) == set(range(5))  # the small class is repeated
    assert set(order[labels[order] == 1].tolist()) <= set(range(5, 20))


def test_table_balance_keeps_the_tables_mix(demo_table, tmp_path):
    result = train(config(demo_table, tmp_path / "run", conditional=True, class_balance="table", epochs=1),
                   log=quiet)
    assert result.epoch == 1


def test_the_grid_shows_each_latent_under_every_class():
    fixed = torch.randn(3 * GRID_SIDE, 8)
    z, labels = grid_batch(fixed, 2)
    assert len(z) == 6 * GRID_SIDE
    assert torch.equal(z[:GRID_SIDE], z[GRID_SIDE:2 * GRID_SIDE])  # rows 1 and 2: same latents
    assert labels[:2 * GRID_SIDE].tolist() == [0] * GRID_SIDE + [1] * GRID_SIDE
    assert torch.equal(z[2 * GRID_SIDE:3 * GRID_SIDE], fixed[GRID_SIDE:2 * GRID_SIDE])


def test_a_per_class_file_cannot_start_a_conditional_run(demo_table, tmp_path):
    first = train(config(demo_table, tmp_path / "plain", epochs=1), log=quiet)
    with pytest.raises(RxwganError, match="holds a per-class generator; add --conditional"):
        train(config(demo_table, tmp_path / "cond", conditional=True,
                     generator=str(first.output / "generator_trained"),
                     critic=str(first.output / "critic_trained")), log=quiet)


def test_a_class_without_two_training_rows_is_refused(tmp_path):
    table = write_demo_data(tmp_path / "data", n_images=40, size=32, seed=3)
    lines = table.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    target = header.split(",").index("target")
    kept = [row for row in rows if row.split(",")[target] == "1"] + \
        [row for row in rows if row.split(",")[target] == "0"][:1]
    table.write_text("\n".join([header, *kept]) + "\n")
    with pytest.raises(RxwganError, match="training row\\(s\\) of target 0"):
        train(config(table, tmp_path / "run", conditional=True, n_splits=2), log=quiet)
