"""Differentiable augmentation of the critic's inputs (DiffAugment, Zhao et al. 2020).

With a hundred images the critic memorises the training set and the generator stops
learning. DiffAugment applies the same family of random, differentiable transforms to
every image the critic sees, real or fake, in the critic step and in the generator step;
the generator's gradient passes back through the transform, so it learns the plain
images while the critic never sees an un-augmented one. Re-implemented here from the
paper's description for 1-channel images in [-1, 1].

The operations and their ranges (``--augment``, comma-separated, or ``none``):

``brightness``
    adds one offset ~ U(-0.5, 0.5) per image: a quarter of the [-1, 1] range either
    way, the paper's strength (its images live in [-1, 1] too), which covers the
    exposure and window differences between radiographs.
``contrast``
    scales each image around its own mean by a factor ~ U(0.5, 1.5), the paper's range.
``translation``
    shifts each image by whole pixels, independently per axis, by up to 1/8 of that
    side (16 px at 128) either way; the strip uncovered is filled with 0.
``cutout``
    zeroes one square of half the side (a rectangle of half of each side) per image,
    centred on a uniformly drawn pixel, so near a border part of it falls outside.
``flip``
    mirrors half of the images left-right. Not in ``DEFAULT_POLICY``: a chest
    radiograph is not mirror-symmetric (heart on the left), and a critic that cannot
    tell a mirrored image from a real one lets the generator put the heart either side.
``color``
    accepted as the paper's name for brightness and contrast (it had saturation too,
    which has no meaning for one channel).

Fill value 0, not -1: in [-1, 1] the value -1 is black, which in a radiograph is air
(lung fields, the background outside the body), a signal the critic should read. Zero
is the middle of the range and, as input to the critic's first (linear) convolution,
contributes nothing to its activations: a zeroed square removes information rather than
painting a dark patch that looks like anatomy. This is also what the paper's code does
on its [-1, 1] images. Nothing is clamped: clamping would cut the gradient at saturated
pixels, and the critic judges reals and fakes under the same transforms anyway.

Whatever order the policy is written in, the operations run in the order above
(brightness, contrast, flip, translation, cutout): the contrast mean is taken over the
whole image, not over padding, and the cutout and padding fill stay exactly 0.

Every random number comes from the ``torch.Generator`` passed in (a run's checkpointed
one), never from the global generator, so a resumed run draws the same augmentations.

In a WGAN-GP step: the critic scores ``augment(real)`` and ``augment(fake)`` (separate
draws) and the penalty's x_hat lies between those two augmented images, the pair of
distributions whose distance the critic estimates; the generator step scores
``augment(generator(z))``, and its gradient passes back through the transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from rxwgan.base.errors import RxwganError

OPERATIONS = ("brightness", "contrast", "flip", "translation", "cutout")  # the order they run in
DEFAULT_POLICY = ("brightness", "contrast", "translation", "cutout")
ALIASES = {"color": ("brightness", "contrast")}
OFF_WORDS = ("", "none", "off")

BRIGHTNESS = 0.5  # offset ~ U(-BRIGHTNESS, BRIGHTNESS), in [-1, 1] units
CONTRAST = (0.5, 1.5)  # factor ~ U(lo, hi) around the image's mean
TRANSLATION = 1 / 8  # largest shift, as a fraction of the side
CUTOUT = 1 / 2  # side of the zeroed square, as a fraction of the image's side
FILL = 0.0  # the value of padding and cutout: the middle of [-1, 1], no signal to a convolution

Policy = Sequence[str] | str


def parse_policy(text: str | None, flag: str = "--augment") -> tuple[str, ...]:
    """``"translation,cutout"`` -> the operations in the order they run; ``none`` or empty -> ()."""
    words = [word.strip().lower() for word in (text or "").split(",")]
    if all(word in OFF_WORDS for word in words):
        return ()
    chosen: set[str] = set()
    for word in words:
        if word in OPERATIONS:
            chosen.add(word)
        elif word in ALIASES:
            chosen.update(ALIASES[word])
        elif word in OFF_WORDS:
            raise RxwganError(f"{flag} {text}: {word or 'an empty name'!r} cannot be combined with "
                              f"augmentations; give 'none' alone to turn augmentation off")
        else:
            raise RxwganError(f"{flag} {text}: unknown augmentation {word!r}; allowed: "
                              f"{', '.join(sorted(OPERATIONS + tuple(ALIASES)))} (comma-separated), "
                              f"or 'none'")
    return tuple(op for op in OPERATIONS if op in chosen)


def augment(images: Tensor, policy: Policy, generator: torch.Generator) -> Tensor:
    """``images`` (N, C, H, W) under random transforms of ``policy``, one draw per image.

    Differentiable with respect to ``images`` (twice: a gradient penalty can pass through
    it); same shape, dtype and memory format. An empty policy returns ``images`` itself and
    draws nothing, so a run without augmentation keeps its random stream.
    """
    ops = parse_policy(policy) if isinstance(policy, str) else _checked(policy)
    if not ops:
        return images
    if images.dim() != 4:
        raise ValueError(f"augment expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    if generator.device.type != images.device.type:
        raise ValueError(f"the generator is on {generator.device} but the images on {images.device}")
    out = images
    for op in ops:
        out = _OPS[op](out, generator)
    if out.stride() != images.stride():  # back to the caller's layout (channels-last or not)
        out = torch.empty_like(images).copy_(out)
    return out


def _checked(policy: Sequence[str]) -> tuple[str, ...]:
    """A parsed policy as is; other sequences (any order, aliases) through ``parse_policy``."""
    ops = tuple(policy)
    if all(op in OPERATIONS for op in ops) and list(ops) == sorted(set(ops), key=OPERATIONS.index):
        return ops
    return parse_policy(",".join(ops))


def _uniform(images: Tensor, generator: torch.Generator, low: float, high: float) -> Tensor:
    """One U(low, high) number per image, shaped (N, 1, 1, 1), in the images' dtype.

    Drawn in float32 whatever the dtype, so bf16 and float32 runs draw the same stream.
    """
    draw = torch.rand(images.shape[0], 1, 1, 1, generator=generator, device=images.device)
    return (draw * (high - low) + low).to(images.dtype)


def _brightness(images: Tensor, generator: torch.Generator) -> Tensor:
    return images + _uniform(images, generator, -BRIGHTNESS, BRIGHTNESS)


def _contrast(images: Tensor, generator: torch.Generator) -> Tensor:
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * _uniform(images, generator, *CONTRAST) + mean


def _flip(images: Tensor, generator: torch.Generator) -> Tensor:
    mirror = torch.rand(images.shape[0], 1, 1, 1, generator=generator, device=images.device) < 0.5
    return torch.where(mirror, images.flip(-1), images)


def _translation(images: Tensor, generator: torch.Generator) -> Tensor:
    """out[n, :, y, x] = images[n, :, y - dy[n], x - dx[n]], FILL where that is outside."""
    n, _, height, width = images.shape
    reach_y, reach_x = int(height * TRANSLATION + 0.5), int(width * TRANSLATION + 0.5)
    device = images.device
    dy = torch.randint(-reach_y, reach_y + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(-reach_x, reach_x + 1, (n, 1), generator=generator, device=device)
    padded = F.pad(images, (reach_x, reach_x, reach_y, reach_y), value=FILL)
    rows = torch.arange(height, device=device) - dy + reach_y  # (N, H) rows of ``padded``
    cols = torch.arange(width, device=device) - dx + reach_x  # (N, W)
    batch = torch.arange(n, device=device)[:, None, None]
    # Advanced indices around a slice: the result is (N, H, W, C); back to (N, C, H, W).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(images: Tensor, generator: torch.Generator) -> Tensor:
    n, _, height, width = images.shape
    size_y, size_x = int(height * CUTOUT + 0.5), int(width * CUTOUT + 0.5)
    device = images.device
    centre_y = torch.randint(0, height, (n, 1), generator=generator, device=device)
    centre_x = torch.randint(0, width, (n, 1), generator=generator, device=device)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    in_rows = (rows >= top) & (rows < top + size_y)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size_x)  # (N, W)
    keep = ~(in_rows[:, None, :, None] & in_cols[:, None, None, :])  # (N, 1, H, W)
    return images * keep.to(images.dtype)  # FILL is 0: the product zeroes the square


_OPS = {"brightness": _brightness, "contrast": _contrast, "flip": _flip,
        "translation": _translation, "cutout": _cutout}
