"""Time rxwgan.metrics.histogram_divergences.pair_divergences against a plain per-pair loop.

The history metrics run once per epoch on one batch; this checks they stay a small
fraction of a training step (~1-3 s on CPU). ``run()`` returns the figures for a bench
driver; run as a script it prints them on one line.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from rxwgan.metrics.histogram_divergences import pair_divergences


def _reference(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """The old tool's way: one numpy histogram and trapezoid per image of every ordered pair."""

    def density(image: np.ndarray) -> np.ndarray:
        return np.histogram(np.clip(image, 0, 1), bins=100, range=(0, 1), density=True)[0] + 1e-3

    def kl(p: np.ndarray, q: np.ndarray) -> float:
        return float(np.trapezoid(p * np.log(p / q), dx=0.01))

    sums: dict[str, float] = {}
    n = len(real)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            for tag, other in (("rr", real[j]), ("rf", fake[j])):
                p, q = density(real[i]), density(other)
                m = (p + q) / 2
                values = {
                    "kl": kl(p, q),
                    "js": 0.5 * kl(p, m) + 0.5 * kl(q, m),
                    "l1": float(np.mean(np.abs(real[i] - other))),
                    "l2": float(np.mean((real[i] - other) ** 2)),
                }
                for name, value in values.items():
                    sums[f"{name}_{tag}"] = sums.get(f"{name}_{tag}", 0.0) + value
    return {key: total / (n * (n - 1)) for key, total in sums.items()}


def _seconds(fn, repeats: int) -> tuple[float, float]:
    """(median, best) of ``repeats`` timed calls; the best is what a quiet machine gives."""
    fn()  # warm-up: first-call allocations and kernel selection are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def run(n_images: int = 16, size: int = 128, repeats: int = 20, seed: int = 0) -> dict:
    """Median and best times of both implementations on random [0, 1] images, and their gap."""
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n_images, 1, size, size, generator=g)
    fake = torch.rand(n_images, 1, size, size, generator=g).square()
    real_np, fake_np = real.double().numpy(), fake.double().numpy()

    vectorised = _seconds(lambda: pair_divergences(real, fake), repeats)
    reference = _seconds(lambda: _reference(real_np, fake_np), max(1, repeats // 10))
    got, want = pair_divergences(real, fake), _reference(real_np, fake_np)
    max_rel_diff = max(abs(got[k] - want[k]) / abs(want[k]) for k in want)
    return {
        "n_images": n_images,
        "size": size,
        "torch_threads": torch.get_num_threads(),
        "vectorised_ms": vectorised[0] * 1e3,
        "vectorised_best_ms": vectorised[1] * 1e3,
        "reference_ms": reference[0] * 1e3,
        "reference_best_ms": reference[1] * 1e3,
        "speedup": reference[0] / vectorised[0],
        "speedup_best": reference[1] / vectorised[1],
        "max_rel_diff": max_rel_diff,
    }


if __name__ == "__main__":
    r = run()
    print(
        f"pair_divergences N={r['n_images']} {r['size']}px ({r['torch_threads']} threads): "
        f"vectorised {r['vectorised_ms']:.1f} ms (best {r['vectorised_best_ms']:.1f}), "
        f"per-pair loop {r['reference_ms']:.0f} ms (best {r['reference_best_ms']:.0f}), "
        f"speed-up x{r['speedup']:.0f} (best-to-best x{r['speedup_best']:.0f}), "
        f"max rel diff {r['max_rel_diff']:.1e}"
    )
