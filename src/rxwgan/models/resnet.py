"""The ResNet WGAN-GP of Gulrajani et al. 2017 ("Improved Training of Wasserstein GANs"), one channel.

Registered as ``resnet64``, ``resnet128`` and ``resnet256``: one name per image size, as for
v1-v3, because the registry and its callers (``model_info``, the image cache, a ``-g`` file)
read the image size from the architecture name, never from hyper-parameters.

Generator: z -> Linear -> (C, 4, 4) -> up-blocks to S x S -> BatchNorm -> ReLU -> conv 3x3 -> tanh.
  Up-block: BN, ReLU, 2x nearest up-sampling, conv 3x3, BN, ReLU, conv 3x3; shortcut 1x1 conv
  (only where the channel count changes) and 2x up-sampling.
Critic: optimised first block (conv 3x3, ReLU, conv 3x3, 2x2 mean pool; shortcut mean pool and
  1x1 conv) -> down-blocks to 4 x 4 -> one block at 4 x 4 -> ReLU -> spatial mean -> Linear.
  Down-block: norm, ReLU, conv 3x3 (C_in -> C_in), norm, ReLU, conv 3x3 (C_in -> C_out),
  mean pool; shortcut mean pool and 1x1 conv (where the channel count changes).
  No batch statistics: ``norm`` is "none" (default, the paper's CIFAR critic) or "layer"
  (per sample over C, H, W with a per-channel scale and shift, the paper's 64 px critic), so
  the gradient penalty stays per sample and training scores reals and fakes in one call.

Channels at side r are ``width x min(8, S / r)`` in the generator and ``width x min(8, S / 2r)``
in the critic (whose first block already halves the side): each block costs about the same,
and the 4 x 4 end is capped at 8 x width. At 64 px the generator has the paper's 64 px block
layout (8, 8, 4, 2, 1 x width), at width 32 where the paper used 64.
The 1x1 shortcuts run on the block's low-resolution side (a 1x1 conv commutes with nearest
up-sampling and with mean pooling): the same function for a quarter of the work.

Initialisation ``init``: "standard" (default) is He-uniform for 3x3 convolutions (they feed
ReLUs), Glorot-uniform for 1x1 shortcuts and Linear layers, zero biases, and
``init_tanh_output`` for the generator's last conv; "keras" is the old tool's initialisers.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models.conditioning import (
    Condition,
    Projection,
    batch_norm,
    checked_classes,
    condition_of,
    run_layers,
)
from rxwgan.models.inits import checked_init, init_like_keras, init_tanh_output
from rxwgan.models.registry import register

START_SIDE = 4
MAX_MULTIPLIER = 8
NORMS = ("none", "layer")


def _conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


def _norm(kind: str, channels: int) -> nn.Module:
    # GroupNorm with one group normalises each sample over (C, H, W): the paper's layer norm.
    return nn.GroupNorm(1, channels) if kind == "layer" else nn.Identity()


class UpBlock(nn.Module):
    """Residual block doubling the side (generator); BatchNorm before each ReLU, conditional
    BatchNorm when the generator has classes."""

    def __init__(self, cin: int, cout: int, classes: int = 0) -> None:
        super().__init__()
        # Conv biases would be cancelled by the BatchNorm that follows each sum: none.
        self.main = nn.Sequential(
            batch_norm(cin, classes), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            _conv3(cin, cout, bias=False), batch_norm(cout, classes), nn.ReLU(),
            _conv3(cout, cout, bias=False))
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        return run_layers(self.main, x, condition) + F.interpolate(self.shortcut(x), scale_factor=2,
                                                                   mode="nearest")


class DownBlock(nn.Module):
    """Residual block of the critic, halving the side when ``down``; no batch statistics."""

    def __init__(self, cin: int, cout: int, norm: str, down: bool = True) -> None:
        super().__init__()
        self.down = down
        self.main = nn.Sequential(
            _norm(norm, cin), nn.ReLU(), _conv3(cin, cin),
            _norm(norm, cin), nn.ReLU(), _conv3(cin, cout))
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.main(x)
        if self.down:
            main, x = F.avg_pool2d(main, 2), F.avg_pool2d(x, 2)
        return main + self.shortcut(x)


class OptimisedBlock(nn.Module):
    """The critic's first block: no activation before its first conv (the input is an image)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(_conv3(cin, cout), nn.ReLU(), _conv3(cout, cout))
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.main(x), 2) + self.shortcut(F.avg_pool2d(x, 2))


def _sides(image_size: int) -> list[int]:
    """4, 8, ..., image_size."""
    sides = [START_SIDE]
    while sides[-1] < image_size:
        sides.append(sides[-1] * 2)
    return sides


