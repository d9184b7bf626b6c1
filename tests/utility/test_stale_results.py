"""A utility result is used only for the settings and generators it was made with; ``--folds``
chooses what to compute, never what the summary covers; ``--overwrite`` deletes only the asked
folds' own results (study hardening, cases 1, 2, 5, 8 and 9)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.data.splits import DEFAULT_SEED
from rxwgan.utility.driver import run_utility, unfinished_note, utility_status
from tiny_study import LOCAL, SETTINGS, copy_of, results_of, train_study


def fold_results(study: Path, fold: str) -> dict[str, bytes]:
    return {name: data for name, data in results_of(study).items() if name.startswith(f"runs/{fold}/")}


def retrain_fold_1(study: Path, table: Path) -> None:
    """Fold 1's generators trained again, differently (another seed), in place."""
    train_study(table, study, (1,), seed=DEFAULT_SEED + 1, overwrite=True)


def test_a_retrained_folds_old_results_are_never_used(tiny_study, tmp_path):
    """`--folds 0`, then a retrained fold-1 generator, then the whole study: fold 1's results
    made with the old generator were reused while utility.json named the new one (case 1)."""
    study = copy_of(tiny_study, tmp_path)
    old_fold_1 = fold_results(study, "fold_1")
    run_utility(study, SETTINGS, LOCAL, folds=["fold_0"], log=lambda _: None)
    retrain_fold_1(study, tiny_study.parent / "data" / "table.csv")
    lines: list[str] = []
    after_fold_0 = run_utility(study, SETTINGS, LOCAL, folds=["fold_0"], log=lines.append)
    assert after_fold_0.folds == {"fold_0": "complete", "fold_1": "stale"}  # not summarised from old ones
    assert set(after_fold_0.runs["split"]) == {"fold_0"}
    assert "set aside, made with earlier generators (kept, not used): fold_1: 4 result file(s)" in lines
    markdown = (study / "utility" / "summary.md").read_text()
    assert "> stale, not summarised: fold_1" in markdown

    lines.clear()
    result = run_utility(study, SETTINGS, LOCAL, log=lines.append)
    assert any("8 classifier runs (2 folds x 4), 4 done before, 4 to run" in line for line in lines)
    assert result.folds == {"fold_0": "complete", "fold_1": "complete"}
    record = json.loads((study / "utility" / "utility.json").read_text())["folds"]["fold_1"]
    for path in (study / "utility" / "runs" / "fold_1" / record["key"]).glob("*_seed*.json"):
        used = json.loads(path.read_text())["generators"]
        assert {t: used[t]["sha256"] for t in "01"} == {t: record["generators"][t]["sha256"] for t in "01"}
    assert fold_results(study, "fold_1").items() >= old_fold_1.items()  # kept on disk, untouched


def test_folds_computes_those_and_the_summary_still_covers_every_valid_fold(tiny_study, tmp_path):
    """`--folds fold_1` on a finished study replaced the tables with one fold's numbers (case 2)."""
    study = copy_of(tiny_study, tmp_path)
    before = pd.read_csv(study / "utility" / "utility.csv")
    result = run_utility(study, SETTINGS, LOCAL, folds=["fold_1"], log=lambda _: None)
    assert set(result.runs["split"]) == {"fold_0", "fold_1"}
    pd.testing.assert_frame_equal(pd.read_csv(study / "utility" / "utility.csv"), before)
    assert "> folds: fold_0, fold_1" in (study / "utility" / "summary.md").read_text()


def test_other_settings_need_no_overwrite_and_leave_the_first_results_in_place(tiny_study, tmp_path):
    study = copy_of(tiny_study, tmp_path)
    first = results_of(study)
    other = dataclasses.replace(SETTINGS, control=(), stop_share=0.25)
    lines: list[str] = []
    result = run_utility(study, other, LOCAL, folds=["fold_1"], log=lines.append)
    assert set(result.runs["condition"]) == {"real", "real+synth", "synth"}
    assert result.folds == {"fold_0": "missing", "fold_1": "complete"}
    assert "set aside, made with other settings (kept, not used): 8 result file(s)" in lines
    assert {k: v for k, v in results_of(study).items() if k.startswith("runs/")}.items() >= \
        {k: v for k, v in first.items() if k.startswith("runs/")}.items()
    lines.clear()
    again = run_utility(study, SETTINGS, LOCAL, log=lines.append)  # the first settings: all reused
    assert any("8 done before, 0 to run" in line for line in lines)
    assert again.runs.equals(pd.read_csv(tiny_study / "utility" / "utility.csv"))


