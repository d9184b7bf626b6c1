"""The WGAN-GP training loop for one class of one fold, with exact resume.

``train(config)`` is the whole job: lock the run folder, read the table, let
``run_folder`` decide between a fresh run, a resume and the old tool's restart, then run
epochs. The maths of a step is in ``wgan_steps``, the state a checkpoint holds in
``run_state``, the files people read in ``artefacts``. Every epoch ends with a full
checkpoint; SIGINT/SIGTERM finish the current step and checkpoint mid-epoch.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rxwgan import artefacts, folder_lock
from rxwgan.cache import ImageCache
from rxwgan.checkpoint import save_checkpoint
from rxwgan.config import TrainConfig
from rxwgan.devices import resolve_device, resolve_precision
from rxwgan.errors import RxwganError
from rxwgan.progress import progress_bar
from rxwgan.run_folder import Manifest, decide_start, table_fingerprint
from rxwgan.run_state import initial_network, new_state
from rxwgan.splits import partition
from rxwgan.table import Table, read_table
from rxwgan.wgan_steps import NonFiniteLoss, critic_step, generator_step, validate

MIN_EVAL_IMAGES = 6  # precision/recall look at 5 nearest neighbours
Log = Callable[[str], None]


@dataclass
class TrainResult:
    output: Path
    epoch: int
    history: dict[str, list[float | None]]
    interrupted: bool = False


class _Stop(Exception):
    """Raised inside the loop once a requested stop has been checkpointed."""


def train(config: TrainConfig, log: Log = print) -> TrainResult:
    """Train (or resume) one run as ``config`` says; the Python face of ``rxwgan train``."""
    config.check()
    with folder_lock.hold(config.output, "-o"):
        return Trainer(config, log).fit()


class Trainer:
    def __init__(self, config: TrainConfig, log: Log = print):
        self.config, self.log, self.out = config, log, Path(config.output)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.stop_requested = False
        table = read_table(config.input, config.path_column, config.target_column, target=config.target)
        self.table_print = table_fingerprint(table)
        start = decide_start(config, self.out, self.table_print, log)
        resumed = start.checkpoint or {}
        arch = resumed.get("arch") or resumed.get("config", {}).get("model")  # older checkpoints: config
        generator, critic = (initial_network(config, role, arch) for role in ("generator", "critic"))
        parts = partition(table.targets, config.split)
        self.train_images, self.val_images = self._images(table, parts, int(generator.image_size))
        self.state = new_state(config, generator, critic, self.device)
        if start.checkpoint is not None:
            self.state.restore(start.checkpoint, self.device, self.precision, config.seed, log)
            partial = self.state.partial
            where = f"epoch {self.state.epoch}" + (f", batch {partial['batch']} of epoch {partial['epoch']}"
                                                   if partial else "")
            log(f"resuming from the checkpoint in {self.out} ({where})")
        elif start.legacy:
            self.state.restore_legacy(config, log)
        self._check_evaluation()
        # Nothing is written before here: a refused or failed setup leaves the folder as it was.
        self.manifest = Manifest(self.out)
        self.manifest.record(*artefacts.RUN_FILES)
        table.write(self.out / "split.csv", {"partition": parts.labels(len(table))})
        counts = {"train_images": len(self.train_images),
                  "val_images": 0 if self.val_images is None else len(self.val_images)}
        artefacts.write_config(self.out, config, generator, critic, self.device, self.precision, counts,
                               self.table_print["sha256"])

    def _images(self, table: Table, parts: Any, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This class's training and validation images of the fold, on the device, from the cache."""
        config, targets = self.config, table.targets
        rows = {name: [int(i) for i in getattr(parts, name) if targets[i] == config.target]
                for name in ("train", "val")}
        if len(rows["train"]) < 2:
            raise RxwganError(f"{config.input}: only {len(rows['train'])} training row(s) of target "
                              f"{config.target} in {config.split.name}; at least 2 are needed")
        cache, paths = ImageCache(config.cache_dir), table.paths
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        loaded = [torch.from_numpy(cache.load([paths[i] for i in rows[name]], size,
                                              [table.row_label(i) for i in rows[name]], config.progress))
                  .to(self.device).contiguous(memory_format=memory) if rows[name] else None
                  for name in ("train", "val")]
        self.log(f"{config.split.name}, target {config.target}: {len(rows['train'])} training and "
                 f"{len(rows['val'])} validation images at {size}px on {self.device} ({self.precision})")
        return loaded[0], loaded[1]

    def _check_evaluation(self) -> None:
        """--eval_for_each: an unknown metric or too few validation images fails now, not at epoch N."""
        config = self.config
        if not config.eval_for_each:
            return
        from rxwgan.metrics.registry import resolve_metrics

        resolve_metrics(list(config.eval_metrics))
        available = 0 if self.val_images is None else len(self.val_images)
        if available < MIN_EVAL_IMAGES:
            raise RxwganError(f"--eval_for_each needs at least {MIN_EVAL_IMAGES} validation images "
                              f"of target {config.target}; {config.split.name} has {available}")

    # --- the loop --------------------------------------------------------------------

    def fit(self) -> TrainResult:
        config, state = self.config, self.state
        if state.epoch >= config.epochs and state.partial is None:
            if artefacts.has_final(self.out):
                self.log(f"{self.out}: the run is complete (epoch {state.epoch} of {config.epochs}); "
                         f"nothing to do")
            else:  # the last checkpoint was written, the final files were not
                self._finish()
            return TrainResult(self.out, state.epoch, state.history)
        for name in artefacts.FINAL_FILES:  # a shorter run's final files: this one writes its own
            (self.out / name).unlink(missing_ok=True)
        writer = artefacts.summary_writer(self.out / "tensorboard", purge_step=state.epoch + 1)
        try:
            with self._stop_on_signals():
                for epoch in range(state.epoch + 1, config.epochs + 1):
                    start = time.perf_counter()
                    values = self._train_epoch(epoch)
                    if self.val_images is not None:
                        values.update({f"val_{k}": v for k, v in validate(
                            state.generator, state.critic, self.val_images, config.seed, config.batch_size,
                            config.gp_weight, self.precision).items()})
                    values.update(self._evaluate(epoch))
                    self._end_epoch(epoch, values, time.perf_counter() - start, writer)
                    if self.stop_requested and epoch < config.epochs:
                        raise _Stop
        except _Stop:
            self.log(f"stopped; resume with the same command (or add --resume): everything up to "
                     f"here is in {self.out}")
            return TrainResult(self.out, state.epoch, state.history, interrupted=True)
        finally:
            writer.close()
        self._finish()
        return TrainResult(self.out, state.epoch, state.history)

    def _train_epoch(self, epoch: int) -> dict[str, float | None]:
        config, state = self.config, self.state
        count = len(self.train_images)
        batch = min(config.batch_size, count)
        n_batches = count // batch  # equal batches; the remainder differs each epoch
        if state.partial is not None and state.partial["epoch"] == epoch:
            order, first = state.partial["order"].to(self.device), state.partial["batch"]
            sums, counts = defaultdict(float, state.partial["sums"]), defaultdict(int, state.partial["counts"])
        else:
            order, first = torch.randperm(count, generator=state.rng, device=self.device), 0
            sums, counts = defaultdict(float), defaultdict(int)
        state.partial = None
        for index in progress_bar(range(first, n_batches), desc=f"epoch {epoch}", unit="batch",
                                  enabled=config.progress, leave=False):
            real = self.train_images[order[index * batch:(index + 1) * batch]]
            try:
                values = critic_step(state.generator, state.critic, state.opt_d, real, state.rng,
                                     config.gp_weight, self.precision)
                state.critic_updates += 1
                if state.critic_updates % config.critic_ratio == 0:
                    values.update(generator_step(state.generator, state.critic, state.opt_g, batch,
                                                 state.rng, self.precision, self.device))
            except NonFiniteLoss as exc:
                kept = (f"the last good checkpoint (epoch {state.epoch}) stays in {self.out}"
                        if self.manifest.checkpointed else "no checkpoint had been written yet")
                raise RxwganError(f"epoch {epoch}, batch {index + 1}: {exc}; training stopped; "
                                  f"{kept}") from None
            for key, value in values.items():
                sums[key] += value
                counts[key] += 1
            if self.stop_requested and index + 1 < n_batches:
                state.partial = {"epoch": epoch, "batch": index + 1, "order": order.cpu(),
                                 "sums": dict(sums), "counts": dict(counts)}
                self._checkpoint()
                raise _Stop
        return {f"train_{key}": sums[key] / counts[key] if counts[key] else None
                for key in (*artefacts.LOSS_KEYS, *artefacts.DIVERGENCE_KEYS)}