class ResNetGenerator(nn.Module):
    def __init__(self, image_size: int, *, latent_dim: int, width: int, init: str, classes: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.classes = classes
        channels = [width * min(MAX_MULTIPLIER, image_size // side) for side in _sides(image_size)]
        self.start_shape = (channels[0], START_SIDE, START_SIDE)
        self.project = nn.Linear(latent_dim, channels[0] * START_SIDE * START_SIDE)
        self.blocks = nn.Sequential(*(UpBlock(a, b, classes) for a, b in pairwise(channels)))
        self.finish = nn.Sequential(batch_norm(channels[-1], classes), nn.ReLU())
        self.to_image = _conv3(channels[-1], 1)
        _initialise(self, init)
        if init == "standard":
            init_tanh_output(self.to_image)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                strength: float = 1.0) -> torch.Tensor:
        """(N, latent_dim) [and (N,) classes] -> (N, 1, S, S) images in [-1, 1]."""
        condition = condition_of(self.classes, labels, strength)
        x = self.project(z).unflatten(1, self.start_shape)
        for block in self.blocks:
            x = block(x, condition)
        return torch.tanh(self.to_image(run_layers(self.finish, x, condition)))


class ResNetCritic(nn.Module):
    def __init__(self, image_size: int, *, width: int, norm: str, init: str, classes: int = 0) -> None:
        super().__init__()
        self.image_size = image_size
        self.classes = classes
        sides = _sides(image_size // 2)[::-1]  # S/2, S/4, ..., 4
        channels = [width * min(MAX_MULTIPLIER, image_size // (2 * side)) for side in sides]
        blocks: list[nn.Module] = [OptimisedBlock(1, channels[0])]
        blocks += [DownBlock(a, b, norm) for a, b in pairwise(channels)]
        blocks.append(DownBlock(channels[-1], channels[-1], norm, down=False))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels[-1], 1)
        _initialise(self, init)
        if classes:  # after the init, which would otherwise redraw its (zero) embedding
            self.projection = Projection(channels[-1], classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                strength: float = 1.0) -> torch.Tensor:
        """(N, 1, S, S) images [and (N,) classes] -> (N, 1) unbounded scores."""
        condition = condition_of(self.classes, labels, strength)
        features = F.relu(self.blocks(x)).mean(dim=(2, 3))
        score = self.head(features)
        return score if condition is None else score + self.projection(features, condition)


def _initialise(module: nn.Module, init: str) -> None:
    if init == "keras":
        init_like_keras(module)
        return
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1):
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        elif isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise RxwganError(f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class ResNetGeneratorSpec:
    image_size: int
    width: int
    latent_dim: int = 128

    @property
    def defaults(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "width": self.width, "init": "standard", "classes": 0}

    def build(self, *, latent_dim: int, width: int, init: str, classes: int) -> ResNetGenerator:
        return ResNetGenerator(self.image_size, latent_dim=_positive("latent_dim", latent_dim),
                               width=_positive("width", width), init=checked_init(init),
                               classes=checked_classes(classes))


@dataclass(frozen=True)
class ResNetCriticSpec:
    image_size: int
    width: int

    @property
    def defaults(self) -> dict[str, Any]:
        return {"width": self.width, "norm": "none", "init": "standard", "classes": 0}

    def build(self, *, width: int, norm: str, init: str, classes: int) -> ResNetCritic:
        if norm not in NORMS:
            raise RxwganError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        return ResNetCritic(self.image_size, width=_positive("width", width), norm=norm,
                            init=checked_init(init), classes=checked_classes(classes))


# Width 32: at 128 px one training step (critic step with penalty + generator step, batch 16,
# channels-last) cost 0.55-0.73x v1's in fp32 and ~0.5x under bf16 autocast on a shared
# 2-core CPU (bench/bench_resnet_step.py, two runs). Convolution work grows as width^2, so
# width 40 (~1.5x) would reach v1's step under load. 64 and 256 px keep the width.
WIDTH = 32


def _specs(size: int) -> tuple[ResNetGeneratorSpec, ResNetCriticSpec]:
    return ResNetGeneratorSpec(image_size=size, width=WIDTH), ResNetCriticSpec(image_size=size, width=WIDTH)


@register("resnet64")
def _resnet64() -> tuple[ResNetGeneratorSpec, ResNetCriticSpec]:
    return _specs(64)


@register("resnet128")
def _resnet128() -> tuple[ResNetGeneratorSpec, ResNetCriticSpec]:
    return _specs(128)


@register("resnet256")
def _resnet256() -> tuple[ResNetGeneratorSpec, ResNetCriticSpec]:
    return _specs(256)
