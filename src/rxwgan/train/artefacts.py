"""What a run leaves for people and notebooks: the history, epoch files, grids, curves, config.

Everything goes through ``RunFolder``, which records each name in the run's manifest before
it writes the file: a run killed mid-write leaves only files the manifest owns, which a
retry or ``--overwrite`` removes. The history keeps the old tool's keys, one value per epoch
(None where a value does not exist that epoch), so its users' analysis notebooks read
``history.json`` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rxwgan.base import atomic
from rxwgan.base.layout import (
    BEST_FILES,
    BEST_GENERATOR,
    BEST_RECORD,
    CHECKPOINT_FOLDER,
    CHECKPOINT_POINTER,
    CONFIG_FILE,
    CURVES_FILE,
    FINAL_FILES,
    HISTORY_FILE,
    PARTITION_COLUMN,
    RUN_SPACE_RECORD,
    SPLIT_FILE,
    TENSORBOARD_FOLDER,
    TRAINED_CRITIC,
    TRAINED_GENERATOR,
    epoch_files,
    grid_file,
)
from rxwgan.base.plots import save_curves, save_grid
from rxwgan.data.splits import Partition
from rxwgan.data.table import Table
from rxwgan.models import save_model
from rxwgan.train.checkpoint import save_checkpoint
from rxwgan.train.config import TrainConfig, environment
from rxwgan.train.folder import Manifest
from rxwgan.train.state import GRID_SIDE, RunState

if TYPE_CHECKING:
    from rxwgan.metrics.space_types import FeatureSpace


class RunFolder:
    """The run's folder as training writes it: each save records its names in the manifest, then writes."""

    def __init__(self, out: Path, manifest: Manifest):
        self.out, self.manifest = out, manifest

    @property
    def checkpointed(self) -> bool:
        """Whether the run ever reached a checkpoint (what a failure message can promise)."""
        return self.manifest.checkpointed

    def write_split(self, table: Table, parts: Partition) -> None:
        """``split.csv``: the table's rows with the partition each is in."""
        self.manifest.record(SPLIT_FILE)
        table.write(self.out / SPLIT_FILE, {PARTITION_COLUMN: parts.labels(len(table))})

    def write_config(self, config: TrainConfig, generator: nn.Module, critic: nn.Module,
                     device: torch.device, precision: str, counts: dict[str, int], table_sha256: str) -> None:
        """``config.json``: every setting, the networks, the versions and where the run ran."""
        self.manifest.record(CONFIG_FILE)
        atomic.write_json(self.out / CONFIG_FILE, {
            "config": config.to_dict(), "environment": environment(), "split": config.split.name,
            "table_sha256": table_sha256, "image_size": int(generator.image_size),
            "generator": {"arch": generator.arch, "hparams": generator.hparams},
            "critic": {"arch": critic.arch, "hparams": critic.hparams},
            "device": str(device), "precision": precision, **counts,
        })

    def summary_writer(self, purge_step: int) -> Any:
        """The TensorBoard writer of the run's folder (it creates the folder at once)."""
        from torch.utils.tensorboard import SummaryWriter

        self.manifest.record(TENSORBOARD_FOLDER)
        return SummaryWriter(log_dir=str(self.out / TENSORBOARD_FOLDER), purge_step=purge_step)

    def write_history(self, history: dict[str, list[float | None]]) -> None:
        self.manifest.record(HISTORY_FILE)
        atomic.write_json(self.out / HISTORY_FILE, history)

    def save_epoch_files(self, epoch: int, state: RunState) -> None:
        """The networks (the generator file with its moving average) and the history so far."""
        names = epoch_files(epoch)
        self.manifest.record(*names)
        generator_file, critic_file, history_file = (self.out / name for name in names)
        save_model(state.generator, generator_file, ema=_averaged(state))
        save_model(state.critic, critic_file)
        atomic.write_json(history_file, state.history)

    def save_best(self, state: RunState) -> None:
        """``generator_best`` and ``best.json`` (``state.best``): the epoch with the lowest KID so far."""
        self.manifest.record(*BEST_FILES)
        save_model(state.generator, self.out / BEST_GENERATOR, ema=_averaged(state))
        atomic.write_json(self.out / BEST_RECORD, state.best)

    def save_pictures(self, epoch: int, samples: torch.Tensor, history: dict[str, list[float | None]],
                      writer: Any) -> None:
        """The fixed-latent sample grid and the loss curves, as PNG and in TensorBoard."""
        self.manifest.record(grid_file(epoch), CURVES_FILE)
        save_grid(samples, self.out / grid_file(epoch), GRID_SIDE)
        save_curves(history, self.out / CURVES_FILE)
        writer.add_image("samples", (samples[:, 0:1] + 1) / 2, epoch, dataformats="NCHW")

    def record_space(self, space: FeatureSpace, history: dict[str, list[float | None]]) -> None:
        """The run's ``RUN_SPACE_RECORD`` (refused when its earlier numbers are in another space)."""
        from rxwgan.metrics.space_per_study import record_run_space

        self.manifest.record(RUN_SPACE_RECORD)
        record_run_space(self.out, space, history)

    def save_checkpoint(self, contents: dict[str, Any], label: str) -> None:
        """A full checkpoint and its pointer; from now on the run's files are kept on a retry."""
        self.manifest.record(CHECKPOINT_FOLDER, CHECKPOINT_POINTER)
        save_checkpoint(self.out, contents, label)
        self.manifest.mark_checkpointed()

    def save_final(self, state: RunState) -> None:
        self.manifest.record(*FINAL_FILES)
        save_model(state.generator, self.out / TRAINED_GENERATOR, ema=_averaged(state))
        save_model(state.critic, self.out / TRAINED_CRITIC)

    def has_final(self) -> bool:
        return all((self.out / name).is_file() for name in FINAL_FILES)

    def remove_final(self) -> None:
        """A shorter run's final files: a longer run writes its own."""
        for name in FINAL_FILES:
            (self.out / name).unlink(missing_ok=True)


def _averaged(state: RunState) -> nn.Module | None:
    return None if state.ema is None else state.ema.module


def log_scalars(writer: Any, epoch: int, values: dict[str, float | None]) -> None:
    for key, value in values.items():
        if value is not None:
            tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else f"eval/{key}"
            writer.add_scalar(tag, value, epoch)


def epoch_line(epoch: int, epochs: int, values: dict[str, float | None], seconds: float) -> str:
    """The one line a run prints per epoch."""
    def show(key: str) -> str:
        value = values.get(key)
        return "n/a" if value is None else f"{value:.4g}"

    return (f"epoch {epoch}/{epochs}  critic {show('train_critic_loss')}  gen {show('train_gen_loss')}"
            f"  gp {show('train_reg_loss')} | val critic {show('val_critic_loss')}  gen "
            f"{show('val_gen_loss')}  kl_rf {show('val_kl_rf')}  js_rf {show('val_js_rf')}"
            + (f" | kid {show('kid')}" if "kid" in values else "")
            + (f"  fid {show('fid')}" if "fid" in values else "")
            + f" | {seconds:.1f} s")
