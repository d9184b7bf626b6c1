"""The report's figures: curves across a study's runs, and a run's generator samples.

Apart from ``rxwgan.report.collect`` (which runs, which is best, the two documents) because these
are the parts that draw with matplotlib or run a network; both read only a run folder's
files, through ``rxwgan.study.plan`` and the checkpoint, never Ray.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import read_json
from rxwgan.base.layout import BEST_GENERATOR, CONFIG_FILE, TRAINED_GENERATOR
from rxwgan.base.plots import figure_format


def _band(histories: Sequence[dict[str, list]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and standard deviation across runs of ``key`` (runs may differ in length)."""
    series = [history.get(key) or [] for history in histories]
    length = max((len(s) for s in series), default=0)
    stacked = np.full((len(series), length), np.nan)
    for i, values in enumerate(series):
        stacked[i, :len(values)] = [np.nan if v is None else v for v in values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # epochs no run has reached yet
        return np.arange(1, length + 1), np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0)


def plot_bands(histories: Sequence[dict[str, list]], panels: Sequence[tuple[str, Sequence[str]]],
               path: Path, title: str) -> None:
    """One panel per group of keys: the mean across runs, and a band of +-1 std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for axis, (name, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            epochs, mean, std = _band(histories, key)
            shown = np.isfinite(mean)
            if not shown.any():
                continue
            line, = axis.plot(epochs[shown], mean[shown], label=key, marker="." if shown.sum() < 3 else None)
            axis.fill_between(epochs[shown], (mean - std)[shown], (mean + std)[shown],
                              color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format=figure_format(path))
    plt.close(figure)


def generator_samples(folder: Path, count: int = 25) -> torch.Tensor | None:
    """``count`` images from a run's newest generator on its own fixed latents (the sample grid's).

    The checkpoint holds both the newest weights and those latents; a folder without
    one falls back to its trained generator and latents drawn from the run's seed. A run
    that kept its lowest-KID generator (``generator_best``) is shown by that one. A
    conditional generator shows every class: rows of GRID_SIDE latents, each row once per
    class, one under another (as its training grid does); at most ``count`` images, but one
    row of each class at least (``count`` at least GRID_SIDE).
    """
    from rxwgan.models import build_generator, load_model
    from rxwgan.models.conditioning import classes_of
    from rxwgan.train.checkpoint import has_checkpoint, load_checkpoint

    saved = read_json(folder / CONFIG_FILE)
    if (folder / BEST_GENERATOR).is_file():
        generator = load_model(folder / BEST_GENERATOR, role="generator")
        latents = _seeded_latents(saved, count, generator.latent_dim)
    elif has_checkpoint(folder) and "generator" in saved:
        try:
            checkpoint = load_checkpoint(folder, warn=lambda _: None)
        except RxwganError:  # replaced by a newer one while the run goes on: no grid this time
            return None
        if checkpoint is None:
            return None
        generator = build_generator(saved["generator"]["arch"], **saved["generator"]["hparams"])
        averaged = checkpoint.get("ema")  # the moving average, where the run keeps one
        generator.load_state_dict(averaged["module"] if averaged else checkpoint["generator"])
        if saved.get("config", {}).get("channels_last", True):  # the run's layout, the run's numbers
            generator.to(memory_format=torch.channels_last)
        latents = checkpoint["fixed_z"].float()
    elif (folder / TRAINED_GENERATOR).is_file():
        generator = load_model(folder / TRAINED_GENERATOR, role="generator")
        latents = _seeded_latents(saved, count, generator.latent_dim)
    else:
        return None
    generator.eval()
    classes = classes_of(generator)
    with torch.no_grad():
        if not classes:
            return generator(latents[:count]).float()
        return generator(*_class_rows(latents, count, classes)).float()


def _class_rows(latents: torch.Tensor, count: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A conditional grid's latents and classes: as many whole rows of GRID_SIDE latents as
    ``count`` images hold with each row shown once per class (one row at least), no more than
    ``latents`` has."""
    from rxwgan.train.state import GRID_SIDE, grid_batch

    rows = min(max(1, count // (GRID_SIDE * classes)), len(latents) // GRID_SIDE)
    return grid_batch(latents[:rows * GRID_SIDE], classes)


def _seeded_latents(saved: dict, count: int, latent_dim: int) -> torch.Tensor:
    """Latents drawn from the run's seed: the same grid every time the report is written."""
    seed = int(saved.get("config", {}).get("seed", 0))
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))
