"""PyTorch ports of the old Keras tool's three architectures (v1, v2, v3), layer by layer.

Layout choice: our modules are plain NCHW. The Keras generator's Dense output is reshaped
channels-last (H, W, C) and the Keras critic flattens channels-last; we reshape/flatten in
NCHW order instead and ``keras_import`` permutes the Dense weights once at import time.
So training code never pays for the reorder, and imported weights still reproduce Keras.

Keras 'same' padding is reproduced exactly, including its asymmetric cases (extra pixel at
the bottom/right), because the imported models must give the old tool's numbers.
Initialisation (``init`` hyper-parameter, see ``inits``): "keras" follows the Keras files
(He-uniform convolution kernels, Glorot-uniform Dense kernels, zero biases); "standard", the
default, is the same except for the generator's output layer, which the Keras init saturates.
BatchNorm uses Keras' eps 1e-3 and momentum 0.99 (0.01 here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rxwgan.errors import RxwganError
from rxwgan.models.inits import checked_init, init_like_keras, init_tanh_output
from rxwgan.models.registry import register

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
LEAKY_SLOPE = 0.3


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding TF uses for a 'same' convolution over ``size`` pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TF 'same' padding, computed from the input size like TF does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:  # let the conv pad: no extra copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d whose output is exactly ``input * stride`` like TF's 'same'.

    TF crops ``max(k - s, 0)`` pixels off the full transposed output, the odd one at the
    bottom/right; PyTorch's symmetric ``padding`` crops the even part, we drop the rest.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        if kernel_size < stride:
            raise ValueError("'same' transposed convolution needs kernel_size >= stride")
        crop = kernel_size - stride
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=crop // 2)
        self.extra_crop = crop % 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.extra_crop:
            y = y[..., : y.shape[-2] - self.extra_crop, : y.shape[-1] - self.extra_crop]
        return y


class Dropout(nn.Module):
    """Inverted dropout whose mask comes from 16-bit random integers.

    ``torch.bernoulli_`` draws one float per element, which made dropout about a sixth
    of a v1 training step on a CPU; 64-bit random words split into four 16-bit draws
    cost a fraction of that. The drop probability is ``p`` rounded to a multiple of
    1/65536 (0.3 becomes 0.300003); the mask is a constant to autograd, so the double
    backward of the gradient penalty passes through it like any product.
    """

    LEVELS = 1 << 16

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * self.LEVELS) - self.LEVELS // 2  # keep draws >= threshold
        kept = 1.0 - (self.threshold + self.LEVELS // 2) / self.LEVELS
        self.scale = 1.0 / kept if kept > 0 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        words = torch.empty(-(-x.numel() // 4), dtype=torch.int64, device=x.device)
        words.random_(**{"from": -(1 << 63), "to": None})  # all 64 bits, sign bit included
        draws = words.view(torch.int16)[: x.numel()].as_strided(x.shape, x.stride())
        keep = (draws >= self.threshold).to(x.dtype).mul_(self.scale)  # 0 or 1/(1-p), one pass
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
        return {"latent_dim": self.latent_dim, "dropout": self.dropout, "init": "standard"}

    def build(self, *, latent_dim: int, dropout: float, init: str) -> Generator:
        if latent_dim < 1:
            raise RxwganError(f"latent_dim must be at least 1, got {latent_dim}")
        return Generator(self, latent_dim=latent_dim, dropout=_checked_dropout(dropout),
                         init=checked_init(init))


@dataclass(frozen=True)
class CriticSpec:
    """Stride-2 conv blocks (conv -> ReLU -> dropout) -> flatten -> Dense(1)."""

    image_size: int
    channels: tuple[int, ...]
    kernel_size: int
    dropout: float = 0.3

    @property
    def defaults(self) -> dict[str, Any]:
        return {"dropout": self.dropout, "init": "standard"}

    def build(self, *, dropout: float, init: str) -> Critic:
        checked_init(init)  # both choices are the Keras init for this critic: it has no tanh
        return Critic(self, dropout=_checked_dropout(dropout))


def _checked_dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise RxwganError(f"dropout must be in [0, 1), got {p}")
    return p


class Generator(nn.Module):
    def __init__(self, spec: GeneratorSpec, *, latent_dim: int, dropout: float,
                 init: str = "standard") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = spec.image_size
        self.start_shape = spec.start_shape
        channels, height, width = spec.start_shape
        self.project = nn.Linear(latent_dim, channels * height * width)
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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> (N, 1, S, S) images in [-1, 1]."""
        x = self.project(z).unflatten(1, self.start_shape)
        return torch.tanh(self.to_image(self.blocks(x)))


class Critic(nn.Module):
    def __init__(self, spec: CriticSpec, *, dropout: float) -> None:
        super().__init__()
        self.image_size = spec.image_size
        layers: list[nn.Module] = []
        channels, side = 1, spec.image_size
        for out in spec.channels:
            layers += [SameConv2d(channels, out, spec.kernel_size, stride=2), nn.ReLU(),
                       Dropout(dropout)]
            channels, side = out, -(-side // 2)
        self.features = nn.Sequential(*layers)
        self.feature_shape = (channels, side, side)
        self.head = nn.Linear(channels * side * side, 1)
        init_like_keras(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) images -> (N, 1) unbounded scores."""
        return self.head(self.features(x).flatten(1))


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
