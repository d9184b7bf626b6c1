"""Sweeps on a local Ray instance (2 CPUs): every run trained, killed workers resumed, finished
runs skipped, failures reported; plus the plan and the status table without Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.data.twin_phantoms import PATIENT_COLUMN, write_twin_table
from rxwgan.report.render import write_report
from rxwgan.study.plan import (
    RunPlan,
    RunStatus,
    parse_indices,
    plan_runs,
    plan_splits,
    study_status,
    write_status,
)
from rxwgan.study.status import format_status
from rxwgan.study.sweep import SweepOptions, run_sweep
from rxwgan.train.config import TrainConfig


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A phantom table and its own image cache (module fixtures run before conftest's per-test one)."""
    root = tmp_path_factory.mktemp("sweep")
    return write_demo_data(root / "data", n_images=40, size=32, seed=3)


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Path:
    """About 50 images of 28 patients (1-5 images each), with a patient_id column."""
    return write_twin_table(tmp_path_factory.mktemp("twins") / "data", n_patients=24, size=32, seed=0)


def cache_of(table: Path) -> str:
    return str(table.parent / "cache")


def base(table: Path, **overrides) -> TrainConfig:
    values = dict(input=str(table), output="", model="tiny", epochs=2, batch_size=4, n_critic=2,
                  save_for_each=10, disp_for_each=10, precision="fp32", cache_dir=cache_of(table),
                  progress=False)
    values.update(overrides)
    return TrainConfig(**values)


def cli_flags(table: Path, study: Path, *extra: str) -> list[str]:
    return ["sweep", "-i", str(table), "-o", str(study), "--model", "tiny", "--batch_size", "4",
            "--n_critic", "2", "--save_for_each", "10", "--disp_for_each", "10", "--precision", "fp32",
            "--cache-dir", cache_of(table), "--refresh", "60", *extra]


def history(folder: Path) -> dict:
    return json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from rxwgan.base.ray_runner import start_local_ray

    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def swept(local_ray, data, tmp_path_factory):
    """2 folds x 2 targets, 2 epochs each."""
    study = tmp_path_factory.mktemp("study")
    runs = plan_runs(plan_splits("kfold", n_splits=2), [0, 1])
    result = run_sweep(base(data), study, runs, log=quiet, live=False)
    return study, result


# --- without Ray -------------------------------------------------------------------------

def test_index_ranges():
    assert parse_indices("0-2,5", "--folds") == [0, 1, 2, 5]
    assert parse_indices("3", "--tests") == [3]
    with pytest.raises(RxwganError, match="--sorts"):
        parse_indices("2-x", "--sorts")
    with pytest.raises(RxwganError, match="--folds"):
        parse_indices("4-1", "--folds")


def test_plan_names_run_folders_by_split_and_target():
    runs = plan_runs(plan_splits("stratified", tests=[3], sorts=[7, 8]), [0])
    assert [run.path for run in runs] == ["test_3_sort_7/target_0", "test_3_sort_8/target_0"]
    assert len(plan_runs(plan_splits("kfold"), [0, 1])) == 10  # 5 folds by default
    with pytest.raises(RxwganError, match="--fold must be in 0..1"):
        plan_splits("kfold", n_splits=2, folds=[2])


