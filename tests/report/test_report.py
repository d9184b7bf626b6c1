"""The study report: rows, best runs, figures, partial studies, failed and damaged runs, extra
metric keys (no Ray needed)."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import RUN_SPACE_RECORD, SWEEP_FILE
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.report.collect import collect_runs, select_best
from rxwgan.report.render import Report, write_report
from rxwgan.study.plan import RunPlan, write_status
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import train

# Fake evaluation metric written into the target-0 runs' histories: the smallest picks the best.
KID = {"fold_0/target_0": 0.30, "fold_1/target_0": 0.10}
PARTIAL = "fold_0/target_1"


class _Killed(Exception):
    pass


def _config(table: Path, study: Path, fold: int, target: int, epochs: int) -> TrainConfig:
    # An explicit cache: module fixtures run before conftest's per-test RXWGAN_CACHE_DIR.
    return TrainConfig(input=str(table), output=str(study / f"fold_{fold}" / f"target_{target}"),
                       model="tiny", epochs=epochs, batch_size=4, n_critic=2,
                       split=SplitSpec(fold=fold, n_splits=2),
                       target=target, save_for_each=10, disp_for_each=10, precision="fp32",
                       cache_dir=str(table.parent / "cache"), progress=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two finished runs of target 0 and one of target 1 stopped after epoch 1 of 2, as
    `rxwgan train` leaves them."""
    root = tmp_path_factory.mktemp("report")
    table = write_demo_data(root / "data", n_images=40, size=32, seed=5)
    study = root / "study"
    for fold in (0, 1):
        train(_config(table, study, fold, 0, epochs=2), log=lambda _: None)

    def die_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/2"):
            raise _Killed

    with pytest.raises(_Killed):
        train(_config(table, study, 0, 1, epochs=2), log=die_after_first_epoch)
    for path, kid in KID.items():
        history_file = study / path / "history.json"
        history = json.loads(history_file.read_text())
        history["kid"] = [None, kid]  # computed every other epoch, like a real evaluation
        atomic.write_json(history_file, history)
        atomic.write_json(study / path / RUN_SPACE_RECORD, {"id": "trained-study-space"})  # one space
    return study


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> Report:
    return write_report(study, tmp_path_factory.mktemp("out") / "report")


def test_one_row_per_run_with_last_values_and_states(study):
    runs = collect_runs(study).set_index("run")
    assert sorted(runs.index) == ["fold_0/target_0", "fold_0/target_1", "fold_1/target_0"]
    assert runs.loc[PARTIAL, "state"] == "partial"
    assert (runs.drop(PARTIAL)["state"] == "done").all()
    assert runs.loc[PARTIAL, ["epoch", "epochs"]].tolist() == [1, 2]
    history = json.loads((study / "fold_1/target_0/history.json").read_text())
    assert runs.loc["fold_1/target_0", "val_kl_rf"] == pytest.approx(history["val_kl_rf"][-1])
    assert runs.loc["fold_1/target_0", "kid"] == pytest.approx(0.10)
    assert np.isnan(runs.loc[PARTIAL, "kid"])


def test_report_files_mark_a_partial_study(report):
    names = {p.name for p in report.folder.iterdir()}
    for target in (0, 1):
        assert {f"curves_target_{target}.png", f"divergences_target_{target}.png",
                f"samples_target_{target}.png"} <= names
    assert "metrics_target_0.png" in names and "metrics_target_1.png" not in names
    assert {"runs.csv", "best.csv", "report.md", "report.html"} <= names
    assert len(pd.read_csv(report.folder / "runs.csv")) == 3
    assert report.partial
    markdown = report.markdown.read_text()
    assert "Partial results: 1 of 3 runs" in markdown
    assert re.search(r"\| fold_0/target_1 \| 1 \| partial \| 1 \| 2 \|", markdown)
    page = report.html.read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Partial results" in page


