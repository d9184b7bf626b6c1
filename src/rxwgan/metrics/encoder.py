"""The compact encoder behind the ``trained`` and ``random`` feature spaces.

A generic image network pooled to one vector per image flatters generators: global
averages of deep features barely move when a sample is blurred, shifted, or has one lung
missing. This encoder's embedding keeps what such averages throw away:

- grain and sharpness: the log energy of a zero-mean (band-pass) first layer, whose
  responses do not depend on brightness, so blur, smoothing and noise move them directly;
- texture at several scales: the log standard deviation of every block's channels
  (second-order statistics from several depths);
- content: the last block's channel means, trained to separate TB from no-TB rows;
- layout: the image itself averaged on an 8 x 8 grid, so anatomy in the wrong place
  (a shift, a one-sided or fragmented lung field) shows.

Every embedding dimension is then standardised over the rows the space was fitted on,
so each has unit spread over real images and none dominates by scale alone, and
compressed beyond three spreads (``SOFT_RANGE``).

Measured on 200 phantoms at 64 px (KID of 100 against 100 images, in standard deviations
above the real-vs-real floor; a random conv net with global average pooling / the
``random`` space / the ``trained`` space): 2-px blur 2.1 / 57 / 37; left half mirrored
onto the right 0.5 / 4.4 / 17; TB against no-TB phantoms 0.1 / 0.7 / 8.1; a quarter of the
fakes mirrored -0.1 / 0.2 / 2.4 (there precision falls from 0.94 to 0.73 in ``trained``).

Training is deliberately short (a few hundred steps): as a TB / no-TB classifier when both
classes are present, always with a self-supervised head that predicts which flip (none,
left-right, up-down, both) was applied. Flips are the only augmentation, and the flip task
needs orientation-aware features; the network is never taught to ignore blur or shifts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rxwgan.metrics.threads import limited_threads

# Bump when the architecture, the embedding or the training recipe changes: cached
# encoders of another version are not reused.
ENCODER_VERSION = 1
CHANNELS = (8, 16, 32, 64)
LAYOUT_GRID = 8
TRAIN_STEPS = 200
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
# Small batches through a small network: one thread (see rxwgan.metrics.threads).
TRAIN_THREADS = 1
# A dimension whose spread over the real rows is tiny (a unit real images never use)
# would turn any activation in a fake into an enormous distance; its scale is floored at
# this fraction of the median spread.
SCALE_FLOOR = 0.05
# Standardised values pass through c * asinh(z / c): linear over the +-c spreads real
# images occupy, logarithmic beyond, so one wildly-off statistic cannot swamp every other
# dimension (it also keeps KID's cubic kernel away from astronomically large values).
SOFT_RANGE = 3.0
_LOG_EPS = 1e-6
_FLIPS = 4


def embedding_dim(channels: tuple[int, ...] = CHANNELS, grid: int = LAYOUT_GRID) -> int:
    return channels[0] + sum(channels[1:]) + channels[-1] + grid * grid


class XrayEncoder(nn.Module):
    """Zero-mean 3x3 stem, three stride-2 conv-BN-ReLU blocks, class and flip heads."""

    def __init__(self, n_classes: int = 2, channels: tuple[int, ...] = CHANNELS,
                 grid: int = LAYOUT_GRID):
        super().__init__()
        self.grid = grid
        self.stem = nn.Conv2d(1, channels[0], 3)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                                        nn.BatchNorm2d(c_out), nn.ReLU()))
        self.blocks = nn.ModuleList(blocks)
        self.class_head = nn.Linear(channels[-1], max(n_classes, 1))
        self.flip_head = nn.Linear(channels[-1], _FLIPS)
        dim = embedding_dim(channels, grid)
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def trunk(self, x: Tensor) -> list[Tensor]:
        """The stem's pre-activation (band-pass) map and every block's output."""
        weight = self.stem.weight - self.stem.weight.mean(dim=(1, 2, 3), keepdim=True)
        stem = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, self.stem.bias)
        maps = [stem]
        h = F.relu(stem)
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        return maps

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class and flip logits (the training objectives)."""
        pooled = self.trunk(x)[-1].mean(dim=(2, 3))
        return self.class_head(pooled), self.flip_head(pooled)

    def raw_embedding(self, x: Tensor) -> Tensor:
        maps = self.trunk(x)
        parts = [_log_std(maps[0])]
        parts += [_log_std(h) for h in maps[1:]]
        parts.append(maps[-1].mean(dim=(2, 3)))
        parts.append(F.adaptive_avg_pool2d(x, self.grid).flatten(1))
        return torch.cat(parts, dim=1)

    def embed(self, x: Tensor) -> Tensor:
        """The standardised, outlier-compressed embedding, (N, embedding_dim)."""
        z = (self.raw_embedding(x) - self.center) / self.scale
        return SOFT_RANGE * torch.asinh(z / SOFT_RANGE)

    @torch.no_grad()
    def fit_standardisation(self, images: Tensor, batch_size: int = 256) -> None:
        """Centre and scale every dimension on these (real) images."""
        self.eval()
        raw = torch.cat([self.raw_embedding(images[i:i + batch_size])
                         for i in range(0, len(images), batch_size)]).double()
        spread = raw.std(dim=0) if len(raw) > 1 else torch.ones(raw.shape[1], dtype=raw.dtype)
        floor = max(SCALE_FLOOR * float(spread.median()), 1e-6)
        self.center.copy_(raw.mean(dim=0).float())
        self.scale.copy_(spread.clamp_min(floor).float())


