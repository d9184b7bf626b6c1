"""The WGAN-GP training loop for one class of one fold, with exact resume.

``train(config)`` is the whole job: lock the run folder, let ``run_setup`` prepare the
run (``run_folder`` decides between a fresh run, a resume and the old tool's restart),
then run epochs. The maths of a step is in ``wgan_steps``, the state a checkpoint holds
in ``run_state``, the files people read in ``artefacts``. Every epoch ends with a full
checkpoint; SIGINT/SIGTERM finish the current step and checkpoint mid-epoch.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rxwgan.base import atomic, folder_lock
from rxwgan.base.devices import reused_cpu_memory
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import (
    BEST_FILES,
    DIVERGENCE_KEYS,
    FINAL_FILES,
    HISTORY_FILE,
    LOSS_KEYS,
    TENSORBOARD_FOLDER,
    epoch_files,
    grid_file,
)
from rxwgan.base.progress import Log, progress_bar
from rxwgan.base.signals import stop_requests
from rxwgan.train import artefacts
from rxwgan.train.augment import parse_policy
from rxwgan.train.checkpoint import save_checkpoint
from rxwgan.train.config import TrainConfig
from rxwgan.train.setup import prepare
from rxwgan.train.state import append_epoch
from rxwgan.train.steps import NonFiniteLoss, critic_step, generator_step, validate


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
    """One run's loop over epochs; ``run_setup.prepare`` hands it everything it starts from."""

    def __init__(self, config: TrainConfig, log: Log = print):
        self.config, self.log, self.out = config, log, Path(config.output)
        self.stop_requested = False
        setup = prepare(config, log)
        self.device, self.precision, self.state = setup.device, setup.precision, setup.state
        self.train_images, self.val_images = setup.train_images, setup.val_images
        self.manifest, self.table_print, self.epochs = setup.manifest, setup.table_print, setup.epochs
        self.policy = parse_policy(config.augment)

    # --- the loop --------------------------------------------------------------------

    def fit(self) -> TrainResult:
        config, state = self.config, self.state
        if state.epoch >= self.epochs and state.partial is None:
            if artefacts.has_final(self.out):
                self.log(f"{self.out}: the run is complete (epoch {state.epoch} of {self.epochs}); "
                         f"nothing to do")
            else:  # the last checkpoint was written, the final files were not
                self._finish()
            return TrainResult(self.out, state.epoch, state.history)
        for name in FINAL_FILES:  # a shorter run's final files: this one writes its own
            (self.out / name).unlink(missing_ok=True)
        writer = artefacts.summary_writer(self.out / TENSORBOARD_FOLDER, purge_step=state.epoch + 1)
        try:
            with stop_requests(self._request_stop):
                for epoch in range(state.epoch + 1, self.epochs + 1):
                    start = time.perf_counter()
                    with reused_cpu_memory(self.device.type == "cpu" and config.reuse_cpu_memory):
                        values = self._train_epoch(epoch)
                    if self.val_images is not None:
                        values.update({f"val_{k}": v for k, v in validate(
                            state.generator, state.critic, self.val_images, config.seed, config.batch_size,
                            config.gp_weight, self.precision).items()})
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
        if state.partial is not None and state.partial["epoch"] == epoch:
            partial = state.partial
            order, first = partial["order"].to(self.device), partial["batch"]
            sums, counts = defaultdict(float, partial["sums"]), defaultdict(int, partial["counts"])
        else:
            order, first = torch.randperm(count, generator=state.rng, device=self.device), 0
            sums, counts = defaultdict(float), defaultdict(int)
        state.partial = None
        # Off a terminal the per-epoch log line says enough: no bar inside each epoch.
        for index in progress_bar(range(first, n_batches), desc=f"epoch {epoch}", unit="batch", leave=False,
                                  disable=not (config.progress and sys.stderr.isatty())):
            real = self.train_images[order[index * batch:(index + 1) * batch]]
            try:
                values = critic_step(state.generator, state.critic, state.opt_d, real, state.rng,
                                     config.gp_weight, self.precision, self.policy)
                state.critic_updates += 1
                if state.critic_updates % config.critic_steps_per_gen_step == 0:
                    values.update(generator_step(state.generator, state.critic, state.opt_g, batch,
                                                 state.rng, self.precision, self.device, self.policy))
                    if state.ema is not None:
                        state.ema.update(state.generator, batch)
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
                for key in (*LOSS_KEYS, *DIVERGENCE_KEYS)}

    def _evaluate(self, epoch: int) -> dict[str, float]:
        """--eval_for_each: KID, precision/recall... of the generator against the validation rows,
        in the run's one feature space, whose id is recorded in the run folder (eval_space.json)."""
        config = self.config
        if not config.eval_for_each or epoch % config.eval_for_each or self.val_images is None:
            return {}
        from rxwgan.metrics import evaluate_generator
        from rxwgan.metrics.space_per_study import record_run_space, run_space

        state = self.state
        space = run_space(config, int(state.generator.image_size), self.device)
        record_run_space(self.out, space, state.history)
        results = evaluate_generator(state.sampler, self.val_images.float().contiguous().cpu(),
                                     list(config.eval_metrics), space, seed=config.seed)
        kid = results.get("kid")
        if kid is not None and (state.best is None or kid < state.best["kid"]):
            state.best = {"epoch": epoch, "kid": float(kid), "space_id": space.key}
            self.manifest.record(*BEST_FILES)
            artefacts.save_best(self.out, state)
        return {key: float(value) for key, value in results.items()}

    def _end_epoch(self, epoch: int, values: dict[str, float | None], seconds: float, writer: Any) -> None:
        config, state = self.config, self.state
        state.epoch = epoch
        append_epoch(state.history, epoch, values)
        artefacts.log_scalars(writer, epoch, values)
        if epoch % config.save_for_each == 0:
            self.manifest.record(*epoch_files(epoch))
            artefacts.save_epoch_files(self.out, epoch, state, state.history)
        if epoch % config.disp_for_each == 0 or epoch == self.epochs:
            self.manifest.record(grid_file(epoch))
            artefacts.save_pictures(self.out, epoch, self.samples(), state.history, writer)
        atomic.write_json(self.out / HISTORY_FILE, state.history)
        self._checkpoint()
        self.log(artefacts.epoch_line(epoch, self.epochs, values, seconds))

    def samples(self) -> torch.Tensor:
        """The fixed-latent sample grid's images, from the (averaged) generator in inference mode."""
        sampler = self.state.sampler.eval()
        with torch.no_grad():
            return sampler(self.state.fixed_z).float().cpu()

    def _checkpoint(self) -> None:
        state = self.state
        contents = state.checkpoint(self.config, self.device, self.precision, self.table_print)
        batch = (state.partial or {}).get("batch", 0)
        save_checkpoint(self.out, contents, f"epoch_{state.epoch:06d}_batch_{batch:06d}")
        self.manifest.mark_checkpointed()

    def _finish(self) -> None:
        artefacts.save_final(self.out, self.state)
        self.log(f"done: {self.epochs} epochs; generator, critic, history, samples and "
                 f"curves in {self.out}")

    def _request_stop(self, signal_name: str) -> None:
        self.stop_requested = True
        self.log(f"{signal_name}: finishing the current step, then saving a checkpoint (send again to "
                 f"stop at once)")
