"""The old tool's per-epoch "history" divergences between real and generated images.

For a batch of reals r and fakes f (N images each, intensities in [0, 1]) the old tool
averaged, over all ordered pairs i != j, a distance between (r_i, r_j) ("rr", the spread
of the real data) and between (r_i, f_j) ("rf", how far the fakes are from it): the KL and
JS divergences of the two images' 100-bin intensity histograms, and the mean absolute
and squared pixel differences. Here every pair is computed at once on tensors, so the
metric costs milliseconds rather than a Python loop over N*(N-1) pairs.

Histogram divergences follow the old definition exactly: densities (counts / (n_pixels *
bin_width)), plus 1e-3 in every bin, integrand integrated with the trapezoid rule with
dx = bin_width. All sums run in float64 on the CPU: the inputs are small (one batch), and
float64 keeps the l2 expansion and the log-ratios accurate (some accelerators lack it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rxwgan.base.errors import RxwganError

BINS = 100
SMOOTHING = 1e-3

__all__ = [
    "BINS",
    "SMOOTHING",
    "histogram_densities",
    "pair_divergences",
    "pairwise_js",
    "pairwise_kl",
    "pairwise_l1",
    "pairwise_l2",
]


def histogram_densities(images: Tensor, bins: int = BINS) -> Tensor:
    """Per-image intensity histograms on [0, 1] as densities, shape (N, bins), float64.

    Bins are left-closed like numpy.histogram, with 1.0 in the last bin; values outside
    [0, 1] are clamped. Edges are rounded to the data's precision (float32, or float64
    for float64 data) so bin membership matches numpy.histogram on the same array. An
    image with a NaN pixel gets a row of NaN, so a diverged generator shows up as NaN.
    """
    x = images.flatten(1)
    if x.dtype != torch.float64:
        x = x.float()
    n_images, n_pixels = x.shape
    has_nan = x.isnan().any(dim=1)
    x = (x.nan_to_num(0.0) if has_nan.any() else x).clamp(0.0, 1.0)
    # Edges as numpy.linspace builds them (k * step), not torch.linspace: they differ in
    # the last bit, which moves pixels lying on an edge. The top edge is open so that 1.0
    # stays in the last bin.
    edges = torch.arange(bins + 1, dtype=torch.float64) * (1.0 / bins)
    upper = edges[1:].clone()
    upper[-1] = torch.inf
    lower, upper = edges[:-1].to(x.device, x.dtype), upper.to(x.device, x.dtype)
    # floor(x * bins) is the bin up to rounding; one step either way against the edges fixes it.
    idx = (x * bins).long().clamp_(max=bins - 1)
    idx -= (x < lower[idx]).long()
    idx += (x >= upper[idx]).long()
    offsets = torch.arange(n_images, device=x.device).unsqueeze(1) * bins
    counts = torch.bincount((idx + offsets).flatten(), minlength=n_images * bins)
    densities = counts.view(n_images, bins).double() * (bins / n_pixels)
    densities[has_nan] = float("nan")
    return densities


def _trapezoid_weights(bins: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Weights w with sum_k w_k f_k equal to the trapezoid rule over bins with dx = 1/bins."""
    w = torch.full((bins,), 1.0 / bins, dtype=dtype, device=device)
    w[0] = w[-1] = 0.5 / bins
    return w


def _kl_terms(p: Tensor, q: Tensor) -> Tensor:
    """Trapezoid integral of p * log(p / q) over the last dimension."""
    w = _trapezoid_weights(p.shape[-1], p.dtype, p.device)
    return (p * (p / q).log() * w).sum(dim=-1)


def pairwise_kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p_i || q_j) for every i, j: (N, B) and (M, B) positive densities -> (N, M)."""
    return _kl_terms(p.unsqueeze(1), q.unsqueeze(0))


def pairwise_js(p: Tensor, q: Tensor) -> Tensor:
    """JS(p_i, q_j) = KL(p||m)/2 + KL(q||m)/2, m = (p+q)/2, for every i, j -> (N, M)."""
    p3, q3 = p.unsqueeze(1), q.unsqueeze(0)
    m = (p3 + q3) / 2
    return 0.5 * _kl_terms(p3, m) + 0.5 * _kl_terms(q3, m)


def pairwise_l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean |a_i - b_j| over pixels for every i, j: (N, ...) and (M, ...) -> (N, M)."""
    a2, b2 = a.flatten(1), b.flatten(1)
    return torch.cdist(a2, b2, p=1) / a2.shape[1]


def pairwise_l2(a: Tensor, b: Tensor) -> Tensor:
    """Mean (a_i - b_j)^2 over pixels for every i, j -> (N, M).

    Uses ||a||^2 + ||b||^2 - 2<a, b>, so call it with float64: in float32 the
    cancellation loses the small distances between similar images.
    """
    a2, b2 = a.flatten(1), b.flatten(1)
    sq = a2.square().sum(1).unsqueeze(1) + b2.square().sum(1).unsqueeze(0) - 2 * a2 @ b2.T
    return sq.clamp(min=0.0) / a2.shape[1]


def _off_diagonal_mean(matrix: Tensor) -> float:
    """Mean over entries (i, j) with i != j: the old metric never paired an index with itself."""
    n = matrix.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[off].mean().item()


@torch.no_grad()
def pair_divergences(real: Tensor, fake: Tensor) -> dict[str, float]:
    """kl/js/l1/l2 averaged over ordered pairs i != j of (real_i, real_j) and (real_i, fake_j).

    ``real`` and ``fake`` are (N, ...) batches of the same shape with intensities in
    [0, 1]; returns the keys ``kl_rr, kl_rf, js_rr, js_rf, l1_rr, l1_rf, l2_rr, l2_rf``.
    """
    if real.shape != fake.shape:
        raise RxwganError(
            f"pair divergences need real and fake batches of one shape, "
            f"got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.dim() < 2 or real.shape[0] < 2:
        raise RxwganError(
            f"pair divergences need at least 2 images per batch (pairs i != j), "
            f"got a batch of shape {tuple(real.shape)}"
        )
    p_real = histogram_densities(real.cpu()) + SMOOTHING
    p_fake = histogram_densities(fake.cpu()) + SMOOTHING
    r = real.detach().to("cpu", torch.float64).flatten(1)
    f = fake.detach().to("cpu", torch.float64).flatten(1)
    matrices = {
        "kl_rr": pairwise_kl(p_real, p_real),
        "kl_rf": pairwise_kl(p_real, p_fake),
        "js_rr": pairwise_js(p_real, p_real),
        "js_rf": pairwise_js(p_real, p_fake),
        "l1_rr": pairwise_l1(r, r),
        "l1_rf": pairwise_l1(r, f),
        "l2_rr": pairwise_l2(r, r),
        "l2_rf": pairwise_l2(r, f),
    }
    return {name: _off_diagonal_mean(m) for name, m in matrices.items()}