def seeded_encoder(n_classes: int, seed: int) -> XrayEncoder:
    """A new encoder initialised from its own generator seeded with ``seed``.

    The global generators are never touched: the network is built on the meta device
    (no random draws) and its weights are then drawn from a private CPU generator, the
    same draws in the same order as PyTorch's default initialisation after
    ``torch.manual_seed(seed)``. Calling ``torch.manual_seed`` here instead would also
    reseed every CUDA device's generator, which the training loop's dropout draws from.
    """
    rng = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        encoder = XrayEncoder(n_classes=n_classes)
    encoder = encoder.to_empty(device="cpu")
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=rng)
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=rng)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    encoder.center.zero_()
    encoder.scale.fill_(1.0)
    return encoder


def _log_std(h: Tensor) -> Tensor:
    """Per-channel log standard deviation over space: scale-free second-order statistics."""
    return 0.5 * torch.log(h.var(dim=(2, 3)) + _LOG_EPS)


@dataclass(frozen=True)
class TrainingInfo:
    """How an encoder was made; stored beside its weights and in every report."""

    objective: str
    n_images: int
    steps: int
    seconds: float
    class_accuracy: float | None  # on the training rows: a sanity check, not a benchmark
    flip_accuracy: float


def flip(x: Tensor, which: Tensor) -> Tensor:
    """Apply flip ``which[i]`` (bit 0: left-right, bit 1: up-down) to image ``x[i]``."""
    x = torch.where((which & 1).bool().view(-1, 1, 1, 1), x.flip(-1), x)
    return torch.where((which & 2).bool().view(-1, 1, 1, 1), x.flip(-2), x)


def train_encoder(images: Tensor, labels: np.ndarray | None, seed: int,
                  steps: int = TRAIN_STEPS) -> tuple[XrayEncoder, TrainingInfo]:
    """Train on real images (N, 1, S, S) in [-1, 1]; standardise on them; return eval mode.

    Labels are used (as a TB / no-TB classifier) only when both classes have at least two
    rows. Every random draw comes from generators of its own, so the global ones (CPU
    and CUDA) are left as they were: callers may be in the middle of training.
    """
    use_classes = labels is not None and _both_classes(labels)
    targets = torch.as_tensor(np.array(labels, dtype=np.int64)) if use_classes else None
    encoder = seeded_encoder(2 if use_classes else 1, seed)
    rng = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(encoder.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LEARNING_RATE, total_steps=steps)
    batch = min(BATCH_SIZE, len(images))
    start = time.perf_counter()
    encoder.train()
    with limited_threads(TRAIN_THREADS):
        for _ in range(steps):
            rows = torch.randint(len(images), (batch,), generator=rng)
            which = torch.randint(_FLIPS, (batch,), generator=rng)
            class_logits, flip_logits = encoder(flip(images[rows], which))
            loss = F.cross_entropy(flip_logits, which)
            if targets is not None:
                loss = loss + F.cross_entropy(class_logits, targets[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    seconds = time.perf_counter() - start
    encoder.fit_standardisation(images)
    class_acc, flip_acc = _accuracies(encoder, images, targets)
    objective = "tb-classifier+flip" if use_classes else "flip"
    return encoder, TrainingInfo(objective, len(images), steps, round(seconds, 2), class_acc, flip_acc)


def random_encoder(images: Tensor, seed: int) -> XrayEncoder:
    """The same network, seeded and untrained; standardised on ``images``."""
    encoder = seeded_encoder(1, seed)
    encoder.fit_standardisation(images)
    return encoder


def _both_classes(labels: np.ndarray) -> bool:
    counts = np.bincount(np.asarray(labels, dtype=np.int64).clip(0), minlength=2)
    return len(counts) == 2 and bool((counts >= 2).all())


@torch.no_grad()
def _accuracies(encoder: XrayEncoder, images: Tensor,
                targets: Tensor | None, batch_size: int = 256) -> tuple[float | None, float]:
    encoder.eval()
    which = torch.arange(len(images)) % _FLIPS
    class_hits = flip_hits = 0
    for i in range(0, len(images), batch_size):
        x, w = images[i:i + batch_size], which[i:i + batch_size]
        class_logits, _ = encoder(x)
        _, flip_logits = encoder(flip(x, w))
        flip_hits += int((flip_logits.argmax(1) == w).sum())
        if targets is not None:
            class_hits += int((class_logits.argmax(1) == targets[i:i + batch_size]).sum())
    class_acc = class_hits / len(images) if targets is not None else None
    return class_acc, flip_hits / len(images)
