"""Twins in a table: exact duplicates (same decoded pixels) and near ones (a barely changed copy).

A study exported twice, a blank film in every batch, a follow-up that barely changed: such
twins inflate a table, and a pair on both sides of a split makes validation flatter than it
is. ``rxwgan table check`` lists them and ``rxwgan table dedupe`` drops the exact ones.

Exact twins share the hash of their decoded pixels at full resolution, whatever the file's
name, format or bytes. Decoding is the cost, so each file's hash is remembered in the image
cache's folder by the file's content md5 (and the depth it decodes at): a second search
decodes nothing. The cache's own entries cannot serve, as they hold resized images only,
and two images may differ below that size.

Near twins are compared on the cached images shrunk to ``COMPARE_SIZE`` px: the RMS
difference in grey levels (of 255) after the best shift of up to ``MAX_SHIFT`` px and a
half (``shifted_distances``). Small thumbnails alone cannot tell them: on the twin phantoms
a 1 px shift moves a follow-up further from its first image (up to 14 grey levels on 8x8
thumbnails) than the closest distinct patients are (7.7). The shifted comparison keeps them
apart (follow-ups up to 5.5, distinct patients from 10.2; ``NEAR_THRESHOLD``) but costs too
much for every pair of a large table, so each image is compared only with its
``NEAR_CANDIDATES`` nearest neighbours by 8x8 thumbnail. Groups are the connected
components of the pairs within the threshold.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rxwgan.base.errors import RxwganError
from rxwgan.base.progress import progress_bar
from rxwgan.data.cache import ImageCache
from rxwgan.data.images import Depth, resize_unit
from rxwgan.data.table import md5_of_file

if TYPE_CHECKING:
    import torch

# Between the twin phantoms' follow-ups (gamma 0.95-1.05, noise 2, shift 1 px) and their closest
# distinct patients, measured on tables of 64, 128 and 256 px cached at 64 and 128 px: follow-ups
# at most 5.5 from their first image, distinct patients at least 10.2 apart (the geometric mean).
NEAR_THRESHOLD = 7.5
COMPARE_SIZE = 64  # px; a smaller cache size is compared as it is
MAX_SHIFT = 1  # whole px at the compared size...
SUBPIXEL = 0.5  # ...and then this much more, in any direction
COARSE_SIZE = 8  # px: the thumbnails that pick the candidates
NEAR_CANDIDATES = 10  # nearest thumbnails each image is compared with
_CHUNK = 256  # images whose candidates are found at once (memory: chunk x table floats)
_LOAD_CHUNK = 2048  # cached images read at once before shrinking


@dataclass(frozen=True)
class Duplicates:
    """Groups of positions (into the searched paths), each sorted, the groups by first position.

    ``near``: groups of at least two different images (with their exact twins); None when
    the near search was not run.
    """

    exact: list[list[int]]
    near: list[list[int]] | None


def check_near_threshold(threshold: float) -> None:
    """Refuse a threshold no distance can be compared with (the flag is --near-threshold)."""
    if not (math.isfinite(threshold) and threshold >= 0):
        raise RxwganError(f"--near-threshold must be a number of grey levels >= 0, not {threshold}")


def find_duplicates(cache: ImageCache, paths: Sequence[Path], size: int,
                    depths: Sequence[Depth | None], near_threshold: float = NEAR_THRESHOLD,
                    near: bool = True, progress: bool = True) -> Duplicates:
    """Exact and (with ``near``) near twins among ``paths``, whose images the cache holds at
    ``size`` px (``table check`` fills it first). A file that cannot be decoded is left out
    (decoding reports it)."""
    check_near_threshold(near_threshold)
    hashes = pixel_hashes(cache, paths, depths)
    exact = exact_groups(hashes)
    if not near:
        return Duplicates(exact, None)
    kept = representatives(hashes)
    images = cached_compare_images(cache, [paths[i] for i in kept], size, [depths[i] for i in kept])
    return Duplicates(exact, near_groups(hashes, kept, images, near_threshold, progress))


# --- exact twins ----------------------------------------------------------------------------

def pixel_hashes(cache: ImageCache, paths: Sequence[Path],
                 depths: Sequence[Depth | None]) -> list[str | None]:
    """Each file's pixel hash as decoded at its depth (None where it cannot be read), from the
    cache's memory: files of the same bytes, and files the cache decoded before, decode nothing."""
    keys = []
    for path, depth in zip(paths, depths, strict=True):
        try:
            keys.append((md5_of_file(path), depth.bits if depth else None))
        except OSError:
            keys.append(None)
    path_of = {key: path for key, path in zip(keys, paths, strict=True) if key is not None}
    unique = list(path_of)
    with ThreadPoolExecutor(cache.workers) as pool:
        found = dict(zip(unique, pool.map(lambda key: cache.pixel_hash(path_of[key], key[1]), unique),
                         strict=True))
    return [None if key is None else found[key] for key in keys]


