"""How well the utility study's classifier does on real phantom rows alone, per fold.

For each phantom setting (``clear``: 200 rows, the demo's; ``subtle``: 120 rows, the
setting meant for the utility study), the data are written at 128 px as ``demo-data``
writes them and read at 64 px through the cache, as a 64 px study reads them. Each of
the 5 k-fold partitions (``SplitSpec(fold=k, n_splits=5)``) trains one classifier on its
training rows less a stratified 20 % kept for early stopping, and scores it on the fold's
validation rows. The subtle setting was tuned with this script to a mean AUC of about
0.75-0.85; the clear one should sit near 1.

One torch thread: the time per training is what one CPU core takes.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from rxwgan.data.cache import ImageCache
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec, partition
from rxwgan.data.table import read_table
from rxwgan.utility.classifier import predict_scores, train_classifier
from rxwgan.utility.scores import score_predictions
from rxwgan.utility.settings import ClassifierSettings

SETTINGS = {"clear": 200, "subtle": 120}  # findings -> number of rows
N_SPLITS, SIZE, STOP_FRACTION = 5, 64, 0.2


def fold_scores(images: torch.Tensor, targets: np.ndarray, fold: int,
                settings: ClassifierSettings) -> tuple[dict[str, float], float, int]:
    """Scores of one fold's classifier on its validation rows, seconds it took, epochs it ran."""
    parts = partition(targets, SplitSpec(fold=fold, n_splits=N_SPLITS))
    fit, stop = train_test_split(parts.train, test_size=STOP_FRACTION, stratify=targets[parts.train],
                                 random_state=fold)
    epochs: list[str] = []
    start = time.perf_counter()
    model = train_classifier(images[fit], targets[fit], images[stop], targets[stop], settings,
                             seed=fold, log=epochs.append)
    seconds = time.perf_counter() - start
    return score_predictions(targets[parts.val], predict_scores(model, images[parts.val])), seconds, \
        len(epochs) - 1


def setting_figures(findings: str, n_images: int, settings: ClassifierSettings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        table = read_table(write_demo_data(Path(tmp) / "data", n_images=n_images, size=128,
                                           findings=findings))
        images = torch.from_numpy(ImageCache(Path(tmp) / "cache").load_rows(table, SIZE, progress=False))
    targets = table.targets
    folds = [fold_scores(images, targets, fold, settings) for fold in range(N_SPLITS)]
    aucs = [round(scores["auc"], 4) for scores, _, _ in folds]
    return {
        "n_images": n_images, "per_fold_auc": aucs,
        "auc_mean": round(statistics.mean(aucs), 4), "auc_std": round(statistics.stdev(aucs), 4),
        "per_fold_sp_index": [round(scores["sp_index"], 4) for scores, _, _ in folds],
        "per_fold_n_test": [int(scores["n_test"]) for scores, _, _ in folds],
        "per_fold_epochs": [epochs for _, _, epochs in folds],
        "seconds_per_training": round(statistics.mean(seconds for _, seconds, _ in folds), 2),
    }


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = ClassifierSettings()
        figures = {"threads": 1, "size": SIZE, "n_splits": N_SPLITS, "stop_fraction": STOP_FRACTION,
                   "settings": settings.__dict__}
        for findings, n_images in SETTINGS.items():
            figures[findings] = setting_figures(findings, n_images, settings)
        return figures
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
