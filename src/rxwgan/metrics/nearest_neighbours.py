"""Did the generator copy its training images? Nearest-neighbour distances, in any space.

Three sets: the synthetic images, the generator's training images, and real images it never
saw (the fold's validation or test rows). For each synthetic image, its distance to the
nearest training image is compared with the same distance for the unseen real images:

- near copies: the fraction of synthetic images at most as far from a training image as
  the ``NEAR_COPY_QUANTILE`` quantile of the unseen-to-training distances (its lower
  order statistic: the k-th smallest of m, k = ceil(q m)); the unseen images' own
  fraction is the reference. If the synthetic images were just more unseen real images,
  each would fall under the k-th of m exchangeable distances with probability
  k / (m + 1), and their count would follow a beta-binomial law (k, m + 1 - k): its upper
  tail is the p-value, exact however few unseen images set the threshold. Distances tied
  with the threshold count as under it in both sets: k is then every unseen distance at
  most the threshold, and the unseen share k / m;
- authenticity (Alaa et al. 2022, "How faithful is your synthetic data?"): a sample is
  unauthentic when its nearest training image is closer to it than to that training
  image's own nearest *distinct* other training image (not one of its twins); reported as
  the authentic fraction.

Real tables hold twins: the same image exported twice, blank films, a follow-up that did
not change. ``find_twins`` finds them across the three sets, and the scores take them in:
an unseen image that is a twin of a training image is the training image again (leakage),
not a new patient, and is left out of the reference, as is every unseen image but one of a
group of twins among themselves (so the reference holds distinct images and its distances
do not tie); a synthetic image that is a twin of a training image which also has a twin
among the unseen rows is common in the data (a blank), not a copy, and is left out of the
test, as the unseen twins are. Without twins given, the twins are exact duplicates in the
space at hand, so no threshold is ever 0 through a duplicated row.

Twins of images are told on contrast-normalised pixels (``contrast_normalised``): the RMS
difference of two images once each is brought to mean 0 and contrast (standard deviation)
1, so re-windowing (brightness, contrast, a mild gamma) does not hide a copy. Two images
are twins at most ``TWIN_RADIUS`` = 0.1 apart (a tenth of their contrast), chosen between
what the twin phantoms (``rxwgan.data.twin_phantoms``, 120 patients) measure at 32, 64 and
128 px: exact twins 0; a copy
re-windowed with gamma 1.15 and 2 grey levels of noise 0.042-0.074; a patient's follow-ups
0.005-0.43 (7-29 % of them under 0.1: those barely changed, the same picture for this
check); each image's nearest other patient 0.145 at 32 px to 0.218 at 128 px, and new
patients of 10 other seeds no nearer than 0.151. Plain RMS cannot tell these apart at 32 px
(copies up to 0.043, other patients from 0.044), and real radiographs differ far more than
these drawings of one anatomy do.

Pure functions on (N, D) tensors; the search runs ``CHUNK`` queries at a time, so its
memory is ``CHUNK x len(reference)`` distances whatever the number of synthetic images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import betabinom
from torch import Tensor

NEAR_COPY_QUANTILE = 0.05
CHUNK = 1024
TWIN_RADIUS = 0.1  # twin distance (RMS over the images' own contrast) at or under which two images are one
CONTRAST_FLOOR = 0.1  # on a 0-1 grey scale: a blank's noise is not stretched into a picture
_SLACK = 1e-3  # relative to the rows' norms: over the matrix-product form's float32 rounding
Prepare = Callable[[Tensor], Tensor]  # samples (N, ...) to the rows (N, D) distances are taken between


def nearest(queries: Tensor, reference: Tensor, exclude_self: bool = False, chunk: int = CHUNK,
            groups: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(distance, index) of each query's nearest reference row, Euclidean.

    The search uses the fast matrix-product form of ``torch.cdist``; the distance returned
    is then recomputed directly for the pair found, so a near-identical pair gets a
    distance near 0 rather than the product form's rounding error. ``exclude_self``: the
    queries are the reference, and a row is not its own neighbour, nor (``groups``: one id
    per row) a row of its group; a row with no other group has distance inf.
    """
    if len(reference) < (2 if exclude_self else 1):
        raise ValueError("nearest: too few reference rows")
    reference = reference.reshape(len(reference), -1)
    queries = queries.reshape(len(queries), -1).to(reference.dtype)
    own = groups if groups is not None else torch.arange(len(reference))
    indices = torch.empty(len(queries), dtype=torch.long)
    alone = torch.zeros(len(queries), dtype=torch.bool)
    for start in range(0, len(queries), chunk):
        block = torch.cdist(queries[start:start + chunk], reference)
        if exclude_self:
            block[own[start:start + chunk, None] == own[None, :]] = math.inf
        best = block.min(dim=1)
        indices[start:start + chunk] = best.indices
        alone[start:start + chunk] = torch.isinf(best.values)
    distances = torch.cat([(queries[start:start + chunk] - reference[indices[start:start + chunk]])
                           .norm(dim=1) for start in range(0, len(queries), chunk)]).double()
    distances[alone] = math.inf
    return distances, indices