@pytest.mark.parametrize("flags, message", [
    (["--scheme", "kfold", "--tests", "0-1"], "--tests do not go with --scheme kfold"),
    (["--n_splits", "3", "--sorts", "0"], "--n_splits do not go with --scheme stratified"),
    (["--targets", "0,2"], "--targets"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_cli_refuses_bad_plans_before_starting_anything(data, tmp_path, capsys, flags, message):
    assert main(cli_flags(data, tmp_path / "study", *flags)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_the_plan_records_the_group_column_of_every_run():
    [run] = plan_runs(plan_splits("kfold", n_splits=2, folds=[1], group_column=PATIENT_COLUMN), [0])
    entry = run.to_dict()  # the run's entry in sweep.json
    assert entry["group_column"] == PATIENT_COLUMN and RunPlan.from_dict(entry) == run
    assert "group_column" not in plan_runs(plan_splits("kfold", n_splits=2), [0])[0].to_dict()


def test_cli_refuses_a_group_column_the_table_lacks_before_starting_anything(data, tmp_path, capsys):
    assert main(cli_flags(data, tmp_path / "study", "--group-column", PATIENT_COLUMN)) == 2
    assert f"no column '{PATIENT_COLUMN}'" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_status_sees_runs_whose_process_is_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "fold_0" / "target_1"
    folder.mkdir(parents=True)
    config = base(Path("t.csv"), split=SplitSpec(fold=0, n_splits=2), target=1, epochs=5, output=str(folder))
    (folder / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    write_status(folder, "running")
    (folder / "worker.json").write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename}))
    [row] = study_status(tmp_path)
    assert (row.path, row.state, row.epochs) == ("fold_0/target_1", "stopped", 5)
    (folder / "worker.json").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    assert study_status(tmp_path)[0].state == "running"


def test_a_long_table_fits_a_terminal_by_keeping_the_runs_not_done():
    rows = [RunStatus(f"test_{i // 10}_sort_{i % 10}/target_0", "", 0, "done", 5, 5) for i in range(28)]
    rows += [RunStatus("test_9_sort_0/target_1", "", 1, "running", 2, 5),
             RunStatus("test_9_sort_1/target_1", "", 1, "failed", 1, 5, error="NaN loss")]
    full = format_status(rows).splitlines()
    assert len(full) == 1 + 30 + 1 + 1 and full[-1] == "test_9_sort_1/target_1: NaN loss"
    short = format_status(rows, max_lines=10).splitlines()
    assert len(short) <= 10
    assert [line.split()[0] for line in short[1:3]] == ["test_9_sort_0/target_1", "test_9_sort_1/target_1"]
    assert short[-1] == "1 running, 28 done, 1 failed (28 more not shown)"


# --- on Ray --------------------------------------------------------------------------------

def test_sweep_trains_every_fold_and_target_and_reports_them(swept):
    study, result = swept
    paths = ["fold_0/target_0", "fold_0/target_1", "fold_1/target_0", "fold_1/target_1"]
    assert result.ok and sorted(result.states) == paths
    for path in paths:
        folder = study / path
        saved = json.loads((folder / "config.json").read_text())["config"]
        split = saved["split"]
        assert (f"fold_{split['fold']}/target_{saved['target']}", split["n_splits"]) == (path, 2)
        assert (folder / "generator_trained.safetensors").is_file()
        assert len(history(folder)["train_critic_loss"]) == 2
    assert [r["path"] for r in json.loads((study / "sweep.json").read_text())["runs"]] == paths

    report = write_report(study)
    assert len(report.runs) == 4 and not report.partial
    for target in (0, 1):
        for name in (f"curves_target_{target}.png", f"divergences_target_{target}.png",
                     f"samples_target_{target}.png"):
            assert (study / "report" / name).stat().st_size > 0


def test_status_from_another_shell(swept, capsys):
    study, _ = swept
    assert main(["sweep", "--status", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 4 and "4 done" in out


def test_running_a_finished_sweep_again_trains_nothing(swept, data):
    study, _ = swept
    folders = sorted(study.glob("fold_*/target_*"))
    before = {f: ((f / "checkpoint.json").stat().st_mtime_ns, (f / "worker.json").read_text())
              for f in folders}
    assert main(cli_flags(data, study, "--n_splits", "2", "--epochs", "2")) == 0
    assert before == {f: ((f / "checkpoint.json").stat().st_mtime_ns, (f / "worker.json").read_text())
                      for f in folders}


def test_a_study_with_other_settings_is_refused(swept, data, capsys):
    study, _ = swept
    assert main(cli_flags(data, study, "--n_splits", "2", "--epochs", "2", "--lr", "0.001")) == 2
    assert "other settings (--lr 0.0001 -> 0.001)" in capsys.readouterr().err
    assert main(cli_flags(data, study, "--n_splits", "3", "--folds", "0", "--epochs", "2")) == 2
    assert "--n_splits 2 -> 3" in capsys.readouterr().err


def test_a_grouped_sweep_records_its_column_and_refuses_another_grouping(local_ray, twins, tmp_path, capsys):
    assert main(cli_flags(twins, tmp_path, "--n_splits", "2", "--folds", "0", "--epochs", "1",
                          "--group_column", PATIENT_COLUMN)) == 0
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert [run["group_column"] for run in runs] == [PATIENT_COLUMN] * 2
    for run in runs:
        folder = tmp_path / run["path"]
        split = json.loads((folder / "config.json").read_text())["config"]["split"]
        assert split["group_column"] == PATIENT_COLUMN
        rows = pd.read_csv(folder / "split.csv")
        train, val = (set(rows.loc[rows["partition"] == name, PATIENT_COLUMN]) for name in ("train", "val"))
        assert train and val and not train & val
    # Another fold of the same study without the flag: its folds would not be one partition.
    assert main(cli_flags(twins, tmp_path, "--n_splits", "2", "--folds", "1", "--epochs", "1")) == 2
    assert f"--group-column {PATIENT_COLUMN} -> None" in capsys.readouterr().err


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(local_ray, data, tmp_path):
    epochs = 30
    runs = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), [0, 1])
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(run_sweep(
        base(data, epochs=epochs), tmp_path, runs, SweepOptions(max_retries=2), log=quiet, live=False)))
    thread.start()
    victim = tmp_path / "fold_0" / "target_1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        worker = _json(victim / "worker.json")
        epoch = _json(victim / "checkpoint.json").get("epoch", 0)
        if worker.get("pid") and 1 <= epoch <= epochs - 10:
            seen = history(victim)
            os.kill(worker["pid"], signal.SIGKILL)
            break
        time.sleep(0.05)
    else:
        pytest.fail("the run never reached a checkpoint with epochs to go")
    thread.join(timeout=120)
    assert not thread.is_alive()
    [result] = outcome
    assert result.ok and result.states == {"fold_0/target_0": "done", "fold_0/target_1": "done"}

    retried = _json(victim / "worker.json")
    assert retried["attempt"] == 2 and retried["pid"] != worker["pid"]
    assert retried["start_epoch"] >= epoch  # resumed, not started over
    final = history(victim)
    for key in ("train_critic_loss", "val_kl_rf"):
        assert len(final[key]) == epochs and None not in final[key]
        assert final[key][:len(seen[key])] == seen[key]  # the epochs done before the kill are kept


def test_a_run_that_cannot_succeed_is_reported_and_the_others_finish(local_ray, data, tmp_path, capsys):
    broken = tmp_path / "fold_0" / "target_0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.json").write_text("{not json")
    code = main(cli_flags(data, tmp_path, "--n_splits", "2", "--folds", "0", "--epochs", "1"))
    assert code == 1
    err_line = next(line for line in capsys.readouterr().out.splitlines()
                    if line.startswith("fold_0/target_0: failed"))
    assert "checkpoint.json" in err_line
    rows = {row.path: row for row in study_status(tmp_path)}
    assert rows["fold_0/target_0"].state == "failed" and "checkpoint.json" in rows["fold_0/target_0"].error
    assert rows["fold_0/target_0"].attempt == 1  # not retried: retrying cannot cure it
    assert rows["fold_0/target_1"].state == "done"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
