"""The demo job behind ``make demo``: the whole pipeline on the shipped phantom X-rays.

phantoms -> table -> cache -> folds -> one generator per class on fold 0 -> grids,
curves and history in one folder, small enough for two CPU cores in a few minutes.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rxwgan.cache import ImageCache
from rxwgan.config import TrainConfig
from rxwgan.phantoms import write_demo_data
from rxwgan.models import model_info
from rxwgan.splits import partition
from rxwgan.table import read_table
from rxwgan.training import Log, train


@dataclass
class DemoSettings:
    """What the demo changes from TrainConfig's defaults (the rest, the split included, are those)."""

    images: int = 200
    image_size: int = 128
    model: str = "small"
    epochs: int = 250


def run_demo(out: str | Path, settings: DemoSettings | None = None, log: Log = print) -> Path:
    """Run the demo into ``out`` (re-running continues or skips finished steps); return ``out``."""
    settings = settings or DemoSettings()
    out = Path(out)
    table_path = out / "data" / "table.csv"
    if table_path.is_file():
        log(f"[1/4] phantom data already in {table_path.parent}")
    else:
        write_demo_data(out / "data", n_images=settings.images, size=settings.image_size)
        log(f"[1/4] wrote {settings.images} phantom X-rays and their table to {table_path}")

    table = read_table(table_path)
    size = model_info(settings.model).image_size
    start = time.perf_counter()
    ImageCache().load(table.paths, size, labels=[table.row_label(i) for i in range(len(table))])
    log(f"[2/4] {len(table)} images decoded to {size}px in the cache "
        f"({time.perf_counter() - start:.1f} s)")

    split = TrainConfig.default("split")
    log(f"[3/4] {split.n_splits}-fold split (seed {split.seed}), as the old tool made it:")
    targets = table.targets
    for fold in range(split.n_splits):
        parts = partition(targets, dataclasses.replace(split, fold=fold))
        train_counts, val_counts = Counter(targets[parts.train]), Counter(targets[parts.val])
        log(f"      fold {fold}: train {len(parts.train)} (TB {train_counts[1]}), "
            f"val {len(parts.val)} (TB {val_counts[1]})")

    for target in (0, 1):
        run_dir = out / split.name / f"target_{target}"
        log(f"[4/4] training the target-{target} generator on {split.name} -> {run_dir}")
        train(TrainConfig(input=str(table_path), output=str(run_dir), model=settings.model,
                          target=target, epochs=settings.epochs, save_for_each=max(settings.epochs // 4, 1),
                          disp_for_each=max(settings.epochs // 4, 1)), log=log)
    log(f"demo finished: sample grids (fake_samples_epoch_*.png), loss_curves.png and history.json "
        f"for each class are in {out}/{split.name}/target_0 and target_1")
    return out