def exact_groups(keys: Sequence[str | None]) -> list[list[int]]:
    """Positions sharing a key, for every key held more than once (None: never a twin)."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key is not None:
            positions[key].append(i)
    return sorted(group for group in positions.values() if len(group) > 1)


# --- near twins -----------------------------------------------------------------------------

def representatives(keys: Sequence[str | None]) -> list[int]:
    """The positions the near search compares, one per distinct image: the first of each exact
    group and every hashed position without a twin (a hundred blank films are compared once)."""
    first = {}
    for i, key in enumerate(keys):
        if key is not None:
            first.setdefault(key, i)
    return sorted(first.values())


def near_groups(keys: Sequence[str | None], kept: Sequence[int], images: np.ndarray, threshold: float,
                progress: bool = False) -> list[list[int]]:
    """Groups of near twins among all positions: ``near_pairs`` of the ``representatives``
    ``kept`` (their ``images``), joined by their exact twins; only groups of two different
    images or more (the exact groups are listed as such)."""
    linked = [(kept[a], kept[b]) for a, b in near_pairs(images, threshold, progress)]
    first = {keys[i]: i for i in kept}
    linked += [(i, first[key]) for i, key in enumerate(keys) if key is not None and first[key] != i]
    groups = connected_groups(len(keys), linked)
    return [group for group in groups if len({keys[i] for i in group}) > 1]


def compare_images(images: np.ndarray) -> np.ndarray:
    """Cached images (N, 1, S, S) in [-1, 1] as (N, C, C) grey levels 0..255, C = min(S, COMPARE_SIZE)."""
    side = min(images.shape[-1], COMPARE_SIZE)
    unit = (images[:, 0] + 1.0) / 2.0
    return np.stack([resize_unit(image, side) for image in unit]).reshape(-1, side, side) * 255.0


def cached_compare_images(cache: ImageCache, paths: Sequence[Path], size: int,
                          depths: Sequence[Depth | None]) -> np.ndarray:
    """``compare_images`` of the cache's images, read a chunk at a time to bound memory."""
    chunks = [compare_images(cache.load(paths[i:i + _LOAD_CHUNK], size, progress=False,
                                        depths=depths[i:i + _LOAD_CHUNK]))
              for i in range(0, len(paths), _LOAD_CHUNK)]
    side = min(size, COMPARE_SIZE)
    return np.concatenate(chunks) if chunks else np.empty((0, side, side), np.float32)


def near_pairs(images: np.ndarray, threshold: float, progress: bool = False) -> list[tuple[int, int]]:
    """Pairs (i < j) of ``images`` (N, C, C grey levels) within ``threshold`` of each other by
    ``shifted_distances``, each image compared with its ``NEAR_CANDIDATES`` nearest thumbnails."""
    import torch  # here, not above: dedupe and a check without the near search never load it

    n = len(images)
    if n < 2:
        return []
    pixels = torch.from_numpy(np.subtract(images, 127.5, dtype=np.float32))  # centred: sums stay precise
    terms = torch.cat([candidate_terms(pixels[i:i + _CHUNK]) for i in range(0, n, _CHUNK)])
    coarse = torch.from_numpy(thumbnails(images, COARSE_SIZE))
    squares = (coarse * coarse).sum(1)
    k = min(NEAR_CANDIDATES, n - 1)
    frames = pixels.new_zeros(min(n, _CHUNK), len(_SHIFTS), len(_OFFSETS), *pixels.shape[1:])
    pairs = set()
    for start in progress_bar(range(0, n, _CHUNK), desc="near twins", unit="chunk", leave=False,
                              disable=not progress or n <= _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n))
        # |q - x|^2 less the query's own |q|^2, which does not change its ranking
        scores = torch.addmm(squares, coarse[rows], coarse.T, alpha=-2.0)
        scores[torch.arange(len(rows)), rows] = math.inf  # not its own candidate
        candidates = scores.topk(k, largest=False).indices
        distances = shifted_distances(pixels[rows], pixels[candidates], terms[candidates], frames[:len(rows)])
        for a, b in (distances <= threshold).nonzero().tolist():
            i, j = int(rows[a]), int(candidates[a, b])
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def thumbnails(images: np.ndarray, side: int) -> np.ndarray:
    """(N, C, C) grey levels as (N, side * side) float32 thumbnails."""
    return np.stack([resize_unit(image / 255.0, side) for image in images]).reshape(len(images), -1) * 255.0


