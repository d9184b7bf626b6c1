"""Distances between two sets of features, and the old tool's pixel-level divergences.

Well-kept implementations do the maths: torchmetrics computes FID (fed our own features
through an identity network, so neither torch-fidelity nor torchvision is needed) and
KID's kernel, ``prdc`` computes precision, recall, density and coverage, and
``rxwgan.metrics.histogram_divergences`` the old histogram and pixel divergences. What is ours: choosing
subset sizes, seeding, and refusing sample sizes that cannot give a number.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import Tensor, nn

from rxwgan.base.errors import RxwganError
from rxwgan.metrics.histogram_divergences import pair_divergences
from rxwgan.metrics.threads import threads_for

KID_SUBSETS = 100
KID_MAX_SUBSET = 1000  # torch-fidelity's default, reached from 2000 images per set
NEAREST_K = 5  # Kynkäänniemi et al. and Naeem et al. use k = 3..5; prdc's README uses 5
HIST_MAX_IMAGES = 256


class _Identity(nn.Module):
    """A 'feature network' that passes precomputed features through (torchmetrics API)."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: Tensor) -> Tensor:
        return x


def fid(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise RxwganError(f"FID needs at least 2 images per set, got {len(real)} real and {len(fake)} fake")
    dim = real.shape[1]
    metric = FrechetInceptionDistance(feature=_Identity(dim))
    with threads_for(dim**3 + (len(real) + len(fake)) * dim**2):
        metric.update(real.double(), real=True)
        metric.update(fake.double(), real=False)
        return float(metric.compute())


def kid_subset_size(n_real: int, n_fake: int) -> int:
    """Half the smaller set, at most 1000: subsets must differ for their spread to mean anything
    (with subsets as large as the sets, every subset is the whole set and the std is 0)."""
    return min(KID_MAX_SUBSET, min(n_real, n_fake) // 2)


def kid(real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS, subset_size: int | None = None,
        seed: int = 0) -> tuple[float, float, int]:
    """Unbiased KID (cubic polynomial kernel) as (mean, std over subsets, subset size).

    torchmetrics' kernel (``poly_mmd``) scores each subset; the subsets are drawn here, as
    ``KernelInceptionDistance.compute`` draws them, but from a generator of our own: that
    method draws from the global generator, and seeding that one (``torch.manual_seed``)
    would reseed every CUDA device's generator too.
    """
    from torchmetrics.image.kid import poly_mmd

    size = subset_size or kid_subset_size(len(real), len(fake))
    if size < 2 or size > min(len(real), len(fake)):
        raise RxwganError(f"KID needs subsets of 2 to {min(len(real), len(fake))} images; with "
                          f"{len(real)} real and {len(fake)} fake images use at least 4 of each")
    real, fake = real.double().cpu(), fake.double().cpu()
    rng = torch.Generator().manual_seed(seed)
    scores = []
    with threads_for(size * size * real.shape[1]):
        for _ in range(subsets):
            real_rows = torch.randperm(len(real), generator=rng)[:size]
            fake_rows = torch.randperm(len(fake), generator=rng)[:size]
            scores.append(poly_mmd(real[real_rows], fake[fake_rows]))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)), size


def prdc(real: Tensor, fake: Tensor, nearest_k: int = NEAREST_K) -> dict[str, float]:
    """Precision and recall (k-NN manifolds) and density and coverage."""
    from prdc import compute_prdc

    smallest = min(len(real), len(fake))
    if smallest <= nearest_k:
        raise RxwganError(f"precision/recall/density/coverage with k={nearest_k} need more than "
                          f"{nearest_k} images per set, got {len(real)} real and {len(fake)} fake")
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        values = compute_prdc(real.float().numpy(), fake.float().numpy(), nearest_k)
    return {name: float(value) for name, value in values.items()}


def hist(real: Tensor, fake: Tensor, max_images: int = HIST_MAX_IMAGES,
         seed: int = 0) -> tuple[dict[str, float], int]:
    """The old per-pair divergences on up to ``max_images`` images of each set (a seeded
    pick from a larger set).

    Returns the eight ``{kl,js,l1,l2}_{rr,rf}`` means and how many images of each set they
    used: the cost grows with the square of that number.
    """
    n = min(len(real), len(fake), max_images)
    if n < 2:
        raise RxwganError(f"the histogram divergences need at least 2 images per set, "
                          f"got {len(real)} real and {len(fake)} fake")
    rng = torch.Generator().manual_seed(seed)
    real, fake = _pick(real, n, rng), _pick(fake, n, rng)
    return pair_divergences((real.float() + 1) / 2, (fake.float() + 1) / 2), n


def _pick(images: Tensor, n: int, rng: torch.Generator) -> Tensor:
    """``n`` images in a seeded random order, or all of them in their own order."""
    if len(images) == n:
        return images
    return images[torch.randperm(len(images), generator=rng)[:n]]
