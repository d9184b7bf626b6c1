"""Training: files written, exact resume after SIGKILL/SIGTERM, old-style restart, refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import killer_script, quiet
from helpers import run_config as config
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import HISTORY_KEYS
from rxwgan.data.phantoms import write_demo_data
from rxwgan.train.checkpoint import save_checkpoint
from rxwgan.train.loop import train


@pytest.fixture(scope="module")
def demo_table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=40, size=32, seed=3)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("generator_trained.safetensors", "critic_trained.safetensors"):
        wa, wb = weights(a / name), weights(b / name)
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), f"{name}:{key} differs"
    assert json.loads((a / "history.json").read_text()) == json.loads((b / "history.json").read_text())


def test_run_writes_the_old_tools_files(demo_table, tmp_path):
    result = train(config(demo_table, tmp_path / "run"), log=quiet)
    out = result.output
    for name in ("generator_epoch_2.safetensors", "critic_epoch_4.safetensors", "history_epoch_2.json",
                 "fake_samples_epoch_2.png", "fake_samples_epoch_4.png", "loss_curves.png",
                 "generator_trained.safetensors", "critic_trained.safetensors", "history.json",
                 "config.json", "checkpoint.json", "split.csv"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert set(HISTORY_KEYS) <= set(history)
    assert all(len(history[key]) == 4 for key in HISTORY_KEYS)
    assert len(json.loads((out / "history_epoch_2.json").read_text())["train_gen_loss"]) == 2
    assert all(v is not None for v in history["val_kl_rf"] + history["train_gen_loss"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["seed"] == 512 and saved["environment"]["torch"] == torch.__version__
    assert list(out.glob("tensorboard/events.out.tfevents.*"))


def test_losses_move_and_penalty_is_recorded(demo_table, tmp_path):
    history = train(config(demo_table, tmp_path / "run", epochs=6, lr=1e-3), log=quiet).history
    assert all(v > 0 for v in history["train_reg_loss"])
    assert history["train_critic_loss"][0] != history["train_critic_loss"][-1]


def test_rerun_of_a_finished_run_does_nothing(demo_table, tmp_path):
    cfg = config(demo_table, tmp_path / "run", epochs=2)
    train(cfg, log=quiet)
    before = (tmp_path / "run" / "checkpoint.json").read_text()
    messages = []
    train(cfg, log=messages.append)
    assert any("nothing to do" in m for m in messages)
    assert (tmp_path / "run" / "checkpoint.json").read_text() == before


@pytest.fixture(scope="module")
def straight_run(demo_table, tmp_path_factory) -> Path:
    """4 epochs never interrupted: what every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight") / "run"
    done = cli(train_args(demo_table, out))
    assert done.returncode == 0, done.stderr
    return out


def test_longer_epochs_continue_exactly(demo_table, straight_run, tmp_path):
    assert cli(train_args(demo_table, tmp_path / "split", "--epochs", "2")).returncode == 0
    assert cli(train_args(demo_table, tmp_path / "split")).returncode == 0  # --epochs 4, same folder
    assert_same_run(straight_run, tmp_path / "split")


