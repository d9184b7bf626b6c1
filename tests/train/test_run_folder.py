"""A run folder under faults: locks, the manifest, changed tables, damaged checkpoints, retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import SHARED_FIXTURES, killer_script, quiet, tiny_model_files
from helpers import run_config as config
from rxwgan.base import folder_lock
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.train.checkpoint import KEEP, load_checkpoint, save_checkpoint
from rxwgan.train.loop import train


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=40, size=32, seed=3)


def absolute_copy(table: Path, dest: Path) -> pd.DataFrame:
    """The table with absolute image paths, written to ``dest`` (it can live anywhere)."""
    frame = pd.read_csv(table)
    frame["raw_image_path"] = [str(table.parent / p) for p in frame["raw_image_path"]]
    frame.to_csv(dest, index=False)
    return frame


def final_state(out: Path) -> tuple[dict, dict, dict]:
    from safetensors.torch import load_file

    return (load_file(str(out / "generator_trained.safetensors")),
            load_file(str(out / "critic_trained.safetensors")),
            json.loads((out / "history.json").read_text()))


def assert_same(a: tuple, b: tuple) -> None:
    for wa, wb in zip(a[:2], b[:2], strict=True):
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a[2] == b[2]


@pytest.fixture(scope="module")
def straight(table, tmp_path_factory) -> tuple:
    """Four epochs never interrupted: what every repaired run must end with."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(config(table, out), log=quiet)
    return final_state(out)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


# --- item 1: one process per folder ----------------------------------------------------

