"""The old Keras tool's three architectures (v1, v2, v3), ported layer by layer.

Layout choice: our modules are plain NCHW. The Keras generator's Dense output is reshaped
channels-last (H, W, C) and the Keras critic flattens channels-last; we reshape/flatten in
NCHW order instead and ``keras_import`` permutes the Dense weights once at import time.
So training code never pays for the reorder, and imported weights still reproduce Keras.
The layers themselves (Keras 'same' padding, dropout) are in ``keras_layers``.
Initialisation (``init`` hyper-parameter, see ``inits``): "keras" follows the Keras files
(He-uniform convolution kernels, Glorot-uniform Dense kernels, zero biases); "standard", the
default, is the same except for the generator's output layer, which the Keras init saturates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models.conditioning import LABEL_DIM, Projection, checked_classes, condition_of
from rxwgan.models.inits import checked_init, init_like_keras, init_tanh_output
from rxwgan.models.keras_layers import (
    BN_EPS,
    BN_MOMENTUM,
    LEAKY_SLOPE,
    Dropout,
    SameConv2d,
    SameConvTranspose2d,
)
from rxwgan.models.penalty_layers import MaskReLU
from rxwgan.models.registry import register


@dataclass(frozen=True)
class GeneratorSpec:
    """Dense -> reshape to ``start_shape`` (C, H, W) -> stride-2 up-blocks -> 1-channel tanh."""

    start_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    kernel_size: int
    latent_dim: int = 100
    dropout: float = 0.3

    @property
    def image_size(self) -> int:
        return self.start_shape[1] * 2 ** len(self.channels)

    @property
    def defaults(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "dropout": self.dropout, "init": "standard", "classes": 0}

    def build(self, *, latent_dim: int, dropout: float, init: str, classes: int) -> Generator:
        if latent_dim < 1:
            raise RxwganError(f"latent_dim must be at least 1, got {latent_dim}")
        return Generator(self, latent_dim=latent_dim, dropout=_checked_dropout(dropout),
                         init=checked_init(init), classes=checked_classes(classes))


@dataclass(frozen=True)
class CriticSpec:
    """Stride-2 conv blocks (conv -> ReLU -> dropout) -> flatten -> Dense(1)."""

    image_size: int
    channels: tuple[int, ...]
    kernel_size: int
    dropout: float = 0.3

    @property
    def defaults(self) -> dict[str, Any]:
        return {"dropout": self.dropout, "init": "standard", "classes": 0}

    def build(self, *, dropout: float, init: str, classes: int) -> Critic:
        checked_init(init)  # both choices are the Keras init for this critic: it has no tanh
        return Critic(self, dropout=_checked_dropout(dropout), classes=checked_classes(classes))


def _checked_dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise RxwganError(f"dropout must be in [0, 1), got {p}")
    return p


class Generator(nn.Module):
    def __init__(self, spec: GeneratorSpec, *, latent_dim: int, dropout: float,
                 init: str = "standard", classes: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = spec.image_size
        self.start_shape = spec.start_shape
        self.classes = classes
        channels, height, width = spec.start_shape
        self.project = nn.Linear(latent_dim + (LABEL_DIM if classes else 0), channels * height * width)
        blocks = []
        for out in spec.channels:
            blocks.append(nn.Sequential(
                SameConvTranspose2d(channels, out, spec.kernel_size, stride=2),
                nn.BatchNorm2d(out, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.LeakyReLU(LEAKY_SLOPE),
                Dropout(dropout),
            ))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.to_image = SameConvTranspose2d(channels, 1, spec.kernel_size, stride=1)
        init_like_keras(self)
        if init == "standard":  # after the Keras init, so "keras" draws exactly what it always did
            init_tanh_output(self.to_image)
        if classes:  # the class joins z before the Dense layer
            self.label = nn.Embedding(classes, LABEL_DIM)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                strength: float = 1.0) -> torch.Tensor:
        """(N, latent_dim) [and (N,) classes] -> (N, 1, S, S) images in [-1, 1]."""
        condition = condition_of(self.classes, labels, strength)
        if condition is not None:
            z = torch.cat([z, condition.strength * self.label(condition.labels)], dim=1)
        x = self.project(z).unflatten(1, self.start_shape)
        return torch.tanh(self.to_image(self.blocks(x)))


class Critic(nn.Module):
    def __init__(self, spec: CriticSpec, *, dropout: float, classes: int = 0) -> None:
        super().__init__()
        self.image_size = spec.image_size
        self.classes = classes
        layers: list[nn.Module] = []
        channels, side = 1, spec.image_size
        for out in spec.channels:
            layers += [SameConv2d(channels, out, spec.kernel_size, stride=2), MaskReLU(),
                       Dropout(dropout)]
            channels, side = out, -(-side // 2)
        self.features = nn.Sequential(*layers)
        self.feature_shape = (channels, side, side)
        self.head = nn.Linear(channels * side * side, 1)
        init_like_keras(self)
        if classes:  # projection on the flattened features that feed the Dense layer
            self.projection = Projection(channels * side * side, classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                strength: float = 1.0) -> torch.Tensor:
        """(N, 1, S, S) images [and (N,) classes] -> (N, 1) unbounded scores."""
        condition = condition_of(self.classes, labels, strength)
        features = self.features(x).flatten(1)
        score = self.head(features)
        return score if condition is None else score + self.projection(features, condition)


@register("v1")
def _v1() -> tuple[GeneratorSpec, CriticSpec]:
    return (GeneratorSpec(start_shape=(32, 16, 16), channels=(64, 128, 256), kernel_size=4),
            CriticSpec(image_size=128, channels=(256, 128, 64), kernel_size=5))


@register("v2")
def _v2() -> tuple[GeneratorSpec, CriticSpec]:
    return (GeneratorSpec(start_shape=(32, 16, 16), channels=(64, 64, 128, 128), kernel_size=8),
            CriticSpec(image_size=256, channels=(128, 64, 64, 32), kernel_size=10))


@register("v3")
def _v3() -> tuple[GeneratorSpec, CriticSpec]:
    return (GeneratorSpec(start_shape=(32, 32, 32), channels=(16, 32, 64), kernel_size=4),
            CriticSpec(image_size=256, channels=(64, 32, 16), kernel_size=5))
