from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.metrics.histogram_divergences import histogram_densities, pair_divergences

KEYS = {"kl_rr", "kl_rf", "js_rr", "js_rf", "l1_rr", "l1_rf", "l2_rr", "l2_rf"}


def np_density(image: np.ndarray) -> np.ndarray:
    hist, _ = np.histogram(np.clip(image, 0, 1), bins=100, range=(0, 1), density=True)
    return hist + 1e-3


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.trapezoid(p * np.log(p / q), dx=0.01))


def np_js(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    return 0.5 * np_kl(p, m) + 0.5 * np_kl(q, m)


def reference(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """The old tool's loop over ordered pairs i != j, one pair at a time."""
    sums = dict.fromkeys(KEYS, 0.0)
    n = len(real)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            for tag, other in (("rr", real[j]), ("rf", fake[j])):
                p, q = np_density(real[i]), np_density(other)
                sums[f"kl_{tag}"] += np_kl(p, q)
                sums[f"js_{tag}"] += np_js(p, q)
                sums[f"l1_{tag}"] += float(np.mean(np.abs(real[i] - other)))
                sums[f"l2_{tag}"] += float(np.mean((real[i] - other) ** 2))
    return {k: v / (n * (n - 1)) for k, v in sums.items()}


@pytest.mark.parametrize("size", [8, 16])
def test_matches_per_pair_reference(size: int):
    rng = np.random.default_rng(size)
    real = rng.random((4, 1, size, size))
    fake = rng.random((4, 1, size, size)) ** 2  # a different intensity distribution
    got = pair_divergences(torch.from_numpy(real), torch.from_numpy(fake))
    want = reference(real, fake)
    assert set(got) == KEYS
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_float32_input_matches_reference_on_the_same_values():
    rng = np.random.default_rng(0)
    real = rng.random((3, 1, 8, 8)).astype(np.float32)
    fake = rng.random((3, 1, 8, 8)).astype(np.float32)
    got = pair_divergences(torch.from_numpy(real), torch.from_numpy(fake))
    want = reference(real.astype(np.float64), fake.astype(np.float64))
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_constant_images_give_closed_form_values_and_skip_i_equals_j():
    # real = [black, white], fake == real: the only rf pairs are (black, white) and
    # (white, black), so rf equals rr and is not zero.
    black, white = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    real = torch.stack([black, white])
    got = pair_divergences(real, real.clone())
    # Densities: 100 + 1e-3 in one end bin, 1e-3 elsewhere; only the two end bins
    # differ and each carries trapezoid weight dx / 2 = 0.005.
    kl = 0.005 * 100 * math.log(100.001 / 0.001)
    mid = (100.001 + 0.001) / 2
    js = 0.005 * (100.001 * math.log(100.001 / mid) + 0.001 * math.log(0.001 / mid))
    for tag in ("rr", "rf"):
        assert got[f"kl_{tag}"] == pytest.approx(kl, rel=1e-9)
        assert got[f"js_{tag}"] == pytest.approx(js, rel=1e-9)
        assert got[f"l1_{tag}"] == pytest.approx(1.0, rel=1e-12)
        assert got[f"l2_{tag}"] == pytest.approx(1.0, rel=1e-12)


def test_identical_images_give_zero():
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    real = image.repeat(3, 1, 1, 1)
    got = pair_divergences(real, real.clone())
    for key in KEYS:
        assert got[key] == pytest.approx(0.0, abs=1e-12), key


def test_fakes_far_from_reals_score_higher_than_reals_among_themselves():
    g = torch.Generator().manual_seed(3)
    real = torch.rand(4, 1, 8, 8, generator=g) * 0.5
    fake = 0.5 + torch.rand(4, 1, 8, 8, generator=g) * 0.5
    got = pair_divergences(real, fake)
    for name in ("kl", "js", "l1", "l2"):
        assert got[f"{name}_rf"] > got[f"{name}_rr"], name


def test_pixels_at_zero_and_one_land_in_end_bins():
    image = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 0.5, -0.2, 1.3]])
    counts = histogram_densities(image) * image.shape[1] / 100  # density -> counts
    expected = torch.zeros(1, 100, dtype=torch.float64)
    expected[0, 0] = 3  # two zeros and a clamped -0.2
    expected[0, 99] = 4  # three ones and a clamped 1.3
    expected[0, 50] = 1  # bins are left-closed: 0.5 starts bin 50
    torch.testing.assert_close(counts, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bin_membership_matches_numpy_on_bin_edges(dtype):
    edges = np.linspace(0, 1, 101)
    values = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1)])
    values = np.clip(values, 0, 1).astype(dtype)
    want, _ = np.histogram(values, bins=100, range=(0, 1))
    counts = histogram_densities(torch.from_numpy(values)[None])[0] * len(values) / 100
    np.testing.assert_array_equal(counts.round().long().numpy(), want)


def test_histograms_are_densities():
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    densities = histogram_densities(images)
    assert densities.shape == (3, 100)
    torch.testing.assert_close(densities.sum(dim=1) * 0.01, torch.ones(3, dtype=torch.float64))


def test_nan_image_gives_nan_instead_of_failing():
    real = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    fake = real.flip(0).clone()
    fake[1, 0, 2, 2] = float("nan")
    got = pair_divergences(real, fake)
    assert all(math.isnan(got[f"{name}_rf"]) for name in ("kl", "js", "l1", "l2"))
    assert all(math.isfinite(got[f"{name}_rr"]) for name in ("kl", "js", "l1", "l2"))


def test_single_image_batch_is_rejected():
    one = torch.rand(1, 1, 8, 8)
    with pytest.raises(RxwganError, match="at least 2 images"):
        pair_divergences(one, one)


def test_mismatched_batches_are_rejected():
    with pytest.raises(RxwganError, match="one shape"):
        pair_divergences(torch.rand(3, 1, 8, 8), torch.rand(2, 1, 8, 8))


def test_accepts_tensors_requiring_grad_and_returns_floats():
    real = torch.rand(2, 1, 8, 8, requires_grad=True)
    got = pair_divergences(real, real * 0.5)
    assert all(type(v) is float for v in got.values())
