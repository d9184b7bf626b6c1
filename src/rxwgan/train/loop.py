"""The WGAN-GP training loop for one class of one fold (or both, conditional), with exact resume.

``train(config)`` is the whole job: lock the run folder, let ``setup`` prepare the run
(``folder`` decides between a fresh run, a resume and the old tool's restart),
then run epochs. The maths of a step is in ``steps``, the state a checkpoint holds in
``state``, the files people read in ``artefacts`` (whose ``RunFolder`` records each in the
manifest as it writes it). Every epoch ends with a full checkpoint; SIGINT/SIGTERM finish
the current step and checkpoint mid-epoch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rxwgan.base import folder_lock
from rxwgan.base.devices import reused_cpu_memory
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import DIVERGENCE_KEYS, LOSS_KEYS
from rxwgan.base.progress import Log, progress_bar
from rxwgan.base.signals import stop_requests
from rxwgan.train import artefacts
from rxwgan.train.augment import parse_policy
from rxwgan.train.config import TrainConfig
from rxwgan.train.setup import prepare
from rxwgan.train.state import PartialEpoch, append_epoch, grid_batch
from rxwgan.train.steps import (
    Classes,
    NonFiniteLoss,
    StepSettings,
    critic_step,
    generator_step,
    validation_losses,
)


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
    """One run's loop over epochs; ``setup.prepare`` hands it everything it starts from."""

    def __init__(self, config: TrainConfig, log: Log = print):
        self.config, self.log, self.out = config, log, Path(config.output)
        self.stop_requested = False
        setup = prepare(config, log)
        self.device, self.precision, self.state = setup.device, setup.precision, setup.state
        self.train_images, self.val_images = setup.train_images, setup.val_images
        self.train_labels, self.val_labels = setup.train_labels, setup.val_labels
        self.folder, self.table_print, self.epochs = setup.folder, setup.table_print, setup.epochs
        self.space = setup.space
        self.step_settings = StepSettings(config.gp_weight, self.precision, self.device,
                                          parse_policy(config.augment))

    # --- the loop --------------------------------------------------------------------

    def fit(self) -> TrainResult:
        config, state = self.config, self.state
        if state.epoch >= self.epochs and state.partial is None:
            if self.folder.has_final():
                self.log(f"{self.out}: the run is complete (epoch {state.epoch} of {self.epochs}); "
                         f"nothing to do")
            else:  # the last checkpoint was written, the final files were not
                self._finish()
            return TrainResult(self.out, state.epoch, state.history)
        self.folder.remove_final()
        writer = self.folder.summary_writer(purge_step=state.epoch + 1)
        try:
            with stop_requests(self._request_stop):
                for epoch in range(state.epoch + 1, self.epochs + 1):
                    start = time.perf_counter()
                    with reused_cpu_memory(self.device.type == "cpu" and config.reuse_cpu_memory):
                        values = self._train_epoch(epoch)
                    if self.val_images is not None:
                        classes = None if self.val_labels is None else Classes(self.val_labels)
                        values.update({f"val_{k}": v for k, v in validation_losses(
                            state.generator, state.critic, self.val_images, self.step_settings,
                            seed=config.seed, batch_size=config.batch_size, classes=classes).items()})
                    values.update(self._evaluate(epoch))
                    self._end_epoch(epoch, values, time.perf_counter() - start, writer)
                    if self.stop_requested and epoch < self.epochs:
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
        if state.partial is not None and state.partial.epoch == epoch:
            progress = state.partial
        else:
            progress = PartialEpoch(epoch, self._epoch_order(count))
        state.partial = None
        # Off a terminal the per-epoch log line says enough: no bar inside each epoch.
        for index in progress_bar(range(progress.batch, n_batches), desc=f"epoch {epoch}", unit="batch",
                                  leave=False, disable=not (config.progress and sys.stderr.isatty())):
            rows = progress.order[index * batch:(index + 1) * batch]
            try:
                progress.add(self._step(rows, batch))
            except NonFiniteLoss as exc:
                kept = (f"the last good checkpoint (epoch {state.epoch}) stays in {self.out}"
                        if self.folder.checkpointed else "no checkpoint had been written yet")
                raise RxwganError(f"epoch {epoch}, batch {index + 1}: {exc}; training stopped; "
                                  f"{kept}") from None
            if self.stop_requested and index + 1 < n_batches:
                progress.batch = index + 1
                state.partial = progress
                self._checkpoint()
                raise _Stop
        means = progress.means((*LOSS_KEYS, *DIVERGENCE_KEYS))
        return {f"train_{key}": value for key, value in means.items()}

    def _epoch_order(self, count: int) -> torch.Tensor:
        """The epoch's order of training images: a shuffle, or (conditional, balanced) classes in turn."""
        rng = self.state.rng
        if self.train_labels is None or self.config.class_balance == "table":
            return torch.randperm(count, generator=rng, device=self.device)
        return balanced_order(self.train_labels, rng)

    def _step(self, rows: torch.Tensor, batch: int) -> dict[str, float]:
        """One critic update on the training images at ``rows`` and, every
        ``critic_steps_per_gen_step``-th, a generator update."""
        state, config = self.state, self.config
        real = self.train_images[rows]
        classes = (None if self.train_labels is None else
                   Classes(self.train_labels[rows], config.strength(state.critic_updates)))
        values = critic_step(state.generator, state.critic, state.opt_d, real, state.rng, self.step_settings,
                             classes)
        state.critic_updates += 1
        if state.critic_updates % config.critic_steps_per_gen_step == 0:
            values.update(generator_step(state.generator, state.critic, state.opt_g, batch, state.rng,
                                         self.step_settings, classes))
            if state.ema is not None:
                state.ema.update(state.generator, batch)
        return values

    def _evaluate(self, epoch: int) -> dict[str, float]:
        """--eval_for_each: KID, precision/recall... of the generator against the validation rows,
        in the run's one feature space, whose id is recorded in the run folder (eval_space.json)."""
        config, space = self.config, self.space
        if space is None or self.val_images is None or epoch % config.eval_for_each:
            return {}
        from rxwgan.metrics import evaluate_generator

        state = self.state
        self.folder.record_space(space, state.history)
        images, metrics = self.val_images.float().contiguous().cpu(), list(config.eval_metrics)
        if self.val_labels is None:
            results = evaluate_generator(state.sampler, images, metrics, space, seed=config.seed)
        else:  # each class against its own rows; the plain names hold the mean over the classes
            from rxwgan.metrics.metric_registry import resolve_metrics
            from rxwgan.models.conditioning import ClassBound

            labels, per_class = self.val_labels.cpu(), {}
            for target in config.classes:
                bound = ClassBound(state.sampler, target)
                per_class[target] = evaluate_generator(bound, images[labels == target], metrics, space,
                                                       seed=config.seed)
            results = {key: sum(values[key] for values in per_class.values()) / len(per_class)
                       for key in per_class[config.classes[0]]}
            scores = {key for metric in resolve_metrics(metrics) for key in metric.keys}
            results |= {f"{key}_{target}": value for target, values in per_class.items()
                        for key, value in values.items() if key in scores}
        kid = results.get("kid")
        if kid is not None and (state.best is None or kid < state.best["kid"]):
            state.best = {"epoch": epoch, "kid": float(kid), "space_id": space.key}
            self.folder.save_best(state)
        return {key: float(value) for key, value in results.items()}

    def _end_epoch(self, epoch: int, values: dict[str, float | None], seconds: float, writer: Any) -> None:
        config, state = self.config, self.state
        state.epoch = epoch
        append_epoch(state.history, epoch, values)
        artefacts.log_scalars(writer, epoch, values)
        if epoch % config.save_for_each == 0:
            self.folder.save_epoch_files(epoch, state)
        if epoch % config.disp_for_each == 0 or epoch == self.epochs:
            self.folder.save_pictures(epoch, self.samples(), state.history, writer)
        self.folder.write_history(state.history)
        self._checkpoint()
        self.log(artefacts.epoch_line(epoch, self.epochs, values, seconds))

    def samples(self) -> torch.Tensor:
        """The fixed-latent sample grid's images, from the (averaged) generator in inference mode."""
        sampler = self.state.sampler.eval()
        z, labels = grid_batch(self.state.fixed_z, len(self.config.classes) if self.config.conditional else 0)
        with torch.no_grad():
            return (sampler(z) if labels is None else sampler(z, labels)).float().cpu()

    def _checkpoint(self) -> None:
        state = self.state
        contents = state.checkpoint(self.config, self.device, self.precision, self.table_print)
        batch = 0 if state.partial is None else state.partial.batch
        self.folder.save_checkpoint(contents, f"epoch_{state.epoch:06d}_batch_{batch:06d}")

    def _finish(self) -> None:
        self.folder.save_final(self.state)
        self.log(f"done: {self.epochs} epochs; generator, critic, history, samples and "
                 f"curves in {self.out}")

    def _request_stop(self, signal_name: str) -> None:
        self.stop_requested = True
        self.log(f"{signal_name}: finishing the current step, then saving a checkpoint (send again to "
                 f"stop at once)")


def balanced_order(labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """An epoch's order of ``len(labels)`` rows taking the classes in turn: each class's rows
    shuffled, a smaller class's repeated (reshuffled) until it lasts, so every batch of an
    even size holds as many images of each class."""
    classes = labels.unique()
    per_class = -(-len(labels) // len(classes))
    columns = []
    for target in classes:
        rows = torch.nonzero(labels == target).flatten()
        draws = [rows[torch.randperm(len(rows), generator=rng, device=rows.device)]
                 for _ in range(-(-per_class // len(rows)))]
        columns.append(torch.cat(draws)[:per_class])
    return torch.stack(columns, dim=1).flatten()[:len(labels)]