def test_overwrite_deletes_only_the_asked_folds_own_results(tiny_study, tmp_path):
    """`--overwrite --folds 0` deleted fold 1's results and a user's own file (case 8)."""
    study = copy_of(tiny_study, tmp_path)
    own = study / "utility" / "runs" / "fold_0" / "my_notes.json"
    own.write_text('{"mine": true}')
    fold_1 = fold_results(study, "fold_1")
    lines: list[str] = []
    run_utility(study, SETTINGS, LOCAL, folds=["fold_0"], overwrite=True, log=lines.append)
    assert "--overwrite: deleted 4 result file(s) of fold_0 to run them again" in lines
    assert any("0 done before, 4 to run" in line for line in lines)
    assert own.read_text() == '{"mine": true}'
    assert fold_results(study, "fold_1") == fold_1


def test_a_ratio_that_adds_no_synthetic_image_is_refused_before_anything_is_written(tiny_study, tmp_path):
    """`--ratio 0.01` trained real+synth on real images alone and reported it (case 5)."""
    study = copy_of(tiny_study, tmp_path)
    before = results_of(study)
    tiny = dataclasses.replace(SETTINGS, ratios=(0.01,))
    with pytest.raises(RxwganError, match=r"^--ratio 0.01: adds no synthetic image of target 0 in fold_0 "
                                          r"\(\d+ real training images of it\); use at least"):
        run_utility(study, tiny, LOCAL, log=lambda _: None)
    assert results_of(study) == before


def test_a_corrupt_generator_is_refused_and_once_restored_its_results_count_again(tiny_study, tmp_path):
    """A corrupt generator, then restored, was refused until --overwrite (case 9)."""
    study = copy_of(tiny_study, tmp_path)
    generator = study / "fold_0" / "target_1" / "generator_trained.safetensors"
    good = generator.read_bytes()
    before = results_of(study)
    generator.write_bytes(good[: len(good) // 2])
    with pytest.raises(RxwganError, match=f"{generator}.*not a readable safetensors model file"):
        run_utility(study, SETTINGS, LOCAL, log=lambda _: None)
    assert results_of(study) == before
    generator.write_bytes(good)
    lines: list[str] = []
    run_utility(study, SETTINGS, LOCAL, log=lines.append)
    assert any("8 done before, 0 to run" in line for line in lines)


def test_an_interrupted_command_is_said_by_status_and_note(tiny_study, tmp_path, monkeypatch):
    """A utility killed halfway left no trace the report could show (case 3, its utility part)."""
    import rxwgan.utility.driver as driver

    study = copy_of(tiny_study, tmp_path)
    assert unfinished_note(study) is None

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the command stops while its tasks run

    monkeypatch.setattr(driver, "run_workers", killed)
    with pytest.raises(KeyboardInterrupt):
        run_utility(study, SETTINGS, LOCAL, folds=["fold_1"], overwrite=True, log=lambda _: None)
    note = unfinished_note(study)
    assert note is not None and "0 of 4 classifier runs it asked for are finished" in note
    assert "fold_1: 0/4 classifier runs finished" in utility_status(study)
    assert "has not ended" in utility_status(study)
    from rxwgan.report.render import write_report

    markdown = write_report(study, tmp_path / "report", log=lambda _: None).markdown.read_text()
    assert "the last `rxwgan utility` did not end" in markdown
    assert "> folds: fold_0, fold_1" in markdown  # with the tables the earlier command wrote


def test_a_killed_writers_temporary_files_are_removed_and_nothing_else(tiny_study, tmp_path):
    """A kill between a temporary file and its rename left `.NAME.xxxx.tmp` files for ever
    (found by bench/bench_utility_faults.py)."""
    study = copy_of(tiny_study, tmp_path)
    folder = study / "utility"
    key_folder = next((folder / "runs" / "fold_0").iterdir())
    left = [folder / ".utility.csv.1a2b3c4d.tmp", key_folder / ".real_x0_seed0.json.5e6f7a8b.tmp"]
    mine = [folder / ".my_settings.json.1a2b3c4d.tmp", folder / "notes.txt"]
    for path in left + mine:
        path.write_text("partial")
    run_utility(study, SETTINGS, LOCAL, log=lambda _: None)
    assert not any(path.exists() for path in left)
    assert all(path.read_text() == "partial" for path in mine)
