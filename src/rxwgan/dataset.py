"""A PyTorch Dataset over cached images, with the table's rows alongside."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from rxwgan.cache import ImageCache
from rxwgan.table import Table


class XrayDataset(Dataset):
    """Images (N, 1, S, S) float32 in [-1, 1] held in memory, one per table row.

    Training slices ``images`` directly in batches (no per-item Python overhead);
    ``__getitem__`` serves the usual ``DataLoader`` path and returns the row position.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, rows: pd.DataFrame):
        self.images = torch.as_tensor(images)
        if len(self.images) != len(rows):
            raise ValueError(f"{len(self.images)} images for {len(rows)} rows")
        self.rows = rows

    @classmethod
    def from_table(cls, table: Table, size: int, positions: Sequence[int] | None = None,
                   cache: ImageCache | None = None, progress: bool = True,
                   bit_depth: int | None = None) -> XrayDataset:
        """Load (decoding only what the cache lacks) the rows at ``positions`` of ``table``.

        Wide images decode at one depth found over the whole table (``bit_depth`` forces
        it), so training and validation rows share a scale.
        """
        positions = list(range(len(table))) if positions is None else [int(p) for p in positions]
        paths = table.paths
        cache = cache or ImageCache()
        depths = cache.bit_depths(paths, bit_depth)
        images = cache.load([paths[p] for p in positions], size,
                            labels=[table.row_label(p) for p in positions], progress=progress,
                            depths=[depths[p] for p in positions])
        return cls(images, table.frame.iloc[positions])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], index
