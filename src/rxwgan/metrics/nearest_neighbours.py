"""Did the generator copy its training images? Nearest-neighbour distances, in any space.

Three sets: the synthetic images, the generator's training images, and real images it never
saw (the fold's validation or test rows). For each synthetic image, its distance to the
nearest training image is compared with the same distance for the unseen real images:

- near copies: the fraction of synthetic images at most as far from a training image as
  the ``NEAR_COPY_QUANTILE`` quantile of the unseen-to-training distances (its lower
  order statistic: the k-th smallest of m, k = ceil(q m)); the unseen images' own
  fraction, k / m, is the reference. If the synthetic images were just more unseen real
  images, each would fall under the k-th of m exchangeable distances with probability
  k / (m + 1), and their count would follow a beta-binomial law (k, m + 1 - k): its upper
  tail is the p-value, exact however few unseen images set the threshold;
- authenticity (Alaa et al. 2022, "How faithful is your synthetic data?"): a sample is
  unauthentic when its nearest training image is closer to it than to that training
  image's own nearest other training image; reported as the authentic fraction.

Pure functions on (N, D) tensors; the search runs ``CHUNK`` queries at a time, so its
memory is ``CHUNK x len(reference)`` distances whatever the number of synthetic images.
"""

from __future__ import annotations

import math

import torch
from scipy.stats import betabinom
from torch import Tensor

NEAR_COPY_QUANTILE = 0.05
CHUNK = 1024


def nearest(queries: Tensor, reference: Tensor, exclude_self: bool = False,
            chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """(distance, index) of each query's nearest reference row, Euclidean.

    The search uses the fast matrix-product form of ``torch.cdist``; the distance returned
    is then recomputed directly for the pair found, so a near-identical pair gets a
    distance near 0 rather than the product form's rounding error. ``exclude_self``: the
    queries are the reference, and a row is not its own neighbour.
    """
    if len(reference) < (2 if exclude_self else 1):
        raise ValueError("nearest: too few reference rows")
    reference = reference.reshape(len(reference), -1)
    queries = queries.reshape(len(queries), -1).to(reference.dtype)
    indices = torch.empty(len(queries), dtype=torch.long)
    for start in range(0, len(queries), chunk):
        block = torch.cdist(queries[start:start + chunk], reference)
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = math.inf
        indices[start:start + chunk] = block.argmin(dim=1)
    distances = torch.cat([(queries[start:start + chunk] - reference[indices[start:start + chunk]])
                           .norm(dim=1) for start in range(0, len(queries), chunk)])
    return distances.double(), indices


def memorisation_scores(synthetic: Tensor, train: Tensor, unseen: Tensor,
                        quantile: float = NEAR_COPY_QUANTILE,
                        scale: float = 1.0) -> tuple[dict[str, float], tuple[Tensor, Tensor]]:
    """Near-copy fractions and authenticity of ``synthetic`` against ``train``, ``unseen`` the reference.

    Returns the scores and, for each synthetic image, (distance, index) of its nearest
    training image. The scores: ``near_copies`` (synthetic), ``near_copies_unseen`` (the
    reference),
    ``threshold`` (the unseen distances' ``quantile``), ``near_copies_p`` (the chance of
    this many near copies or more if the synthetic images were unseen real ones),
    ``authenticity`` and ``authenticity_unseen`` (authentic fractions), and
    the median nearest-training distances of both sets. Distances are multiplied by
    ``scale`` (``pixel_scale`` for images), which changes no fraction.
    """
    if len(unseen) < 2:
        raise ValueError("memorisation: at least 2 unseen images are needed")
    train_gap, _ = nearest(train, train, exclude_self=True)
    fake_distance, fake_index = nearest(synthetic, train)
    unseen_distance, unseen_index = nearest(unseen, train)
    m = len(unseen_distance)
    k = max(1, math.ceil(quantile * m))
    train_gap, fake_distance, unseen_distance = (train_gap * scale, fake_distance * scale,
                                                 unseen_distance * scale)
    threshold = float(unseen_distance.sort().values[k - 1])
    copies = int((fake_distance <= threshold).sum())
    scores = {
        "near_copies": copies / len(synthetic),
        "near_copies_unseen": k / m,
        "threshold": threshold,
        "near_copies_p": float(betabinom.sf(copies - 1, len(synthetic), k, m + 1 - k)),
        "authenticity": authentic_fraction(fake_distance, fake_index, train_gap),
        "authenticity_unseen": authentic_fraction(unseen_distance, unseen_index, train_gap),
        "median_distance": float(fake_distance.median()),
        "median_distance_unseen": float(unseen_distance.median()),
    }
    return scores, (fake_distance, fake_index)


def authentic_fraction(distance: Tensor, index: Tensor, train_gap: Tensor) -> float:
    """Share of samples at least as far from their nearest training image as that image is
    from its own nearest other training image (``train_gap``)."""
    return float((distance >= train_gap[index]).double().mean())


def pixel_scale(images: Tensor) -> float:
    """The factor turning the Euclidean distance of images in [-1, 1] into their RMS
    difference on a 0-1 grey scale (0.01: one grey level in a hundred, on average)."""
    return 1.0 / (2.0 * math.sqrt(images[0].numel()))