HOLDER = """
import sys, time
from rxwgan.base import folder_lock
with folder_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused_naming_the_holder_and_a_killed_holder_frees_the_folder(
        table, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_cli(["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "1",
                             "--no-progress"], capsys)
        assert code == 2 and err.count("\n") == 1
        assert f"in use by another rxwgan process (pid {holder.pid} on" in err
        assert not (out / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train(config(table, out, epochs=1), log=quiet)  # the kernel released the dead holder's lock
    assert (out / "generator_trained.safetensors").is_file()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with folder_lock.hold(tmp_path / "x"):
        with pytest.raises(RxwganError, match="in use by another rxwgan process"):
            with folder_lock.hold(tmp_path / "x"):
                pass


# --- item 2: overwrite deletes only the run's own files, never an input -----------------

def test_overwrite_keeps_user_files_and_refuses_to_clobber_an_input(table, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    inside = out / "split.csv"
    absolute_copy(table, inside)
    before = inside.read_bytes()
    with pytest.raises(RxwganError, match="split.csv is read by this command"):
        train(config(table, out, input=str(inside), epochs=1, overwrite=True), log=quiet)
    assert inside.read_bytes() == before
    copy = out / "my_table.csv"
    inside.rename(copy)
    train(config(table, out, input=str(copy), epochs=1), log=quiet)
    train(config(table, out, input=str(copy), epochs=1, batch_size=8, overwrite=True), log=quiet)
    assert (out / "notes.txt").read_text() == "mine" and copy.read_bytes() == before


def test_files_of_an_unrecorded_run_are_never_deleted(table, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text("{}")
    for overwrite in (False, True):
        with pytest.raises(RxwganError, match="files rxwgan did not record"):
            train(config(table, out, epochs=1, overwrite=overwrite), log=quiet)
    assert (out / "history.json").read_text() == "{}"


# --- item 4: a resume on another table is refused ---------------------------------------

def test_resume_on_a_changed_table_is_refused_naming_the_change(table, tmp_path):
    out = tmp_path / "run"
    copy = tmp_path / "table.csv"
    frame = absolute_copy(table, copy)
    train(config(table, out, input=str(copy), epochs=1), log=quiet)
    split_before = (out / "split.csv").read_bytes()
    frame.drop(index=[0, 1, 2]).to_csv(copy, index=False)
    with pytest.raises(RxwganError, match=r"table changed since this run began \(3 row\(s\) removed"):
        train(config(table, out, input=str(copy), epochs=2), log=quiet)
    frame.assign(target=1 - frame["target"]).to_csv(copy, index=False)
    with pytest.raises(RxwganError, match="with another target"):
        train(config(table, out, input=str(copy), epochs=2), log=quiet)
    assert (out / "split.csv").read_bytes() == split_before


# --- item 5: a run that died before its final files is completed -------------------------

def test_run_killed_before_its_final_files_is_completed(table, straight, tmp_path):
    out = tmp_path / "run"
    train(config(table, out), log=quiet)
    for name in ("generator_trained.safetensors", "critic_trained.safetensors"):
        (out / name).unlink()
    messages: list[str] = []
    train(config(table, out), log=messages.append)
    assert not any("nothing to do" in m for m in messages)
    assert_same(final_state(out), straight)


def test_longer_run_replaces_the_shorter_runs_final_files(table, straight, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, epochs=2), log=quiet)
    from rxwgan.train import loop

    def die(self):
        raise KeyboardInterrupt  # the process dies between the last checkpoint and the final files

    original = loop.Trainer._finish
    loop.Trainer._finish = die
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config(table, out), log=quiet)
    finally:
        loop.Trainer._finish = original
    assert not (out / "generator_trained.safetensors").exists()  # never the 2-epoch file
    train(config(table, out), log=quiet)
    assert_same(final_state(out), straight)


# --- item 6: a run started from model files resumes -------------------------------------

def test_run_started_from_model_files_resumes_by_the_same_command_and_without_g(table, tmp_path):
    models = tiny_model_files(tmp_path / "models", seed=5)
    out = tmp_path / "run"
    start = dict(generator=str(models["generator"]), critic=str(models["critic"]), model=None)
    train(config(table, out, epochs=1, **start), log=quiet)
    train(config(table, out, epochs=2, **start), log=quiet)  # the identical command, longer
    train(config(table, out, epochs=3, model=None), log=quiet)  # without -g/-c
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 3
    with pytest.raises(RxwganError, match="--model tiny -> small"):
        train(config(table, out, epochs=4, model="small"), log=quiet)


@pytest.mark.skipif(not (SHARED_FIXTURES / "keras_v2").is_dir(),
                    reason="../shared/fixtures (the old tool's .h5 models) is not beside this clone")
def test_run_started_from_the_old_tools_h5_files_resumes(table, tmp_path, capsys):
    out = tmp_path / "run"
    keras_v2 = SHARED_FIXTURES / "keras_v2"
    args = ["train", "-i", str(table), "-o", str(out), "-g", str(keras_v2 / "generator.h5"),
            "-c", str(keras_v2 / "critic.h5"), "--batch_size", "8", "--fold", "0",
            "--n_splits", "5", "--precision", "fp32", "--no-progress"]
    assert main([*args, "--epochs", "1"]) == 0
    code, err = run_cli([*args, "--epochs", "2"], capsys)
    assert code == 0, err
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2


# --- item 9: a failure before the first checkpoint never blocks the retry ----------------

def test_nan_in_epoch_one_then_the_same_command_starts_again(table, straight, tmp_path, monkeypatch):
    out = tmp_path / "run"
    from rxwgan.train import steps

    with monkeypatch.context() as patch:
        patch.setattr(steps, "critic_loss", lambda r, f: torch.tensor(float("nan")))
        with pytest.raises(RxwganError, match="critic loss became nan.*no checkpoint had been written yet"):
            train(config(table, out), log=quiet)
    assert (out / "split.csv").is_file()
    messages: list[str] = []
    train(config(table, out), log=messages.append)
    assert any("never reached a checkpoint" in m for m in messages)
    assert_same(final_state(out), straight)


def test_sigkill_in_epoch_one_then_the_same_command_matches_a_straight_run(table, straight, tmp_path):
    out = tmp_path / "run"
    args = ["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "4", "--batch_size",
            "4", "--n_critic", "2", "--fold", "0", "--n_splits", "5", "--save_for_each", "2",
            "--disp_for_each", "2", "--precision", "fp32", "--no-progress",
            "--recipe", "keras"]  # the settings of ``straight`` (TrainConfig's defaults)
    killed = subprocess.run([sys.executable, "-c", killer_script(epoch=1, batch=1), *args],
                            capture_output=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL and (out / "config.json").is_file()
    assert main(args) == 0
    assert_same(final_state(out), straight)


def test_corrected_command_after_a_bad_model_flag(table, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RxwganError, match="v9"):
        train(config(table, out, model="v9", epochs=1), log=quiet)
    train(config(table, out, epochs=1), log=quiet)


# --- item 10: damaged checkpoints fall back; a lost pointer is rebuilt -------------------

@pytest.mark.parametrize("damage", ["truncate", "random", "pointer_gone", "pointer_empty", "pointer_list"])
def test_damaged_checkpoint_falls_back_and_ends_as_a_straight_run(table, straight, tmp_path, damage):
    out = tmp_path / "run"
    train(config(table, out, epochs=3), log=quiet)
    pointer_path = out / "checkpoint.json"
    newest = out / json.loads(pointer_path.read_text())["file"]
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:1000])
    elif damage == "random":
        newest.write_bytes(os.urandom(newest.stat().st_size))
    elif damage == "pointer_gone":
        pointer_path.unlink()
    elif damage == "pointer_empty":
        pointer_path.write_text("{}")
    else:
        pointer_path.write_text("[1, 2]")
    messages: list[str] = []
    train(config(table, out), log=messages.append)
    assert any(m.startswith("warning:") and "resuming from" in m for m in messages)
    assert not any("weights_only" in m for m in messages)
    assert_same(final_state(out), straight)


def test_every_checkpoint_damaged_is_one_clear_error(table, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(table, out, epochs=3), log=quiet)
    for path in (out / "checkpoints").glob("*.pt"):
        path.write_bytes(b"garbage")
    code, err = run_cli(["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "4",
                         "--batch_size", "4", "--n_critic", "2", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no intact checkpoint" in err and "weights_only" not in err


# --- item 11/12: flags and paths refused in one line ------------------------------------

@pytest.mark.parametrize("flags,message", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--gp_weight", "nan"], "--gp_weight must be a finite number"),
    (["--batch_size", "1"], "argument --batch_size/--batch-size: must be at least 2"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_give_one_line_with_one_prefix(table, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    code, err = run_cli(["train", "-i", str(table), "-o", str(out), *flags], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("rxwgan: error:") and message in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_output_that_is_a_file_or_under_one(table, tmp_path, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    out = blocker if where == "file" else blocker / "run"
    code, err = run_cli(["train", "-i", str(table), "-o", str(out), "--model", "tiny"], capsys)
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err
    assert blocker.read_text() == "keep"


# --- item 18: another device or precision on resume -------------------------------------

def test_resume_on_another_device_warns_and_continues(table, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, epochs=2), log=quiet)
    pointer = json.loads((out / "checkpoint.json").read_text())
    path = out / pointer["file"]
    state = torch.load(path, weights_only=True)
    state["device"] = "cuda"
    state["rng"]["train"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    state["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, path)
    (out / "checkpoint.json").unlink()  # its checksum no longer matches; found from the folder
    messages: list[str] = []
    train(config(table, out, epochs=3), log=messages.append)
    assert any("checkpointed on cuda in fp32 and continues on cpu in fp32" in m for m in messages)
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 3


def test_resume_in_another_precision_warns(table, tmp_path):
    out = tmp_path / "run"
    train(config(table, out, epochs=1), log=quiet)
    messages: list[str] = []
    train(config(table, out, epochs=2, precision="bf16"), log=messages.append)
    assert any("in fp32 and continues on cpu in bf16" in m and "bit-identical" in m for m in messages)


# --- item 19: pruning follows the pointer's order, not file names -----------------------

def test_pruning_keeps_the_newest_checkpoints_whatever_their_names(tmp_path):
    labels = ["step_000000900", "step_000000001", "step_000000002"]  # a legacy restart's counter
    for epoch, label in enumerate(labels, start=1):
        save_checkpoint(tmp_path, {"format": "rxwgan-checkpoint", "epoch": epoch}, label)
        time.sleep(0.01)
    kept = sorted(p.stem for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert kept == sorted(labels[-KEEP:])
    assert load_checkpoint(tmp_path, warn=quiet)["epoch"] == 3