def test_best_run_by_val_kl_rf_shows_its_own_sample_grid(study, report):
    runs = collect_runs(study)
    mine = runs[runs["target"] == 0]
    winner = mine.loc[mine["val_kl_rf"].idxmin(), "run"]
    best = report.best.set_index("target")
    assert best.loc[0, "run"] == winner
    assert best.loc[1, "run"] == PARTIAL  # the only run of target 1, marked partial
    # The grid is the winner's fixed-latent samples: the run's own last picture of them.
    grid = np.asarray(Image.open(report.folder / f"best_{winner.replace('/', '_')}.png"))
    own = np.asarray(Image.open(study / winner / "fake_samples_epoch_2.png"))
    assert np.array_equal(grid, own)


def test_cli_selects_an_evaluation_metric_into_the_study(study, capsys):
    assert main(["report", str(study), "--select", "kid"]) == 0
    assert "partial results" in capsys.readouterr().out
    best = pd.read_csv(study / "report" / "best.csv").set_index("target")
    assert best.loc[0, "run"] == "fold_1/target_0"
    assert 1 not in best.index  # no run of target 1 has a kid yet
    assert (study / "report" / "report.html").is_file()


def test_unknown_select_key_is_refused(study, tmp_path):
    with pytest.raises(RxwganError, match="--select fid"):
        write_report(study, tmp_path / "r", select="fid")
    assert main(["report", str(study), "-o", str(tmp_path / "r2"), "--select", "fid"]) == 2
    assert not (tmp_path / "r").exists()


def test_best_is_chosen_per_test_and_target():
    frame = pd.DataFrame({
        "run": ["a", "b", "c", "d", "e"], "test": [0, 0, 1, 1, 1], "target": [1, 1, 1, 1, 0],
        "val_kl_rf": [0.5, 0.2, 0.9, 0.4, np.nan],
    })
    best = select_best(frame)
    assert sorted(best["run"]) == ["b", "d"]  # e has no value yet


