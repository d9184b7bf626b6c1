"""The pictures a run leaves behind: sample grids and loss curves (PNG, written atomically).

The atomic writer's temporary file ends in ``.tmp``, so every save names its format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rxwgan.base import atomic


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


FIGURE_FORMATS = ("png", "pdf", "svg")  # what a figure's path may end in


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


def save_pairs(synthetic: torch.Tensor, train: torch.Tensor, distance: torch.Tensor, index: torch.Tensor,
               path: str | Path, title: str, labels: Sequence[str] | None = None, count: int = 16,
               pairs_per_row: int = 4) -> None:
    """The ``count`` synthetic images closest to a training image, each beside that image.

    ``distance``/``index``: each synthetic image's nearest training image; ``labels`` name
    the training images (e.g. their rows). Images are (N, 1, H, W) in [-1, 1].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = torch.argsort(distance)[:count].tolist()
    rows = max(1, -(-len(order) // pairs_per_row))
    figure, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.0 * pairs_per_row * 2, 2.3 * rows),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for slot, fake in enumerate(order):
        real = int(index[fake])
        left = axes[slot // pairs_per_row][2 * (slot % pairs_per_row)]
        right = axes[slot // pairs_per_row][2 * (slot % pairs_per_row) + 1]
        for axis, image in ((left, synthetic[fake]), (right, train[real])):
            axis.imshow(image[0].float().cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
        left.set_title(f"synthetic {fake}\nd = {float(distance[fake]):.4f}", fontsize=8)
        right.set_title(f"train {labels[real] if labels else real}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format=figure_format(path))
    plt.close(figure)
