"""What a feature space is: the map from images to features that every space shares.

Below both the registry (``space_registry``, whose builders make these) and the builder
(``space_builder``, which chooses, caches and saves them), so neither imports the other back.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rxwgan.metrics import encoder as enc


class FeatureSpace:
    """A named map from images (N, 1, S, S) in [-1, 1] to features (N, D) float64.

    ``key`` identifies the space exactly (weights and preprocessing included): the
    reference-feature cache is keyed by it.
    """

    name: str = ""
    batch_size: int = 64

    def __init__(self, key: str, dim: int, description: str, info: dict[str, Any],
                 device: torch.device):
        self.key = key
        self.dim = dim
        self.description = description
        self.info = info
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"expected images (N, 1, H, W), got {tuple(images.shape)}")
        out = [self._extract(images[i:i + self.batch_size].to(self.device, torch.float32))
               .to("cpu", torch.float64) for i in range(0, len(images), self.batch_size)]
        if not out:
            return torch.empty(0, self.dim, dtype=torch.float64)
        return torch.cat(out)

    def _extract(self, batch: Tensor) -> Tensor:
        raise NotImplementedError


class EncoderSpace(FeatureSpace):
    """``trained`` or ``random``: the compact encoder at the size it was fitted at."""

    batch_size = 256

    def __init__(self, name: str, network: enc.XrayEncoder, size: int, key: str,
                 info: dict[str, Any], description: str):
        dim = enc.embedding_dim()
        super().__init__(key, dim, f"{name}: {description}, {dim}-d at {size} px", info, torch.device("cpu"))
        self.name = name
        self.network = network.eval()
        self.size = size

    def _extract(self, batch: Tensor) -> Tensor:
        return self.network.embed(resize(batch, self.size))



def resize(images: Tensor, size: int) -> Tensor:
    """Images at ``size`` px (bilinear, antialiased), as every space and source compares them."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)
