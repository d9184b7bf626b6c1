"""The twin search of ``table check`` on 100,000 images at their cached size, decoding excluded.

Generated 64 px images stand in for a cached table: a shared smooth "body" plus smooth random
fields at two scales, so that, as radiographs are, they look alike at a glance. One in a
hundred is then replaced by an exact copy of another image and one in a hundred by a near
copy (``near_copy``: gamma 0.95-1.05, noise 2, a shift of up to 1 px, as the twin phantoms'
follow-ups). Timed, as ``find_duplicates`` runs them once the images are in memory:
- exact: ``pixel_hash`` of every image (as decoding gives it: float32 in [0, 1]) and the groups;
- near: ``near_pairs`` over one image per exact group, and the connected groups.
Recall: the share of injected copies grouped with their source; stray: groups that join
images no injection links. In a fresh subprocess that reports its own peak resident memory.
``RXWGAN_BENCH_DEDUPE_N`` sets the number of images (default 100,000).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

N_IMAGES = int(os.environ.get("RXWGAN_BENCH_DEDUPE_N", "100000"))
SIZE = 64
COPY_SHARE = 0.01  # of the images, each of exact and of near copies


def run() -> dict:
    done = subprocess.run([sys.executable, __file__, "--cost"], capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu": _cpu_name(),
            "load_average_at_end": os.getloadavg()[0]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _images(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, SIZE, SIZE) uint8 images alike at a glance and distinct in their details."""
    import torch
    import torch.nn.functional as F

    ramp = np.linspace(-1.0, 1.0, SIZE)
    body = 170.0 * np.exp(-(ramp[None, :] ** 2 / 0.5 + ramp[:, None] ** 2 / 0.9) ** 2)
    out = np.empty((n, SIZE, SIZE), np.uint8)
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        fields = [F.interpolate(torch.from_numpy(rng.normal(0.0, scale, (count, 1, cells, cells))),
                                size=(SIZE, SIZE), mode="bicubic", align_corners=False)[:, 0].numpy()
                  for cells, scale in ((6, 25.0), (16, 12.0))]
        out[start:start + count] = np.clip(40.0 + body + fields[0] + fields[1], 0, 255).astype(np.uint8)
    return out


def _cost() -> dict:
    from rxwgan.data.cache import pixel_hash
    from rxwgan.data.duplicates import NEAR_THRESHOLD, exact_groups, near_groups, representatives
    from rxwgan.data.twin_phantoms import near_copy

    rng = np.random.default_rng(0)
    images = _images(N_IMAGES, rng)
    copies = rng.choice(N_IMAGES, 2 * round(COPY_SHARE * N_IMAGES), replace=False)
    exact_at, near_at = np.array_split(copies, 2)
    originals = np.setdiff1d(np.arange(N_IMAGES), copies)
    source = dict(zip(copies.tolist(), rng.choice(originals, len(copies)).tolist(), strict=True))
    for i in exact_at.tolist():
        images[i] = images[source[i]]
    for i in near_at.tolist():
        images[i] = near_copy(images[source[i]], rng, gamma=rng.uniform(0.95, 1.05), max_shift=1)
    rss_before = _peak_rss_mb()

    start = time.perf_counter()
    hashes = [pixel_hash(image.astype(np.float32) / 255.0) for image in images]
    exact = exact_groups(hashes)
    exact_s = time.perf_counter() - start

    start = time.perf_counter()
    kept = representatives(hashes)
    near = near_groups(hashes, kept, images[kept].astype(np.float32), NEAR_THRESHOLD)
    near_s = time.perf_counter() - start

    group_of = {i: g for g, group in enumerate(near) for i in group}
    found = [i in group_of and group_of[i] == group_of.get(source[i]) for i in near_at.tolist()]
    family = {i: source.get(i, i) for i in range(N_IMAGES)}
    return {
        "images": N_IMAGES, "size_px": SIZE, "injected_exact": len(exact_at), "injected_near": len(near_at),
        "threshold": NEAR_THRESHOLD,
        "exact_search_s": round(exact_s, 1), "exact_groups": len(exact),
        "exact_recall": round(sum(len(g) - 1 for g in exact) / len(exact_at), 4),
        "near_search_s": round(near_s, 1), "near_groups": len(near),
        "near_recall": round(float(np.mean(found)), 4),
        "stray_groups": sum(len({family[i] for i in group}) > 1 for group in near),
        "peak_rss_mb_images_only": round(rss_before), "peak_rss_mb": round(_peak_rss_mb()),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    if sys.argv[1:] == ["--cost"]:
        print(json.dumps(_cost()))
    else:
        print(json.dumps(run(), indent=1))