def _crop(images: torch.Tensor, dy: int = 0, dx: int = 0) -> torch.Tensor:
    """The centre every shift of up to MAX_SHIFT px keeps, moved by (dy, dx)."""
    m, inner = MAX_SHIFT, images.shape[-1] - 2 * MAX_SHIFT
    return images[..., m + dy:m + dy + inner, m + dx:m + dx + inner]


# Where a query's shifted centre meets a candidate: on its centre, then one pixel right, left,
# down and up (the candidate's x and y gradients are the differences of those).
_OFFSETS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
_SHIFTS = tuple(itertools.product(range(-MAX_SHIFT, MAX_SHIFT + 1), repeat=2))  # (dy, dx) of the query


def candidate_terms(images: torch.Tensor) -> torch.Tensor:
    """What ``shifted_distances`` needs of each candidate alone (N, 6): the squared norm of its
    centre, its x and y gradients' products with the centre, and theirs with each other (xx,
    xy, yy); once per image rather than once per pair."""
    import torch

    centre = _crop(images).flatten(-2)
    gx = (_crop(images, 0, 1) - _crop(images, 0, -1)).flatten(-2) / 2
    gy = (_crop(images, 1, 0) - _crop(images, -1, 0)).flatten(-2) / 2
    return torch.stack([(a * b).sum(-1) for a, b in ((centre, centre), (gx, centre), (gy, centre),
                                                     (gx, gx), (gx, gy), (gy, gy))], -1)


def shifted_distances(queries: torch.Tensor, candidates: torch.Tensor, terms: torch.Tensor,
                      frames: torch.Tensor) -> torch.Tensor:
    """RMS difference of each query (B, C, C) with each of its candidates (B, K, C, C; their
    ``candidate_terms`` B, K, 6) over the centre they share (B, K), at the best shift of the
    query by whole pixels up to ``MAX_SHIFT``, then by up to ``SUBPIXEL`` px along the
    candidate's gradients. ``frames``: a zeroed (B, shifts, offsets, C, C) buffer, reused from
    call to call (only the same windows are ever written, so the rest stays zero: zeroing
    it anew would take half the time).

    The second step is a tangent distance (the difference less its best fit by the candidate's
    x and y gradients, a linear model of a small shift): a shift of half a pixel at the compared
    size moves sharp edges as much as a whole one does in a pixel-aligned copy. Every product
    with a candidate comes from one batched matrix product of the whole candidates with the
    query's shifted centres laid where they meet them (``_OFFSETS``).
    """
    import torch

    for s, shift in enumerate(_SHIFTS):
        for o, offset in enumerate(_OFFSETS):
            _crop(frames[:, s, o], *offset).copy_(_crop(queries, *shift))
    dots = torch.bmm(frames.flatten(-2).flatten(1, 2), candidates.flatten(-2).transpose(1, 2))
    dots = dots.unflatten(1, (len(_SHIFTS), len(_OFFSETS)))  # (B, S, O, K)
    norms = frames[:, :, 0].flatten(-2).pow(2).sum(-1)  # of the shifted query (B, S)
    squared = norms[..., None] + terms[:, None, :, 0] - 2.0 * dots[:, :, 0]  # |query - centre|^2 (B, S, K)
    along = torch.stack([(dots[:, :, 1] - dots[:, :, 2]) / 2, (dots[:, :, 3] - dots[:, :, 4]) / 2], -1)
    along = along - terms[:, None, :, 1:3]  # the difference's products with the gradients (B, S, K, 2)
    gram = torch.stack([terms[..., 3:5], terms[..., 4:6]], -1) + 1e-3 * torch.eye(2)  # (B, K, 2, 2)
    coef = torch.linalg.solve(gram[:, None], along[..., None])[..., 0]  # the best fit (B, S, K, 2)...
    coef = coef.clamp(-SUBPIXEL, SUBPIXEL)  # ...within the linear model's reach
    squared = squared - 2.0 * (coef * along).sum(-1) + torch.einsum("bskt,bktu,bsku->bsk", coef, gram, coef)
    inner = queries.shape[-1] - 2 * MAX_SHIFT
    return (squared.amin(1).clamp_min(0.0) / (inner * inner)).sqrt()


def connected_groups(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The connected components of more than one of ``n`` nodes linked by ``pairs``."""
    if not pairs:
        return []
    a, b = np.asarray(pairs, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(a), dtype=bool), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for node, label in enumerate(labels.tolist()):
        members[label].append(node)
    return sorted(group for group in members.values() if len(group) > 1)


# --- against a split ------------------------------------------------------------------------

def straddling(groups: Sequence[Sequence[int]], parts: Sequence[str]) -> int:
    """How many groups have rows in more than one part (``parts``: each row's partition)."""
    return sum(len({parts[i] for i in group}) > 1 for group in groups)
