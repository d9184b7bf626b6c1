"""Each class's two-sample test per fold, beside the synthetic-only AUC in the headline.

Synthetic-only AUC (train on synthetic, test on real) says whether the generators carry what
separates the classes; the two-sample test (``rxwgan.metrics.two_sample``: can a linear model
tell the class's real training images from as many synthetic ones?) says how real each class
looks on its own. ``utility`` computes both, so that ``report`` only reads them. A fold's
result sits in its key folder, so it is reused only for the same generators and settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rxwgan.base import atomic
from rxwgan.base.layout import UTILITY_RUNS_FOLDER, UTILITY_TWO_SAMPLE
from rxwgan.utility.summary import FoldResults


def fold_two_sample(out: Path, fold: FoldResults, weights: str, seed: int) -> dict[str, Any]:
    """``{"accuracy": {target: acc}, "n": {target: images per set}}`` for ``fold``, read back
    when its key folder holds it for the same dependencies, else computed and written there."""
    path = out / UTILITY_RUNS_FOLDER / fold.name / fold.key.key / UTILITY_TWO_SAMPLE
    try:
        record = json.loads(path.read_text())
        if record["depends"] == fold.key.depends and record["seed"] == seed:
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged: computed again
    record = {"depends": fold.key.depends, "seed": seed, **_compute(fold, weights, seed)}
    atomic.write_json(path, record)
    return record


def _compute(fold: FoldResults, weights: str, seed: int) -> dict[str, Any]:
    import torch

    from rxwgan.data.cache import ImageCache
    from rxwgan.data.splits import partition_table
    from rxwgan.data.table import read_table
    from rxwgan.metrics.two_sample import FOLDS, c2st_accuracy
    from rxwgan.synth.sampling import load_generator, synthetic_images

    inputs = fold.fold
    table = read_table(inputs.table, inputs.path_column, inputs.target_column)
    targets = table.targets.astype(np.int64)
    train = partition_table(table, inputs.split).train
    cache = ImageCache(inputs.cache_dir)
    accuracy, counts = {}, {}
    for target in (0, 1):
        rows = train[targets[train] == target]
        if len(rows) < FOLDS:  # too few for its cross-validation: said in the headline, not a crash
            accuracy[str(target)], counts[str(target)] = None, len(rows)
            continue
        generator, _ = load_generator(inputs.generators[target], "cpu", weights, target=target)
        size = int(generator.image_size)
        real = torch.from_numpy(cache.load_rows(table, size, rows, False, inputs.bit_depth))
        fake = synthetic_images(generator, range(len(rows)), seed=seed)
        accuracy[str(target)], counts[str(target)] = c2st_accuracy(real, fake, seed=seed)
    return {"accuracy": accuracy, "n": counts}