def cli(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    code = script or "import sys; from rxwgan.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=240)


def train_args(table: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "4",
            "--batch_size", "4", "--n_critic", "2", "--fold", "0", "--n_splits", "5",
            "--save_for_each", "2", "--disp_for_each", "2", "--precision", "fp32", "--no-progress",
            *extra]


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_to_the_same_result(demo_table, straight_run, tmp_path, sig):
    killed = cli(train_args(demo_table, tmp_path / "killed"),
                 killer_script(epoch=3, batch=1, signal_name=sig))
    pointer = json.loads((tmp_path / "killed" / "checkpoint.json").read_text())
    if sig == "SIGKILL":
        assert killed.returncode == -signal.SIGKILL
        assert pointer["epoch"] == 2 and pointer["batch"] is None
    else:  # graceful: the step finishes, a mid-epoch checkpoint is written
        assert killed.returncode == 130, killed.stderr
        assert "resume with the same command" in killed.stdout
        assert pointer["epoch"] == 2 and pointer["batch"] == 2
    assert not (tmp_path / "killed" / "generator_trained.safetensors").exists()

    again = cli(train_args(demo_table, tmp_path / "killed"))
    assert again.returncode == 0, again.stderr
    assert "resuming from the checkpoint" in again.stdout
    assert_same_run(straight_run, tmp_path / "killed")


def test_checkpoint_holding_the_half_done_epoch_as_a_plain_dict_resumes_exactly(demo_table, straight_run,
                                                                                tmp_path):
    """The format checkpoints have always had (before ``PartialEpoch``): still read, bit for bit."""
    out = tmp_path / "stopped"
    stopped = cli(train_args(demo_table, out), killer_script(epoch=3, batch=1, signal_name="SIGTERM"))
    assert stopped.returncode == 130, stopped.stderr
    pointer = json.loads((out / "checkpoint.json").read_text())
    saved = torch.load(out / pointer["file"], weights_only=True)
    partial = saved["partial"]
    saved["partial"] = {"epoch": 3, "batch": 2, "order": partial["order"],
                        "sums": {key: float(value) for key, value in partial["sums"].items()},
                        "counts": {key: int(value) for key, value in partial["counts"].items()}}
    save_checkpoint(out, saved, Path(pointer["file"]).stem)

    again = cli(train_args(demo_table, out))
    assert again.returncode == 0, again.stderr
    assert "resuming from the checkpoint in" in again.stdout and "batch 2 of epoch 3" in again.stdout
    assert_same_run(straight_run, out)


def test_old_style_restart_from_epoch_files(demo_table, tmp_path):
    run = tmp_path / "run"
    first = cli(train_args(demo_table, run, "--epochs", "2"))
    assert first.returncode == 0, first.stderr
    assert cli(train_args(demo_table, run)).returncode == 0  # a full run to epoch 4 exists now
    restart = ["-g", str(run / "generator_epoch_2"), "-c", str(run / "critic_epoch_2"),
               "--history", str(run / "history_epoch_2.json"), "----start_from_epoch", "3"]
    refused = cli(train_args(demo_table, run, *restart))
    assert refused.returncode == 2 and "later than --start_from_epoch 3" in refused.stderr
    other = tmp_path / "other"
    restarted = cli(train_args(demo_table, other, *restart))
    assert restarted.returncode == 0, restarted.stderr
    assert "read '----start_from_epoch' as '--start_from_epoch'" in restarted.stderr
    history = json.loads((other / "history.json").read_text())
    earlier = json.loads((run / "history_epoch_2.json").read_text())
    assert len(history["train_critic_loss"]) == 4
    assert history["train_critic_loss"][:2] == earlier["train_critic_loss"]
    assert not (other / "generator_epoch_2.safetensors").exists()
    assert (other / "generator_epoch_4.safetensors").exists()


def test_fresh_run_refuses_a_used_folder(demo_table, tmp_path):
    train(config(demo_table, tmp_path / "run", epochs=1), log=quiet)
    with pytest.raises(RxwganError, match="holds a run with other settings.*--batch_size 4 -> 8"):
        train(config(demo_table, tmp_path / "run", epochs=1, batch_size=8), log=quiet)
    train(config(demo_table, tmp_path / "run", epochs=1, batch_size=8, overwrite=True), log=quiet)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["batch_size"] == 8


def test_resume_flag_needs_a_checkpoint(demo_table, tmp_path):
    with pytest.raises(RxwganError, match="--resume.*no checkpoint"):
        train(config(demo_table, tmp_path / "run", resume=True), log=quiet)


def test_nan_loss_stops_with_message_and_keeps_checkpoint(demo_table, tmp_path, monkeypatch):
    train(config(demo_table, tmp_path / "run", epochs=1), log=quiet)
    from rxwgan.train import steps

    monkeypatch.setattr(steps, "critic_loss", lambda r, f: torch.tensor(float("nan")))
    with pytest.raises(RxwganError, match=r"epoch 2, batch 1: the critic loss became nan.*epoch 1"):
        train(config(demo_table, tmp_path / "run", epochs=2), log=quiet)
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 1


@pytest.mark.parametrize("overrides,message", [
    ({"batch_size": 1}, "--batch_size must be at least 2"),
    ({"lr": float("nan")}, "--lr must be a finite number"),
    ({"lr": float("inf")}, "--lr must be a finite number"),
    ({"gp_weight": float("nan")}, "--gp_weight must be a finite number"),
    ({"target": 3}, "--target must be 0 or 1"),
    ({"fold": 7}, "--fold must be in 0..4"),
    ({"dropout": 1.5}, "--dropout must be in"),
    ({"start_from_epoch": 9}, "--start_from_epoch 9 is past --epochs 4"),
    ({"model": "v9"}, "unknown model architecture 'v9'"),
])
def test_refusals(demo_table, tmp_path, overrides, message):
    with pytest.raises(RxwganError, match=message):
        train(config(demo_table, tmp_path / "run", **overrides), log=quiet)


def test_bf16_precision_runs(demo_table, tmp_path):
    history = train(config(demo_table, tmp_path / "run", epochs=1, precision="bf16"), log=quiet).history
    assert all(v is not None and v == v for v in history["train_critic_loss"])


def test_legacy_run_wgangp_entry_point(demo_table, tmp_path, monkeypatch, capsys):
    from rxwgan.cli import create_models_main, run_wgangp_main

    monkeypatch.chdir(tmp_path)
    assert create_models_main(["--model", "tiny"]) == 0
    code = run_wgangp_main(["-i", str(demo_table), "-o", "out", "-g", "generator", "-c", "critic",
                            "--batch_size", "4", "--fold", "1", "--n_splits", "5", "--save_for_each", "1",
                            "--disp_for_each", "1", "--epochs", "2", "--n_discr", "0", "--target", "0",
                            "--precision", "fp32", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    # --n_discr 0: one critic and one generator step per batch, so every epoch has a generator loss
    assert len(history["train_gen_loss"]) == 2 and None not in history["train_gen_loss"]
    assert (tmp_path / "out" / "generator_epoch_1.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["split"] == "fold_1"


def test_eval_for_each_adds_metrics_to_history(demo_table, tmp_path):
    cfg = config(demo_table, tmp_path / "run", epochs=2, eval_for_each=2, eval_metrics=("kid", "pr"),
                 eval_features="random", n_splits=2)
    history = train(cfg, log=quiet).history
    assert history["kid"][0] is None and history["kid"][1] is not None
    assert history["precision"][1] is not None and history["n_real"][1] == history["n_fake"][1] > 0
    assert all(len(history[key]) == 2 for key in HISTORY_KEYS)  # old keys unchanged
    tags = {p.name for p in (tmp_path / "run" / "tensorboard").iterdir()}
    assert tags  # event file written


def test_eval_refusals_before_training(demo_table, tmp_path):
    with pytest.raises(RxwganError, match="nope"):
        train(config(demo_table, tmp_path / "run", eval_for_each=1, eval_metrics=("nope",)), log=quiet)
    with pytest.raises(RxwganError, match="needs at least 6 validation images of target 1; fold_0 has 4"):
        train(config(demo_table, tmp_path / "run2", eval_for_each=1), log=quiet)
