"""Everything a run needs before its first step, checked before the folder is touched.

``prepare`` reads the table, lets ``folder.decide_start`` choose how the run starts, builds or
restores the networks, loads the fold's images, builds the evaluation's feature space from
the same table and split, and refuses what cannot work (too few images, an unknown
metric). Only then does it write ``split.csv``, ``config.json`` and the manifest, so a
refused or failed setup leaves the folder as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rxwgan.base.devices import resolve_device, resolve_precision
from rxwgan.base.errors import RxwganError
from rxwgan.base.progress import Log
from rxwgan.data.cache import ImageCache
from rxwgan.data.splits import Partition, partition_table
from rxwgan.data.table import Table, read_table
from rxwgan.train.artefacts import RunFolder
from rxwgan.train.config import TrainConfig
from rxwgan.train.folder import Manifest, decide_start, table_fingerprint
from rxwgan.train.state import RunState, initial_network, new_state

if TYPE_CHECKING:
    from rxwgan.metrics.space_types import FeatureSpace

MIN_EVAL_IMAGES = 6  # precision/recall look at 5 nearest neighbours


@dataclass
class Setup:
    device: torch.device
    precision: str
    state: RunState
    train_images: torch.Tensor
    val_images: torch.Tensor | None
    train_labels: torch.Tensor | None  # each image's class in a conditional run, else None
    val_labels: torch.Tensor | None
    folder: RunFolder
    table_print: dict[str, Any]  # the table's content fingerprint, kept in every checkpoint
    epochs: int  # the run's length: --epochs, or what --kimg / --gen_steps come to
    space: FeatureSpace | None  # --eval_for_each's feature space; None when no evaluation is ahead


def prepare(config: TrainConfig, log: Log) -> Setup:
    """Decide, build, load and check; then record the run's files in its folder."""
    out = Path(config.output)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    table = read_table(config.input, config.path_column, config.target_column,
                       target=None if config.conditional else config.target)
    table_print = table_fingerprint(table, config.split)
    parts = partition_table(table, config.split)
    rows = class_rows(config, table, parts)
    batches = len(rows["train"]) // min(config.batch_size, len(rows["train"]))
    epochs = config.total_epochs(batches)
    config.check_length(epochs, batches)  # before the folder is touched
    start = decide_start(config, out, table_print, log)
    resumed = start.checkpoint or {}
    arch = resumed.get("arch") or resumed.get("config", {}).get("model")  # older checkpoints: config
    generator, critic = (initial_network(config, role, arch) for role in ("generator", "critic"))
    train_images, val_images = fold_images(config, table, rows, int(generator.image_size), device)
    train_labels, val_labels = (_labels(table, rows[name], device) if config.conditional and rows[name]
                                else None for name in ("train", "val"))
    if config.split.group_column is None:
        warn_straddling_twins(config, table, rows, log)
    grouped = "" if config.split.group_column is None else f" (whole {config.split.group_column} groups)"
    log(f"{config.split.name}{grouped}, {config.what}: {len(train_images)} training and "
        f"{0 if val_images is None else len(val_images)} validation images at {generator.image_size}px "
        f"on {device} ({precision})")
    if config.kimg is not None or config.gen_steps is not None:
        log(f"{epochs} epochs of {batches} batches: {epochs * batches * config.batch_size / 1000:.1f} kimg, "
            f"{epochs * batches // config.critic_steps_per_gen_step} generator steps")
    state = new_state(config, generator, critic, device)
    if start.checkpoint is not None:
        state.restore(start.checkpoint, device, precision, config.seed, log)
        where = f"epoch {state.epoch}" + (f", batch {state.partial.batch} of epoch "
                                          f"{state.partial.epoch}" if state.partial else "")
        log(f"resuming from the checkpoint in {out} ({where})")
    elif start.legacy:
        state.restore_legacy(config, log)
    check_evaluation(config, val_images, val_labels)
    space = None
    if evaluates_ahead(config, state.epoch, epochs):
        from rxwgan.metrics.space_per_study import space_of_run

        space = space_of_run(config, table, parts.train, int(generator.image_size), device)

    folder = RunFolder(out, Manifest(out))
    folder.write_split(table, parts)
    counts = {"train_images": len(train_images), "val_images": 0 if val_images is None else len(val_images),
              "epochs": epochs}
    folder.write_config(config, generator, critic, device, precision, counts, table_print["sha256"])
    return Setup(device, precision, state, train_images, val_images, train_labels, val_labels, folder,
                 table_print, epochs, space)