def contrast_normalised(images: Tensor, floor: float = CONTRAST_FLOOR) -> Tensor:
    """Images in [-1, 1] as rows whose Euclidean distance is the twin distance: each on a 0-1
    grey scale, less its mean, over its contrast (standard deviation, at least ``floor``), then
    over the root of its pixel count, so that the distance is an RMS difference."""
    rows = (images.reshape(len(images), -1).double() + 1) / 2
    rows = rows - rows.mean(dim=1, keepdim=True)
    contrast = rows.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(floor)
    return (rows / (contrast * math.sqrt(rows.shape[1]))).to(images.dtype)


def flat(rows: Tensor) -> Tensor:
    """Rows as they are, one per sample: distances in their own space."""
    return rows.reshape(len(rows), -1)


def twin_pairs(queries: Tensor, reference: Tensor, radius: float, prepare: Prepare = flat,
               chunk: int = CHUNK) -> Tensor:
    """(query, reference) positions of every pair at most ``radius`` apart once both are
    ``prepare``d (the queries a chunk at a time), shape (P, 2). Each candidate's distance
    is recomputed directly, so ``radius`` 0 means identical."""
    reference = prepare(reference)
    found = [torch.empty((0, 2), dtype=torch.long)]
    for start in range(0, len(queries), chunk):
        block = prepare(queries[start:start + chunk]).to(reference.dtype)
        distance = torch.cdist(block, reference)
        slack = _SLACK * (1.0 + float(block.norm(dim=1).max()) + float(reference.norm(dim=1).max()))
        rows, cols = torch.nonzero(distance <= radius + slack, as_tuple=True)
        close = (block[rows].double() - reference[cols].double()).norm(dim=1) <= radius
        found.append(torch.stack([rows[close] + start, cols[close]], dim=1))
    return torch.cat(found)


def twin_groups(rows: Tensor, radius: float, prepare: Prepare = flat) -> Tensor:
    """One id per row; rows joined by a chain of twin pairs share it."""
    pairs = twin_pairs(rows, rows, radius, prepare).numpy()
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(rows), len(rows)))
    return torch.from_numpy(connected_components(graph, directed=False)[1]).long()


@dataclass(frozen=True)
class Twins:
    """Which images of a memorisation check's three sets are twins (masks over each set's rows)."""

    train_group: Tensor  # training rows: twin group id (twins of twins included)
    leaked: Tensor  # unseen rows: a twin of a training image (that image again: leakage)
    reference: Tensor  # unseen rows in the reference: not leaked, first of its twins among the unseen
    common: Tensor  # training rows: its group has a twin among the unseen rows (a blank, a test image)
    synthetic: Tensor  # synthetic rows: a twin of a training image
    synthetic_common: Tensor  # synthetic rows: a twin of a common training image (not a copy)
    copied: Tensor  # training rows: a synthetic image that is not common is its twin

    @property
    def copies(self) -> Tensor:
        """Synthetic rows that copy a training image that is not common: each flags the set."""
        return self.synthetic & ~self.synthetic_common


def find_twins(synthetic: Tensor, train: Tensor, unseen: Tensor, radius: float,
               prepare: Prepare = flat) -> Twins:
    """The twins (at most ``radius`` apart once ``prepare``d) within the training images,
    between them and the unseen and synthetic images, and within the unseen images."""
    group = twin_groups(train, radius, prepare)
    to_unseen = twin_pairs(unseen, train, radius, prepare)
    leaked = _mask(len(unseen), to_unseen[:, 0])
    common = torch.isin(group, group[to_unseen[:, 1]])
    firsts = np.unique(twin_groups(unseen, radius, prepare).numpy(), return_index=True)[1]
    to_synthetic = twin_pairs(synthetic, train, radius, prepare)
    synthetic_common = _mask(len(synthetic), to_synthetic[common[to_synthetic[:, 1]], 0])
    copying = ~synthetic_common[to_synthetic[:, 0]]
    return Twins(group, leaked, _mask(len(unseen), torch.from_numpy(firsts)) & ~leaked, common,
                 _mask(len(synthetic), to_synthetic[:, 0]), synthetic_common,
                 _mask(len(train), to_synthetic[copying, 1]))


