from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.utility.scores import paired_comparison, score_predictions, summarise

T_975_DF2 = 4.302652729911275  # two-sided 95 % quantile of Student's t with 2 degrees of freedom


def test_a_perfect_classifier_scores_one_everywhere():
    scores = score_predictions(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert scores == {"auc": 1.0, "sp_index": 1.0, "sp_threshold": 0.8, "sens_at_spec90": 1.0,
                      "spec_at_sens90": 1.0, "n_test": 4.0, "n_positive": 2.0}


def test_a_classifier_that_cannot_tell_scores_chance():
    scores = score_predictions(np.array([0, 1, 0, 1, 1]), np.full(5, 0.3))
    assert scores["auc"] == 0.5
    assert scores["sp_index"] == 0.0  # its only thresholds flag nobody or everybody
    assert scores["sens_at_spec90"] == 0.0 and scores["spec_at_sens90"] == 0.0


def test_scores_of_a_small_hand_worked_example():
    # Descending: 0.9 TB, 0.6 normal, 0.5 TB, 0.2 and 0.1 normal. ROC points (FA, PD):
    # (0, 0.5) at 0.9, (1/3, 0.5) at 0.6, (1/3, 1) at 0.5, then (2/3, 1), (1, 1).
    scores = score_predictions(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.6, 0.5, 0.9]))
    assert scores["auc"] == pytest.approx(5 / 6)
    best = math.sqrt(math.sqrt(2 / 3) * (1 + 2 / 3) / 2)  # at (1/3, 1): beats sqrt(sqrt(0.5) * 0.75)
    assert scores["sp_index"] == pytest.approx(best) and scores["sp_threshold"] == 0.5
    assert scores["sens_at_spec90"] == 0.5  # only FA = 0 keeps specificity >= 0.9
    assert scores["spec_at_sens90"] == pytest.approx(2 / 3)
    assert scores["n_test"] == 5 and scores["n_positive"] == 2


@pytest.mark.parametrize("labels, scores, words", [
    ([1, 1, 1], [0.2, 0.5, 0.9], "only class 1"),
    ([0, 0], [0.2, 0.5], "only class 0"),
    ([], [], "no rows"),
    ([0, 1, 1], [0.2, 0.5], "one label per score"),
    ([0, 2, 1], [0.2, 0.5, 0.1], "0 or 1"),
    ([0, 1], [0.2, np.nan], "not finite"),
])
def test_refuses_predictions_it_cannot_score(labels, scores, words):
    with pytest.raises(RxwganError, match=words):
        score_predictions(np.array(labels), np.array(scores))


def runs(values: dict[tuple[str, int, int], float], n_test: dict[int, int] | None = None) -> pd.DataFrame:
    """A utility table from {(condition, fold, seed): auc}."""
    n_test = n_test or {}
    return pd.DataFrame([{"condition": c, "fold": f, "seed": s, "auc": v, "n_test": n_test.get(f, 10)}
                         for (c, f, s), v in values.items()])


def test_summary_averages_seeds_within_a_fold_before_folds():
    # Fold means 0.7, 0.8, 0.9 (seeds spread differently in each fold): mean 0.8, std 0.1.
    frame = runs({("real", 0, 0): 0.6, ("real", 0, 1): 0.8, ("real", 1, 0): 0.8, ("real", 1, 1): 0.8,
                  ("real", 2, 0): 0.85, ("real", 2, 1): 0.95, ("synth", 0, 0): 0.5},
                 n_test={0: 10, 1: 12, 2: 11})
    summary = summarise(frame, metrics=["auc"]).set_index("condition")
    real = summary.loc["real"]
    assert real.auc_mean == pytest.approx(0.8) and real.auc_std == pytest.approx(0.1)
    half_width = T_975_DF2 * 0.1 / math.sqrt(3)
    assert real.auc_ci95_low == pytest.approx(0.8 - half_width)
    assert real.auc_ci95_high == pytest.approx(0.8 + half_width)
    assert (real.n_folds, real.n_runs, real.n_test_images) == (3, 6, 33)
    synth = summary.loc["synth"]
    assert synth.auc_mean == 0.5 and math.isnan(synth.auc_std) and math.isnan(synth.auc_ci95_low)
    assert (synth.n_folds, synth.n_runs, synth.n_test_images) == (1, 1, 10)


def test_summary_groups_by_several_columns_and_names_missing_ones():
    frame = runs({("real", 0, 0): 0.7, ("real", 1, 0): 0.9}).assign(ratio=[1, 2])
    summary = summarise(frame, metrics=["auc"], by=["condition", "ratio"])
    assert list(summary.ratio) == [1, 2] and list(summary.n_folds) == [1, 1]
    with pytest.raises(RxwganError, match="sp_index"):
        summarise(frame)


def test_paired_comparison_with_few_folds_is_a_paired_t_test():
    values = {}
    for fold, gain in enumerate([0.1, 0.2, 0.3]):
        for seed in range(2):
            values[("real", fold, seed)] = 0.6 + 0.01 * seed
            values[("real+synth", fold, seed)] = 0.6 + 0.01 * seed + gain
    values[("real+synth", 0, 5)] = 0.0  # no baseline with seed 5: not a pair, ignored
    result = paired_comparison(runs(values), "real+synth")
    assert result["mean_difference"] == pytest.approx(0.2)
    half_width = T_975_DF2 * 0.1 / math.sqrt(3)
    assert result["ci95_low"] == pytest.approx(0.2 - half_width)
    assert result["ci95_high"] == pytest.approx(0.2 + half_width)
    t = 0.2 / (0.1 / math.sqrt(3))
    assert result["test"] == "paired t"
    assert result["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))  # Student t, 2 df, closed form
    assert (result["n_pairs"], result["n_folds"]) == (6, 3)


def test_paired_comparison_from_six_folds_is_a_signed_rank_test():
    values = {}
    for fold in range(6):
        values[("real", fold, 0)] = 0.7
        values[("swapped", fold, 0)] = 0.7 - 0.01 * (fold + 1)
    result = paired_comparison(runs(values), "swapped")
    assert result["test"] == "wilcoxon signed-rank"
    assert result["p_value"] == pytest.approx(2 / 2 ** 6)  # all six below: the exact two-sided tail
    assert result["mean_difference"] == pytest.approx(-0.035)


def test_paired_comparison_refuses_what_it_cannot_pair():
    frame = runs({("real", 0, 0): 0.7, ("synth", 1, 0): 0.6})
    with pytest.raises(RxwganError, match="no \\(fold, seed\\) has both 'synth' and 'real'"):
        paired_comparison(frame, "synth")
    doubled = runs({("real", 0, 0): 0.7, ("synth", 0, 0): 0.6})
    doubled = pd.concat([doubled, doubled.tail(1)])
    with pytest.raises(RxwganError, match="several rows"):
        paired_comparison(doubled, "synth")