def test_a_kept_best_generator_is_what_kid_ranks_and_shows(study, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    run = copy / "fold_0" / "target_0"  # its last kid is the higher of target 0's two
    shutil.copy(run / "generator_trained.safetensors", run / "generator_best.safetensors")
    atomic.write_json(run / "best.json", {"epoch": 1, "kid": 0.01, "space_id": "trained-study-space"})
    report = write_report(copy, tmp_path / "report", select="kid")
    best = report.best.set_index("target")
    assert best.loc[0, "run"] == "fold_0/target_0" and best.loc[0, "best_epoch"] == 1
    assert "generator_best" in report.markdown.read_text()


# Ways a run's history.json is found broken, each with what its error must say.
DAMAGES = {
    "truncated": (lambda history: json.dumps(history)[:60].encode(), "not valid JSON"),
    "garbage": (lambda history: b"\x00\x07 }{ not a history", "not valid JSON"),
    "not an object": (lambda history: json.dumps(list(history)).encode(),
                      "holds a JSON array, not an object of per-epoch series"),
    "text in a series": (lambda history: json.dumps({**history, "val_kl_rf": [0.2, "n/a"]}).encode(),
                         "val_kl_rf holds 'n/a', not a number"),
    "series of unequal length": (lambda history: json.dumps({**history, "kid": [0.1]}).encode(),
                                 "its series differ in length (1 to 2 epochs)"),
    "fewer epochs than the checkpoint": (
        lambda history: json.dumps({key: values[:1] for key, values in history.items()}).encode(),
        "holds 1 of the 2 epochs checkpoint.json records"),
    "missing": (None, "missing, though checkpoint.json is at epoch 2"),
    "not text": (lambda history: b"\xff\xfe\x00 binary", "not valid JSON"),
}
DAMAGED = "fold_1/target_0"  # target 0's best run by kid, until its history is broken


def _damage(study: Path, damage: str) -> None:
    history_file = study / DAMAGED / "history.json"
    broken = DAMAGES[damage][0]
    if broken is None:
        history_file.unlink()
    else:
        history_file.write_bytes(broken(json.loads(history_file.read_text())))


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_run_with_an_unreadable_history_is_damaged_not_done(study, tmp_path, damage):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    _damage(copy, damage)
    runs = collect_runs(copy).set_index("run")
    assert runs.loc[DAMAGED, "state"] == "damaged"
    assert runs.loc[DAMAGED, "error"].startswith(f"history.json: {DAMAGES[damage][1]}")
    assert runs.loc["fold_0/target_0", "state"] == "done"


def test_a_damaged_run_is_left_out_of_the_best_choice_visibly(study, tmp_path, capsys):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    run = copy / DAMAGED  # it also kept a best generator whose kid would win, were it ranked
    shutil.copy(run / "generator_trained.safetensors", run / "generator_best.safetensors")
    atomic.write_json(run / "best.json", {"epoch": 2, "kid": 0.01, "space_id": "trained-study-space"})
    _damage(copy, "truncated")
    lines: list[str] = []
    report = write_report(copy, tmp_path / "report", select="kid", log=lines.append)
    assert report.best.set_index("target").loc[0, "run"] == "fold_0/target_0"
    assert not report.ok and report.partial  # fold_0/target_1 is still partial
    reason = f"{DAMAGED}: history.json: not valid JSON ("
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: {DAMAGED} is damaged, left out of the choice of best generator: "
                               "history.json: not valid JSON (")
    markdown, page = report.markdown.read_text(), html.unescape(report.html.read_text())
    for text in (markdown, page):
        assert f"1 run damaged, left out of the choice of best generator: {reason}" in text
        assert f"left out of this choice, damaged: {DAMAGED}" in text
        assert "Partial results: 1 of 3 runs are not finished (1 partial)" in text
    assert f"| {DAMAGED} | 0 | damaged | 2 | 2 |" in markdown
    assert main(["report", str(copy), "-o", str(tmp_path / "cli"), "--select", "kid"]) == 1
    said = capsys.readouterr()
    assert f"warning: {DAMAGED} is damaged" in said.out + said.err


def test_a_failed_run_is_reported_failed_not_still_running(study, tmp_path, capsys):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    write_status(copy / PARTIAL, "failed", error="RuntimeError: CUDA out of memory.\nTried to allocate 2 GiB")
    lines: list[str] = []
    report = write_report(copy, tmp_path / "report", log=lines.append)
    assert not report.partial and not report.ok
    error = "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    assert lines == [f"warning: {PARTIAL} failed: {error}"]
    markdown, page = report.markdown.read_text(), html.unescape(report.html.read_text())
    for text in (markdown, page):
        assert f"1 run failed: {PARTIAL}: {error}." in text
        assert "Partial results" not in text
    assert main(["report", str(copy), "-o", str(tmp_path / "cli")]) == 1
    said = capsys.readouterr()
    assert f"warning: {PARTIAL} failed: {error}" in said.out + said.err
    assert "still running" not in said.out + said.err


def test_failed_runs_are_noted_apart_from_unfinished_ones(study, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    failed = RunPlan(SplitSpec(fold=1, n_splits=2), 1)  # planned by a sweep, failed before its first epoch
    atomic.write_json(copy / SWEEP_FILE, {"runs": [failed.to_dict()]})
    (copy / failed.path).mkdir(parents=True)
    write_status(copy / failed.path, "failed", error="ValueError: no images of class 1")
    markdown = write_report(copy, tmp_path / "report", log=lambda _: None).markdown.read_text()
    assert f"1 run failed: {failed.path}: ValueError: no images of class 1." in markdown
    assert "Partial results: 1 of 4 runs are not finished (1 partial)" in markdown
    assert re.search(rf"\| {failed.path} \| 1 \| failed \| 0 \|", markdown)