def _mask(n: int, positions: Tensor) -> Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[positions.long()] = True
    return mask


def memorisation_scores(synthetic: Tensor, train: Tensor, unseen: Tensor, twins: Twins | None = None,
                        quantile: float = NEAR_COPY_QUANTILE,
                        scale: float = 1.0) -> tuple[dict[str, float], tuple[Tensor, Tensor]]:
    """Near-copy fractions and authenticity of ``synthetic`` against ``train``, ``unseen`` the reference.

    Returns the scores and, for each synthetic image, (distance, index) of its nearest
    training image. The scores: ``near_copies`` (synthetic), ``near_copies_unseen`` (the
    reference), ``threshold`` (the unseen distances' ``quantile``), ``near_copies_p`` (the
    chance of this many near copies or more if the synthetic images were unseen real ones),
    ``authenticity`` and ``authenticity_unseen`` (authentic fractions), and the median
    nearest-training distances of both sets. ``twins``: from ``find_twins`` (a check passes
    the twins of its images to every space), else exact duplicates here; the synthetic
    twins of common images and the unseen rows out of the reference are left out of all
    scores. Distances are multiplied by ``scale`` (``pixel_scale`` for images), which
    changes no fraction.
    """
    twins = twins if twins is not None else find_twins(synthetic, train, unseen, radius=0.0)
    scored = ~twins.synthetic_common
    if int(twins.reference.sum()) < 2:
        raise ValueError("memorisation: at least 2 unseen images that are not twins of a training image "
                         "(nor of each other) are needed")
    if not scored.any():
        raise ValueError("memorisation: every synthetic image is a twin of a common image")
    train_gap, _ = nearest(train, train, exclude_self=True, groups=twins.train_group)
    fake_distance, fake_index = nearest(synthetic, train)
    unseen_distance, unseen_index = nearest(unseen[twins.reference], train)
    train_gap, fake_distance, unseen_distance = (train_gap * scale, fake_distance * scale,
                                                 unseen_distance * scale)
    m = len(unseen_distance)
    threshold = float(unseen_distance.sort().values[max(1, math.ceil(quantile * m)) - 1])
    k = int((unseen_distance <= threshold).sum())
    tested = fake_distance[scored]
    copies = int((tested <= threshold).sum())
    scores = {
        "near_copies": copies / len(tested),
        "near_copies_unseen": k / m,
        "threshold": threshold,
        "near_copies_p": float(betabinom.sf(copies - 1, len(tested), k, m + 1 - k)),
        "authenticity": authentic_fraction(tested, fake_index[scored], train_gap),
        "authenticity_unseen": authentic_fraction(unseen_distance, unseen_index, train_gap),
        "median_distance": float(tested.median()),
        "median_distance_unseen": float(unseen_distance.median()),
    }
    return scores, (fake_distance, fake_index)


@dataclass(frozen=True)
class Memorisation:
    """A memorisation check's scores in pixels and in a feature space, under one set of twins."""

    twins: Twins
    pixels: dict[str, float]
    features: dict[str, float]
    nearest_train: tuple[Tensor, Tensor]  # each synthetic image's (pixel distance, training index)


def memorisation_in_both(images: Sequence[Tensor], features: Sequence[Tensor]) -> Memorisation:
    """The check on (synthetic, train, unseen) ``images`` and their ``features``: twins are
    found once, on contrast-normalised pixels, and hold in both spaces. Raises ValueError when
    too few unseen rows are left once their twins are set aside."""
    twins = find_twins(*images, TWIN_RADIUS, contrast_normalised)
    pixels, nearest_train = memorisation_scores(*images, twins, scale=pixel_scale(images[0]))
    in_features, _ = memorisation_scores(*features, twins)
    return Memorisation(twins, pixels, in_features, nearest_train)


def authentic_fraction(distance: Tensor, index: Tensor, train_gap: Tensor) -> float:
    """Share of samples at least as far from their nearest training image as that image is
    from its own nearest distinct other training image (``train_gap``)."""
    return float((distance >= train_gap[index]).double().mean())


def pixel_scale(images: Tensor) -> float:
    """The factor turning the Euclidean distance of images in [-1, 1] into their RMS
    difference on a 0-1 grey scale (0.01: one grey level in a hundred, on average)."""
    return 1.0 / (2.0 * math.sqrt(images[0].numel()))
