"""One classifier run of ``rxwgan utility``: build its training set, train, score on the test rows.

Runs in a Ray worker (or a local process), so everything it knows comes from its arguments;
it writes one JSON file with the scores, the predictions (for the ROC curves) and the row
positions it used, so that anyone can check that no test row was trained or stopped on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.data.cache import ImageCache
from rxwgan.data.table import read_table
from rxwgan.synth.sampling import load_generator, synthetic_images
from rxwgan.utility.classifier import predict_scores, train_classifier
from rxwgan.utility.plan import (
    DUPLICATED,
    MIXED,
    SWAPPED,
    SYNTH,
    FoldInputs,
    UtilityTask,
    fold_rows,
    repeated_rows,
)
from rxwgan.utility.results import fold_key
from rxwgan.utility.scores import score_predictions
from rxwgan.utility.settings import UtilitySettings


def run_task(fold: FoldInputs, task: UtilityTask, settings: UtilitySettings, out: Path,
             device: str = "cpu") -> dict[str, Any]:
    """Train and score one classifier; write and return its record."""
    started = time.perf_counter()
    table = read_table(fold.table, fold.path_column, fold.target_column)
    targets = table.targets.astype(np.int64)
    rows = fold_rows(fold, table, task.seed, settings.stop_share)
    # Class t's generator: its own run's, or a conditional run's bound to t (one file for both).
    generators = {t: load_generator(path, device, settings.weights, target=t)
                  for t, path in fold.generators.items()}
    changed = [fold.generators[t] for t, (_, sha) in generators.items() if sha != fold.generator_sha256[t]]
    if changed:  # its result would be filed under the key of generators it did not use
        raise RxwganError(f"{changed[0]}: changed while utility ran; run the command again")
    size = int(generators[0][0].image_size)
    cache = ImageCache(fold.cache_dir)

    def real(positions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(cache.load_rows(table, size, positions, False, fold.bit_depth))

    fit = rows["fit"]
    if task.condition == DUPLICATED:  # as many images as real+synth, no new one
        fit = np.concatenate([fit, repeated_rows(fit, targets, task.ratio, task.seed)])
    images, labels = [], []
    if task.condition != SYNTH:
        images.append(real(fit))
        labels.append(targets[fit])
    counts = {}
    if task.condition in (MIXED, SYNTH, SWAPPED):
        ratio = 1.0 if task.condition == SYNTH else task.ratio
        for target in (0, 1):
            n = round(ratio * int((targets[rows["fit"]] == target).sum()))
            counts[target] = n
            images.append(synthetic_images(generators[target][0], range(n), seed=task.seed))
            labels.append(np.full(n, 1 - target if task.condition == SWAPPED else target))
    model = train_classifier(torch.cat(images), np.concatenate(labels), real(rows["stop"]),
                             targets[rows["stop"]], settings.classifier, seed=task.seed, device=device)
    test_labels = targets[rows["test"]]
    scores = predict_scores(model, real(rows["test"]), device=device)
    record = {
        **task.to_dict(), **score_predictions(test_labels, scores),
        "n_fit_real": 0 if task.condition == SYNTH else len(fit),
        "n_fit_synthetic": sum(counts.values()), "n_stop": len(rows["stop"]),
        "generators": {str(t): {"file": fold.generators[t], "kind": fold.generator_kinds[t],
                                "sha256": generators[t][1], "weights": generators[t][0].weights,
                                "synthetic": counts.get(t, 0)} for t in (0, 1)},
        "rows": {name: positions.tolist() for name, positions in rows.items()},
        "test_labels": test_labels.tolist(), "test_scores": [float(s) for s in scores],
        "seconds": round(time.perf_counter() - started, 2),
        "depends": fold_key(settings, fold).depends,
    }
    atomic.write_json(out / task.path, record)
    return record
