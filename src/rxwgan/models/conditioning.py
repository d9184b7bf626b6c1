"""The class condition of a conditional WGAN-GP: what carries the class into each network.

A network built with ``classes=0`` (every file before this module, and every per-class run)
takes no class and holds exactly the layers it always held. With ``classes > 0``:

- the ResNet generator's BatchNorms take a per-class scale and shift (conditional
  BatchNorm, de Vries et al. 2017, as Miyato & Koyama 2018 use it);
- the v1-family generator joins a learned class embedding to z before its Dense layer;
- either critic adds a projection term to its score, <embed(y), h> on the features h that
  feed its last linear layer (Miyato & Koyama 2018, "cGANs with projection discriminator").

``strength`` in [0, 1] scales every class term: 0 is the unconditional network, 1 the
conditional one. Training can raise it from 0 to 1 (Shahbazi et al. 2022 fade the condition
in because conditional GANs can collapse on small data where unconditional ones do not);
sampling always uses 1. The class terms start at zero (embeddings of scale and shift, and
the projection), so a fresh network starts out as its unconditional twin either way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rxwgan.base.errors import RxwganError

LABEL_DIM = 16  # width of the v1 family's class embedding joined to z


class Condition(NamedTuple):
    """Each sample's class and how strongly the class terms count."""

    labels: Tensor  # (N,) integer classes
    strength: float


def condition_of(classes: int, labels: Tensor | None, strength: float) -> Condition | None:
    """Check that a network gets a class exactly when it is conditional; None when it is not."""
    if classes == 0:
        if labels is not None:
            raise ValueError("this network is not conditional: it takes no class")
        return None
    if labels is None:
        raise ValueError(f"this network is conditional ({classes} classes): give each sample's class")
    return Condition(labels.long(), float(strength))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm with the shared scale and shift of ``nn.BatchNorm2d``, plus a per-class
    offset of each (scaled by the condition's strength)."""

    def __init__(self, channels: int, classes: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.scale = nn.Embedding(classes, channels)
        self.shift = nn.Embedding(classes, channels)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, condition: Condition) -> Tensor:
        strength = condition.strength
        scale = 1 + strength * self.scale(condition.labels)[:, :, None, None]
        return self.norm(x) * scale + strength * self.shift(condition.labels)[:, :, None, None]


def run_layers(layers: nn.Sequential, x: Tensor, condition: Condition | None) -> Tensor:
    """``layers(x)``, handing the condition to the layers that take one: a conditional network
    keeps the layer names (and so the file keys) of its unconditional twin."""
    for layer in layers:
        x = layer(x, condition) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
    return x


def batch_norm(channels: int, classes: int, **kwargs: Any) -> nn.Module:
    """A BatchNorm, conditional when the network has classes."""
    if classes:
        return ConditionalBatchNorm2d(channels, classes, **kwargs)
    return nn.BatchNorm2d(channels, **kwargs)


class Projection(nn.Module):
    """The projection critic's class term: <embed(y), h> per sample, (N, features) -> (N, 1)."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, features)
        nn.init.zeros_(self.embed.weight)

    def forward(self, features: Tensor, condition: Condition) -> Tensor:
        projected = (self.embed(condition.labels) * features).sum(dim=1, keepdim=True)
        return condition.strength * projected


class ClassBound(nn.Module):
    """A conditional generator with its class fixed: ``z -> images`` like any generator, so
    sampling, metrics, export and the memorisation check take it unchanged."""

    def __init__(self, generator: nn.Module, target: int) -> None:
        super().__init__()
        classes = int(getattr(generator, "hparams", {}).get("classes", 0))
        if not 0 <= target < classes:
            raise ValueError(f"class {target} is not one of this generator's {classes} classes")
        self.generator, self.target = generator, target
        self.latent_dim, self.image_size = generator.latent_dim, generator.image_size
        self.arch, self.role, self.hparams = generator.arch, generator.role, generator.hparams
        self.weights = getattr(generator, "weights", None)  # a loaded file's "ema" or "raw"

    def forward(self, z: Tensor) -> Tensor:
        labels = torch.full((len(z),), self.target, dtype=torch.long, device=z.device)
        return self.generator(z, labels)


def classes_of(module: nn.Module) -> int:
    """How many classes a network takes (0: not conditional)."""
    return int(getattr(module, "hparams", {}).get("classes", 0))


def checked_classes(classes: int) -> int:
    """0 (not conditional) or at least 2 classes."""
    if classes < 0 or classes == 1:
        raise RxwganError(f"classes must be 0 (not conditional) or at least 2, got {classes}")
    return classes
