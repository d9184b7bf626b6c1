"""The study's headline: synthetic-only AUC beside each class's two-sample test, computed by
``utility`` and read by ``report`` (finding, part 4)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rxwgan.report.render import write_report
from rxwgan.utility import two_sample
from rxwgan.utility.driver import run_utility
from tiny_study import LOCAL, SETTINGS, copy_of


def test_the_headline_leads_the_summary_and_the_report_and_is_computed_once(tiny_study, tmp_path,
                                                                           monkeypatch):
    study = copy_of(tiny_study, tmp_path)
    record = json.loads((study / "utility" / "utility.json").read_text())
    summary = pd.read_csv(study / "utility" / "summary.csv").set_index("condition")
    first = (study / "utility" / "summary.md").read_text().splitlines()[0]
    assert first.startswith(f"**synth-only AUC {summary.loc['synth', 'auc_mean']:.3f}")
    assert f"(real {summary.loc['real', 'auc_mean']:.3f}" in first and "two-sample test accuracy" in first
    assert record["headline"] in first
    for fold, result in record["two_sample"].items():
        split = pd.read_csv(study / fold / "target_0" / "split.csv")
        train = split[split["partition"] == "train"]
        assert result["n"] == {t: int((train["target"] == int(t)).sum()) for t in ("0", "1")}
        assert all(0.0 <= accuracy <= 1.0 for accuracy in result["accuracy"].values())

    def computed_again(*_args):
        raise AssertionError("computed again for the same generators and settings")

    monkeypatch.setattr(two_sample, "_compute", computed_again)
    assert run_utility(study, SETTINGS, LOCAL, log=lambda _: None).headline == record["headline"]
    markdown = write_report(study, tmp_path / "report", log=lambda _: None).markdown.read_text()
    assert markdown.splitlines()[2] == f"**{record['headline']}**"  # under the title


def test_a_damaged_two_sample_record_is_computed_again(tiny_study, tmp_path):
    study = copy_of(tiny_study, tmp_path)
    path = next((study / "utility" / "runs" / "fold_0").glob("*/two_sample.json"))
    before = json.loads(path.read_text())
    path.write_text('{"accuracy": ')
    run_utility(study, SETTINGS, LOCAL, log=lambda _: None)
    assert json.loads(path.read_text())["accuracy"] == pytest.approx(before["accuracy"])


def test_a_class_too_small_for_the_two_sample_test_is_said_not_averaged():
    from rxwgan.utility.summary import headline

    rows = [{"condition": "real", "auc_mean": 0.9, "n_folds": 1},
            {"condition": "synth", "auc_mean": 0.7, "n_folds": 1}]
    line = headline(rows, {"fold_0": {"accuracy": {"0": 0.6, "1": None}},
                           "fold_1": {"accuracy": {"0": 0.5, "1": None}}})
    assert line == ("synth-only AUC 0.700 (real 0.900) (train on synthetic, test on real); two-sample test "
                    "accuracy target 0: 0.550, target 1: too few training images (0.5: indistinguishable; "
                    "mean over 2 fold(s))")
