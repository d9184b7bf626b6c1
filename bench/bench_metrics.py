"""Time the metrics: histogram divergences, feature extraction per space, FID+KID+PR.

- the old histogram/pixel divergences on a 16-image batch at 128 px, vectorised against
  a plain per-pair loop (bench_divergences does the measuring);
- seconds to fit each available feature space on 200 phantoms and to extract features of
  1000 images at 128 px (spaces whose package or weights are missing are reported so);
- FID, KID and precision/recall/density/coverage of 1000 against 1000 feature vectors,
  in the trained space (248-d) and at the pretrained spaces' widths (1024-d, 2048-d,
  Gaussian stand-ins: the distances' cost depends on the sizes only).

``run()`` returns the figures for bench/run.py; run as a script it prints them.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from pathlib import Path

import torch

from rxwgan.base.errors import RxwganError
from rxwgan.data.phantoms import write_demo_data
from rxwgan.metrics import FEATURE_SPACES, feature_distances
from rxwgan.metrics.sources import table_images
from rxwgan.metrics.space_builder import resolve_space

HERE = Path(__file__).resolve().parent


def _bench_divergences():
    spec = importlib.util.spec_from_file_location("bench_divergences", HERE / "bench_divergences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - start, 3)


def _thousand(images: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` distinct-looking images from fewer: flips and small rolls of the originals."""
    variants = [images, images.flip(-1), images.roll(2, -1), images.flip(-1).roll(-2, -2), images.roll(3, -2)]
    return torch.cat(variants)[:n]


def _spaces(real, images: torch.Tensor, cache: Path) -> dict:
    figures = {}
    for name in FEATURE_SPACES:
        start = time.perf_counter()
        try:
            space, _ = resolve_space(name, real.fit_images, real.fit_labels, seed=0, cache_dir=cache)
        except RxwganError as exc:
            figures[name] = {"unavailable": str(exc)}
            continue
        fit_s = round(time.perf_counter() - start, 3)
        space(images[:8])  # warm-up: first-call allocations
        _, extract_s = _timed(lambda s=space: s(images))
        figures[name] = {"dim": space.dim, "fit_s": fit_s, "extract_1000_s": extract_s,
                         "images_per_s": round(len(images) / extract_s, 1)}
    return figures


def _distances(real: torch.Tensor, fake: torch.Tensor) -> dict:
    _, fid_s = _timed(lambda: feature_distances.fid(real, fake))
    kid, kid_s = _timed(lambda: feature_distances.kid(real, fake))
    _, prdc_s = _timed(lambda: feature_distances.prdc(real, fake))
    return {"fid_s": fid_s, "kid_s": kid_s, "kid_subset_size": kid[2], "prdc_s": prdc_s,
            "total_s": round(fid_s + kid_s + prdc_s, 3)}


def run(n: int = 1000, size: int = 128, seed: int = 0) -> dict:
    figures: dict = {"torch_threads": torch.get_num_threads()}
    figures["hist_16_at_128px"] = _bench_divergences().run(n_images=16, size=128, repeats=10)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        csv = write_demo_data(Path(tmp) / "data", n_images=200, size=size, seed=seed)
        real = table_images(csv, size, cache_dir=cache)
        images = _thousand(real.images, n)
        figures["spaces_at_128px"] = _spaces(real, images, cache)
        trained, _ = resolve_space("trained", real.fit_images, real.fit_labels, seed=0, cache_dir=cache)
        real_features = trained(images)
        fake_features = trained(images.flip(-2))
    # Distances (torchmetrics' first call also imports it: warm up once).
    feature_distances.fid(real_features[:10], fake_features[:10])
    feature_distances.kid(real_features[:10], fake_features[:10])
    figures["fid_kid_prdc_1000_vs_1000"] = {"trained_248d": _distances(real_features, fake_features)}
    g = torch.Generator().manual_seed(seed)
    for dim in (1024, 2048):
        a = torch.randn(n, dim, generator=g, dtype=torch.float64)
        b = torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.1
        figures["fid_kid_prdc_1000_vs_1000"][f"gaussian_{dim}d"] = _distances(a, b)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
