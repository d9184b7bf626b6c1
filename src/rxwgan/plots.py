"""The pictures a run leaves behind: sample grids and loss curves (PNG, written atomically).

The atomic writer's temporary file ends in ``.tmp``, so every save names its format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rxwgan import atomic


def image_grid(images: torch.Tensor | np.ndarray, columns: int = 5, gap: int = 2) -> np.ndarray:
    """Tile (N, 1, H, W) images in [-1, 1] into one uint8 picture, ``columns`` wide."""
    array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else images
    array = np.clip((array[:, 0] + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    count, height, width = array.shape
    rows = -(-count // columns)
    canvas = np.zeros((rows * (height + gap) - gap, columns * (width + gap) - gap), np.uint8)
    for index, tile in enumerate(array):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = tile
    return canvas


def figure_format(path: str | Path) -> str:
    """The format a figure saved at ``path`` is written in: its extension, PNG without one."""
    return Path(path).suffix.lstrip(".").lower() or "png"


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, columns: int = 5) -> None:
    with atomic.atomic_path(path) as tmp:
        Image.fromarray(image_grid(images, columns)).save(tmp, format="PNG")


def save_curves(history: Mapping[str, Sequence[float | None]], path: str | Path,
                groups: Sequence[tuple[str, Sequence[str]]] | None = None) -> None:
    """Loss curves (and divergences) against epoch, one panel per group of history keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = groups or (
        ("losses", ("train_critic_loss", "val_critic_loss", "train_gen_loss", "val_gen_loss",
                    "train_reg_loss")),
        ("histogram divergences", ("train_kl_rf", "val_kl_rf", "train_js_rf", "val_js_rf",
                                   "val_kl_rr", "val_js_rr")),
    )
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for axis, (title, keys) in zip(axes[0], groups, strict=True):
        for key in keys:
            values = [np.nan if v is None else v for v in history.get(key, [])]
            if values:
                axis.plot(range(1, len(values) + 1), values, label=key)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=90, format=figure_format(path))
    plt.close(figure)