def evaluates_ahead(config: TrainConfig, done: int, epochs: int) -> bool:
    """Whether --eval_for_each falls on an epoch after the ``done`` ones: else no space is built."""
    every = config.eval_for_each
    return bool(every) and epochs // every > done // every


def class_rows(config: TrainConfig, table: Table, parts: Partition) -> dict[str, list[int]]:
    """The run's classes' training and validation rows of the fold (at least 2 training rows of
    each class)."""
    targets = table.targets
    rows = {name: [int(i) for i in getattr(parts, name) if targets[i] in config.classes]
            for name in ("train", "val")}
    for target in config.classes:
        found = sum(targets[i] == target for i in rows["train"])
        if found < 2:
            raise RxwganError(f"{config.input}: only {found} training row(s) of target "
                              f"{target} in {config.split.name}; at least 2 are needed")
    return rows


def _labels(table: Table, positions: list[int], device: torch.device) -> torch.Tensor:
    return torch.as_tensor(table.targets[positions], dtype=torch.long, device=device)


def warn_straddling_twins(config: TrainConfig, table: Table, rows: dict[str, list[int]], log: Log) -> None:
    """One warning line when identical images sit on both sides of the run's split: its
    validation scores then flatter the generator. The images were just decoded, so their
    pixel hashes are remembered and this reads them back."""
    from rxwgan.data.duplicates import exact_groups, pixel_hashes, straddling

    positions = rows["train"] + rows["val"]
    paths = [table.paths[i] for i in positions]
    cache = ImageCache(config.cache_dir)
    groups = exact_groups(pixel_hashes(cache, paths, cache.bit_depths(paths, config.bit_depth)))
    sides = ["train"] * len(rows["train"]) + ["val"] * len(rows["val"])
    count = straddling(groups, sides)
    if count:
        log(f"warning: {count} group(s) of identical images of {config.what} straddle training "
            f"and validation in {config.split.name}; --group-column COL keeps a patient's rows on one side, "
            f"and rxwgan table dedupe drops exact twins")


def fold_images(config: TrainConfig, table: Table, rows: dict[str, list[int]], size: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The class's training and validation images of the fold (``class_rows``), on ``device``."""
    cache = ImageCache(config.cache_dir)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format

    def load(positions: list[int]) -> torch.Tensor:
        images = cache.load_rows(table, size, positions, config.progress, config.bit_depth)
        return torch.from_numpy(images).to(device).contiguous(memory_format=memory)

    return load(rows["train"]), (load(rows["val"]) if rows["val"] else None)


def check_evaluation(config: TrainConfig, val_images: torch.Tensor | None,
                     val_labels: torch.Tensor | None = None) -> None:
    """--eval_for_each: an unknown metric or too few validation images fails now, not at epoch N."""
    if not config.eval_for_each:
        return
    from rxwgan.metrics.metric_registry import resolve_metrics

    for metric in resolve_metrics(list(config.eval_metrics), "--eval_metrics"):
        if metric.needs_train:
            raise RxwganError(f"--eval_metrics {metric.name} is not an epoch metric: run rxwgan evaluate "
                              f"--memorisation RUN_FOLDER on the finished run")
    for target in config.classes:
        if val_images is None:
            available = 0
        else:
            available = len(val_images) if val_labels is None else int((val_labels == target).sum())
        if available < MIN_EVAL_IMAGES:
            raise RxwganError(f"--eval_for_each needs at least {MIN_EVAL_IMAGES} validation images "
                              f"of target {target}; {config.split.name} has {available}")
