"""Scores of a TB classifier on held-out rows, and their summary across folds.

One run (fold x condition x seed) gives one set of scores from its test rows. Seeds of
one fold share those rows, so they are not independent samples: across folds, each fold
counts once (the mean over its seeds), and intervals and tests use the folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from rxwgan.base.errors import RxwganError

SUMMARY_METRICS = ("auc", "sp_index", "sens_at_spec90", "spec_at_sens90")
LEVEL = 0.95
WILCOXON_MIN_FOLDS = 6  # below this the signed-rank test cannot reach p < 0.05 two-sided


def sp_index(pd_rate: np.ndarray, fa_rate: np.ndarray) -> np.ndarray:
    """The SP index sqrt(sqrt(PD (1 - FA)) (PD + 1 - FA) / 2) of detection/false-alarm rates."""
    return np.sqrt(np.sqrt(pd_rate * (1.0 - fa_rate)) * (pd_rate + 1.0 - fa_rate) / 2.0)


def score_predictions(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    """AUC, best SP index and its threshold, and the two 90 % operating points.

    ``labels`` are 0/1 (1: TB), ``scores`` larger for TB. ``sens_at_spec90`` is the best
    sensitivity among thresholds with specificity >= 0.9, ``spec_at_sens90`` the converse.
    """
    labels, scores = _checked_predictions(labels, scores)
    fa, pd_rate, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    sp = sp_index(pd_rate, fa)
    best = int(np.argmax(sp))
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "sp_index": float(sp[best]),
        "sp_threshold": float(thresholds[best]),
        "sens_at_spec90": float(pd_rate[1.0 - fa >= 0.9].max()),
        "spec_at_sens90": float((1.0 - fa[pd_rate >= 0.9]).max()),
        "n_test": int(len(labels)),
        "n_positive": int(labels.sum()),
    }


def _checked_predictions(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or len(labels) != len(scores):
        raise RxwganError(f"scores: expected one label per score, got labels of shape {labels.shape} "
                          f"and scores of shape {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise RxwganError(f"scores: labels must be 0 or 1, found {sorted(set(labels.tolist()) - {0, 1})[:5]}")
    present = np.unique(labels)
    if len(present) < 2:
        which = f"only class {int(present[0])}" if len(present) else "no rows"
        raise RxwganError(f"scores: the test labels hold {which}; ROC scores need both classes")
    if not np.isfinite(scores).all():
        raise RxwganError(f"scores: {int((~np.isfinite(scores)).sum())} score(s) are not finite")
    return labels.astype(np.int64), scores


def summarise(frame: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS,
              by: Sequence[str] = ("condition",)) -> pd.DataFrame:
    """One row per group: each metric's mean, std and 95 % t-interval across folds.

    Seeds are averaged within a fold first. ``n_folds``, ``n_runs`` (rows) and
    ``n_test_images`` (the folds' test rows added up: k-fold test sets are disjoint)
    say what every number came from.
    """
    _require_columns(frame, [*by, "fold", "seed", "n_test", *metrics], "summarise")
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        per_fold = group.groupby("fold")[list(metrics)].mean()
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for metric in metrics:
            mean, std, low, high = _mean_and_interval(per_fold[metric].to_numpy())
            row.update({f"{metric}_mean": mean, f"{metric}_std": std,
                        f"{metric}_ci95_low": low, f"{metric}_ci95_high": high})
        row.update({"n_folds": len(per_fold), "n_runs": len(group),
                    "n_test_images": int(group.groupby("fold")["n_test"].max().sum())})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_comparison(frame: pd.DataFrame, condition: str, baseline: str = "real",
                      metric: str = "auc") -> dict[str, float | str]:
    """``condition`` against ``baseline`` on the (fold, seed) pairs both have.

    The difference is averaged over seeds within each fold; its mean, 95 % t-interval and
    p-value are across folds (Wilcoxon signed-rank from 6 folds on, else a paired t-test).
    """
    _require_columns(frame, ["condition", "fold", "seed", metric], "paired_comparison")
    sides = []
    for name in (condition, baseline):
        rows = frame[frame["condition"] == name]
        if rows.duplicated(["fold", "seed"]).any():
            raise RxwganError(f"paired_comparison: condition {name!r} has several rows for one "
                              "(fold, seed); select one ratio or control first")
        sides.append(rows.set_index(["fold", "seed"])[metric])
    pairs = pd.concat(sides, axis=1, keys=["condition", "baseline"], join="inner")
    if pairs.empty:
        raise RxwganError(f"paired_comparison: no (fold, seed) has both {condition!r} and {baseline!r}")
    per_fold = pairs.groupby(level="fold").mean()
    differences = (per_fold["condition"] - per_fold["baseline"]).to_numpy()
    mean, _, low, high = _mean_and_interval(differences)
    if len(differences) >= WILCOXON_MIN_FOLDS:
        test, p_value = "wilcoxon signed-rank", _p_or_nan(stats.wilcoxon, differences)
    else:
        test, p_value = "paired t", _p_or_nan(stats.ttest_1samp, differences, 0.0)
    return {"condition": condition, "baseline": baseline, "metric": metric,
            "mean_difference": mean, "ci95_low": low, "ci95_high": high, "p_value": p_value,
            "test": test, "n_pairs": len(pairs), "n_folds": len(per_fold)}


def _mean_and_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std and the 95 % t-interval of the mean (NaN where one value cannot tell)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(np.std(values, ddof=1))
    if std == 0.0:
        return mean, 0.0, mean, mean
    low, high = stats.t.interval(LEVEL, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, std, float(low), float(high)


def _p_or_nan(test, *args) -> float:
    """The test's p-value; NaN when it has nothing to test (under 2 folds, or all differences 0)."""
    values = args[0]
    if len(values) < 2 or not np.any(values):
        return float("nan")
    return float(test(*args).pvalue)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in dict.fromkeys(columns) if column not in frame.columns]
    if missing:
        raise RxwganError(f"{what}: the frame lacks column(s) {', '.join(missing)}")
    if frame.empty:
        raise RxwganError(f"{what}: the frame has no rows")
