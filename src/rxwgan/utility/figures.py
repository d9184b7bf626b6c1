"""The utility figure: one ROC panel per condition, every classifier run of it, and their mean."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from rxwgan.base import atomic
from rxwgan.base.plots import figure_format
from rxwgan.utility.plan import arm

GRID = np.linspace(0.0, 1.0, 101)  # false-positive rates the mean curve is taken at


def mean_roc(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive grid, mean and standard deviation of the runs' true-positive rates on it."""
    rates = []
    for record in records:
        fpr, tpr, _ = roc_curve(record["test_labels"], record["test_scores"])
        rates.append(np.interp(GRID, fpr, tpr))
    stacked = np.vstack(rates)
    return GRID, stacked.mean(axis=0), stacked.std(axis=0)


def save_roc_figure(records: Sequence[dict[str, Any]], path: Path) -> None:
    """ROC curves of every run (thin) and the mean across runs (thick, +-1 std band) per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        arms.setdefault(arm(record["condition"], record["ratio"]), []).append(record)
    figure, axes = plt.subplots(1, len(arms), figsize=(3.6 * len(arms), 3.7), squeeze=False)
    for axis, (name, mine) in zip(axes[0], arms.items(), strict=True):
        for record in mine:
            fpr, tpr, _ = roc_curve(record["test_labels"], record["test_scores"])
            axis.plot(fpr, tpr, color="0.7", linewidth=0.6)
        grid, mean, std = mean_roc(mine)
        aucs = [record["auc"] for record in mine]
        axis.plot(grid, mean, color="C0", linewidth=2, label=f"mean AUC {np.mean(aucs):.3f}")
        axis.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color="C0", alpha=0.2,
                          linewidth=0)
        axis.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=0.8)
        axis.set_title(f"{name} ({len(mine)} runs)", fontsize=10)
        axis.set_xlabel("false-positive rate (1 - specificity)")
        axis.set_ylabel("sensitivity")
        axis.set_aspect("equal")
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format=figure_format(path))
    plt.close(figure)
