"""Training options that make generators learn: EMA, DiffAugment, length in kimg, the best generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import quiet, run_config
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import LOCK_FILE
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.models import load_model
from rxwgan.train.loop import train


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=40, size=32, seed=3)


def test_generator_file_holds_the_moving_average_and_load_model_prefers_it(table, tmp_path):
    out = tmp_path / "run"
    train(run_config(table, out, epochs=2, ema_kimg=0.01), log=quiet)
    averaged = load_model(out / "generator_trained", role="generator")
    trained = load_model(out / "generator_trained", role="generator", weights="raw")
    assert (averaged.weights, trained.weights) == ("ema", "raw")
    differs = [not torch.equal(a, b) for a, b in zip(averaged.state_dict().values(),
                                                     trained.state_dict().values(), strict=True)]
    assert any(differs)
    assert load_model(out / "critic_trained", role="critic").weights == "raw"


def test_no_moving_average_when_off(table, tmp_path):
    out = tmp_path / "run"
    train(run_config(table, out, epochs=1, ema_kimg=0), log=quiet)
    assert load_model(out / "generator_trained", role="generator").weights == "raw"


@pytest.mark.parametrize("options", [{"augment": "translation,cutout,brightness,contrast"},
                                     {"ema_kimg": 0.01}])
def test_killed_run_with_augmentation_or_ema_resumes_bit_for_bit(table, tmp_path, options):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(run_config(table, straight, **options), log=quiet)
    train(run_config(table, split, epochs=2, **options), log=quiet)
    train(run_config(table, split, **options), log=quiet)
    for name in ("generator_trained.safetensors", "critic_trained.safetensors"):
        from safetensors.torch import load_file

        a, b = load_file(str(straight / name)), load_file(str(split / name))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (json.loads((straight / "history.json").read_text())
            == json.loads((split / "history.json").read_text()))


def test_augmentation_changes_training_and_none_does_not(table, tmp_path):
    runs = {}
    for name, policy in (("none", ""), ("aug", "translation,cutout")):
        runs[name] = train(run_config(table, tmp_path / name, epochs=1, ema_kimg=0, augment=policy),
                           log=quiet).history["train_critic_loss"][0]
    plain = train(run_config(table, tmp_path / "plain", epochs=1, ema_kimg=0), log=quiet)
    assert runs["none"] == plain.history["train_critic_loss"][0]
    assert runs["aug"] != runs["none"]


def test_length_in_kimg_and_generator_steps(table, tmp_path):
    # 16 target-1 training images at batch 4: 4 batches, 16 images per epoch; n_critic 2.
    result = train(run_config(table, tmp_path / "kimg", kimg=0.05), log=quiet)
    assert result.epoch == 4  # ceil(50 / 16)
    saved = json.loads((tmp_path / "kimg" / "config.json").read_text())
    assert saved["epochs"] == 4 and saved["train_images"] == 16
    assert train(run_config(table, tmp_path / "steps", gen_steps=5), log=quiet).epoch == 3  # ceil(10 / 4)
    with pytest.raises(RxwganError, match="--kimg and --gen_steps"):
        train(run_config(table, tmp_path / "both", kimg=1, gen_steps=1), log=quiet)


def test_best_generator_is_kept_with_its_epoch(table, tmp_path):
    out = tmp_path / "run"
    history = train(run_config(table, out, epochs=3, eval_for_each=1, eval_metrics=("kid",),
                               eval_features="random", n_splits=2), log=quiet).history
    best = json.loads((out / "best.json").read_text())
    kids = history["kid"]
    assert best["kid"] == min(kids) and kids[best["epoch"] - 1] == best["kid"]
    assert best["space_id"] and load_model(out / "generator_best", role="generator").weights == "ema"


@pytest.mark.parametrize("flags,message", [
    (["--augment", "rotate"], "unknown augmentation 'rotate'"),
    (["--init", "glorot"], "invalid choice: 'glorot'"),
    (["--ema_kimg", "-1"], "--ema_kimg must be 0 (off) or more"),
    (["--kimg", "0"], "--kimg must be a positive number"),
])
def test_bad_quality_flags_are_one_line(table, tmp_path, capsys, flags, message):
    code = main(["train", "-i", str(table), "-o", str(tmp_path / "run"), "--model", "tiny", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_keras_init_is_the_old_tools(table, tmp_path, capsys):
    for init in ("keras", "standard"):
        assert main(["create-models", "-o", str(tmp_path / init), "--model", "tiny", "--init", init]) == 0
    keras = load_model(tmp_path / "keras" / "generator", role="generator")
    standard = load_model(tmp_path / "standard" / "generator", role="generator")
    assert (keras.hparams["init"], standard.hparams["init"]) == ("keras", "standard")


def test_generate_uses_the_moving_average_unless_raw(table, tmp_path, capsys):
    out = tmp_path / "run"
    train(run_config(table, out, epochs=1, ema_kimg=0.01), log=quiet)
    for name, extra in (("ema", []), ("raw", ["--raw"])):
        assert main(["generate", "-g", str(out / "generator_trained"), "-n", "3", "-o", str(tmp_path / name),
                     "--device", "cpu", "--no-progress", *extra]) == 0
    settings = {name: json.loads((tmp_path / name / "synthetic.json").read_text()) for name in ("ema", "raw")}
    assert (settings["ema"]["weights"], settings["raw"]["weights"]) == ("ema", "raw")
    assert settings["ema"]["precision"] == "fp32"  # auto on a CPU: the same bytes as always
    from rxwgan.synth.sampling import load_generator, synthetic_images

    images = {w: synthetic_images(load_generator(out / "generator_trained", weights=w)[0], range(3))
              for w in ("ema", "raw")}
    assert not torch.equal(images["ema"], images["raw"])


@pytest.mark.parametrize("flags, message", [
    (["--kimg", "0.1", "--epochs", "3"], "--epochs and --kimg each set the training length: give one"),
    (["--kimg", "1e-9"], "--kimg 1e-09 is fewer images than one batch (16)"),
    (["--kimg", "0.016"], "--kimg 0.016 makes 1 critic step(s) of batch 16 and no generator step"),
])
def test_a_length_that_trains_nothing_or_two_lengths_are_refused_before_anything_is_written(
        table, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--recipe", "keras",
                 "--no-progress", *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    # a refusal inside setup comes after the folder lock was taken: its lock file, no run file
    assert not out.exists() or [path.name for path in out.iterdir()] == [LOCK_FILE]


def test_an_unknown_epoch_metric_is_named_by_its_own_flag(table, tmp_path, capsys):
    args = ["train", "-i", str(table), "-o", str(tmp_path / "run"), "--model", "tiny", "--epochs", "1",
            "--eval_for_each", "1", "--eval_metrics", "bogus", "--no-progress"]
    assert main(args) == 2
    assert "--eval_metrics: unknown metric(s) bogus" in capsys.readouterr().err
