"""What a run leaves for people and notebooks: the history, epoch files, grids, curves, config.

The history keeps the old tool's keys, one value per epoch (None where a value does not
exist that epoch), so its users' analysis notebooks read ``history.json`` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rxwgan.base import atomic
from rxwgan.base.layout import (
    BEST_GENERATOR,
    BEST_RECORD,
    CHECKPOINT_FOLDER,
    CHECKPOINT_POINTER,
    CONFIG_FILE,
    CURVES_FILE,
    FINAL_FILES,
    HISTORY_FILE,
    RUN_SPACE_RECORD,
    SPLIT_FILE,
    TENSORBOARD_FOLDER,
    TRAINED_CRITIC,
    TRAINED_GENERATOR,
    epoch_files,
    grid_file,
)
from rxwgan.base.plots import save_curves, save_grid
from rxwgan.models import save_model
from rxwgan.train.config import TrainConfig, environment
from rxwgan.train.state import GRID_SIDE, RunState

# Written under fixed names by every run: recorded in the run's manifest once, at setup.
RUN_FILES = (CONFIG_FILE, SPLIT_FILE, HISTORY_FILE, CURVES_FILE, TENSORBOARD_FOLDER, CHECKPOINT_FOLDER,
             CHECKPOINT_POINTER, RUN_SPACE_RECORD, *FINAL_FILES)


def save_epoch_files(out: Path, epoch: int, state: RunState, history: dict[str, list[float | None]]) -> None:
    """The networks (the generator file with its moving average) and the history so far."""
    generator_file, critic_file, history_file = epoch_files(epoch)
    save_model(state.generator, out / generator_file, ema=_averaged(state))
    save_model(state.critic, out / critic_file)
    atomic.write_json(out / history_file, history)


def save_best(out: Path, state: RunState) -> None:
    """``generator_best`` and ``best.json`` (``state.best``): the epoch whose samples had the lowest KID."""
    save_model(state.generator, out / BEST_GENERATOR, ema=_averaged(state))
    atomic.write_json(out / BEST_RECORD, state.best)


def _averaged(state: RunState) -> nn.Module | None:
    return None if state.ema is None else state.ema.module


def save_pictures(out: Path, epoch: int, samples: torch.Tensor, history: dict[str, list[float | None]],
                  writer: Any) -> None:
    """The fixed-latent sample grid and the loss curves, as PNG and in TensorBoard."""
    save_grid(samples, out / grid_file(epoch), GRID_SIDE)
    save_curves(history, out / CURVES_FILE)
    writer.add_image("samples", (samples[:, 0:1] + 1) / 2, epoch, dataformats="NCHW")


def log_scalars(writer: Any, epoch: int, values: dict[str, float | None]) -> None:
    for key, value in values.items():
        if value is not None:
            tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else f"eval/{key}"
            writer.add_scalar(tag, value, epoch)


def save_final(out: Path, state: RunState) -> None:
    save_model(state.generator, out / TRAINED_GENERATOR, ema=_averaged(state))
    save_model(state.critic, out / TRAINED_CRITIC)


def has_final(out: Path) -> bool:
    return all((out / name).is_file() for name in FINAL_FILES)


def write_config(out: Path, config: TrainConfig, generator: nn.Module, critic: nn.Module,
                 device: torch.device, precision: str, counts: dict[str, int], table_sha256: str) -> None:
    """``config.json``: every setting, the networks, the versions and where the run ran."""
    atomic.write_json(out / CONFIG_FILE, {
        "config": config.to_dict(), "environment": environment(), "split": config.split.name,
        "table_sha256": table_sha256, "image_size": int(generator.image_size),
        "generator": {"arch": generator.arch, "hparams": generator.hparams},
        "critic": {"arch": critic.arch, "hparams": critic.hparams},
        "device": str(device), "precision": precision, **counts,
    })


def summary_writer(folder: Path, purge_step: int) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


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
