"""``compute_metrics`` and ``evaluate_generator``: the metrics package's entry points.

Kept apart from the package's ``__init__`` so that importing ``rxwgan.metrics`` (as the
CLI does to read the feature-space registry) does not import torch.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rxwgan.base.errors import RxwganError
from rxwgan.metrics.feature_distances import HIST_MAX_IMAGES, KID_SUBSETS, NEAREST_K
from rxwgan.metrics.metric_registry import DEFAULT_METRICS, MetricInputs, resolve_metrics
from rxwgan.metrics.sources import (
    DEFAULT_SIZE,
    ImageSet,
    load_images,
    native_size,
    sample_generator,
    tensor_images,
)
from rxwgan.metrics.space_builder import FeatureSpace, resolve_space
from rxwgan.metrics.space_registry import is_fitted
from rxwgan.metrics.stats_cache import FeatureCache, images_md5


def compute_metrics(
    real: Any,
    fake: Any,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    features: str | FeatureSpace = "auto",
    *,
    weights: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    nearest_k: int = NEAREST_K,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int | None = None,
    hist_max_images: int = HIST_MAX_IMAGES,
    real_key: str | None = None,
    train: Any = None,
    **table_options: Any,
) -> dict[str, Any]:
    """Compare a real and a fake set; return every number with its sample sizes.

    ``real``/``fake``: a table (.csv; ``table_options`` select split, partition and
    target of the real one), a folder of images, a generator file or module (``n``
    samples with ``seed``, 1000 by default), a tensor (N, 1, S, S) in [-1, 1], or an
    ``ImageSet``. Images are compared at ``size`` px (default: the generator's or
    tensor's size, else 128). ``features``: ``auto``, a registered space name, a
    feature-space file (``save_space``) or a built ``FeatureSpace``. ``cache``: reuse the
    real set's features from the cache, keyed by the MD5 of its pixels (``real_key``: that
    MD5 when already known). ``precision``: of a generator's forward passes (fp32, bf16).
    ``train``: the generator's training images (any of the
    forms above), which ``memorisation`` needs; ``real`` is then the rows it never saw.

    The result holds the metric values (``fid``, ``kid``, ``kid_std``, ``precision``, ...),
    ``n_real``, ``n_fake``, ``image_size``, ``features``, ``space_id`` (the id every
    feature-space number belongs to), ``feature_dim``, ``notes`` (one line each), and
    descriptions of both sets and of the feature space (what it was fitted on included).
    With ``memorisation``: ``n_train``, the training set's description, and
    ``nearest_train``: (distance, index) of each fake's nearest training image in pixels.
    """
    chosen = resolve_metrics(metrics)
    size = size or native_size(fake) or native_size(real) or DEFAULT_SIZE
    real_set = load_images(real, size, seed=seed, with_fit=True, cache_dir=cache_dir, device=device,
                           **table_options)
    fake_set = load_images(fake, size, n=n, seed=seed, cache_dir=cache_dir, device=device,
                           precision=precision)
    _check_finite(real_set, "real")
    _check_finite(fake_set, "fake")
    train_set = None
    if any(metric.needs_train for metric in chosen) and train is not None:
        train_set = load_images(train, size, cache_dir=cache_dir, device=device)
        _check_finite(train_set, "training")
    notes: list[str] = []
    inputs = MetricInputs(real_set.images, fake_set.images, seed=seed,
                          options={"nearest_k": nearest_k, "kid_subsets": kid_subsets,
                                   "kid_subset_size": kid_subset_size, "hist_max_images": hist_max_images})
    space = None
    if any(metric.uses_features for metric in chosen):
        space = _space(features, real_set, seed, weights, cache_dir, device, real_key, notes)
        inputs.real_features = _real_features(space, real_set, cache, cache_dir, real_key)
        inputs.fake_features = space(fake_set.images)
    if train_set is not None:
        inputs.train_images = train_set.images
        if space is not None:
            inputs.train_features = _real_features(space, train_set, cache, cache_dir, None)

    result: dict[str, Any] = {}
    for metric in chosen:
        result.update(metric.compute(inputs))
    n_real, n_fake = len(real_set), len(fake_set)
    result.update({"n_real": n_real, "n_fake": n_fake, "image_size": size})
    if space is not None:
        result.update({"features": space.name, "space_id": space.key, "feature_dim": space.dim})
    if any(metric.name in ("pr", "dc") for metric in chosen):
        result["nearest_k"] = nearest_k
    notes += _caveats(result, chosen, space, kid_subsets)
    result["notes"] = notes
    result["sets"] = {"real": {"label": real_set.label, **real_set.info},
                      "fake": {"label": fake_set.label, **fake_set.info}}
    if train_set is not None:
        result["sets"]["train"] = {"label": train_set.label, **train_set.info}
        result["nearest_train"] = inputs.shared["nearest_train"]
    if space is not None:
        result["feature_space"] = {"name": space.name, "key": space.key, "dim": space.dim,
                                   "description": space.description,
                                   "fitted_on": _fitted_on(space, real_set, features), **space.info}
    return result


def _space(features: str | FeatureSpace, real_set: ImageSet, seed: int, weights, cache_dir,
           device, real_key: str | None, notes: list[str]) -> FeatureSpace:
    if isinstance(features, FeatureSpace):
        notes.append(f"features: {features.name} (given)")
        return features
    fit_key = real_key if real_set.fit_images is real_set.images else None
    space, note = resolve_space(features, real_set.fit_images, real_set.fit_labels, seed=seed,
                                weights=weights, cache_dir=cache_dir, device=device, fit_key=fit_key)
    notes.append(note)
    return space


def _fitted_on(space: FeatureSpace, real_set: ImageSet, features: str | FeatureSpace) -> Any:
    """What the space was fitted on: as recorded with it, else the real set's rows when this
    call fitted it; None for pretrained spaces (or a given one that does not say)."""
    if "fitted_on" in space.info or isinstance(features, FeatureSpace) or not is_fitted(space.name):
        return space.info.get("fitted_on")
    info = real_set.info
    if info.get("kind") == "table":
        return {"table": info["path"], "rows": "every row of the table", "n_rows": info["table_rows"]}
    return {"rows": f"the real set ({real_set.label})", "n_rows": len(real_set)}


def _real_features(space: FeatureSpace, real_set: ImageSet, cache: bool, cache_dir,
                   real_key: str | None) -> Tensor:
    if not cache:
        return space(real_set.images)
    content = real_key or images_md5(real_set.images)
    features, _ = FeatureCache(cache_dir).get_or_compute(space.key, content,
                                                         lambda: space(real_set.images))
    return features


def _check_finite(found: ImageSet, role: str) -> None:
    if not torch.isfinite(found.images).all():
        raise RxwganError(f"{role} images contain NaN or infinite values ({found.label}): "
                          f"a diverged generator?")


def _caveats(result: dict[str, Any], chosen: list, space: FeatureSpace | None,
             kid_subsets: int) -> list[str]:
    """One line per limit a reader of these numbers must know."""
    notes = []
    n_real, n_fake = result["n_real"], result["n_fake"]
    names = {metric.name for metric in chosen}
    if "fid" in names and space is not None and min(n_real, n_fake) <= space.dim:
        notes.append(f"FID: the covariance of {min(n_real, n_fake)} images in {space.dim} feature "
                     f"dimensions is rank-deficient, so FID is biased and unstable at this size; "
                     f"rank generators by KID (unbiased) instead")
    if "kid" in names and result["kid_subset_size"] < 1000:
        notes.append(f"KID: subsets of {result['kid_subset_size']} of the {min(n_real, n_fake)} images "
                     f"in the smaller set; kid_std is the spread over {kid_subsets} such subsets, "
                     f"not a confidence interval")
    if "memorisation" in names:
        notes.append(f"memorisation: the near-copy threshold is the 5th percentile of {n_real} unseen "
                     f"images' distances to their nearest of {result['n_train']} training images"
                     + (" (a rough threshold from so few; its p-value allows for it)" if n_real < 40 else "")
                     + "; a nearest-neighbour test is evidence about copying, not a privacy guarantee")
    if space is not None and space.name == "random":
        notes.append("features random: an untrained network, for tests and gross failures only; "
                     "it can score visibly defective samples at the real-vs-real floor")
    if space is not None and space.name == "trained":
        notes.append("features trained: an in-domain space fitted to this table; numbers compare "
                     "generators with each other here, not with published values")
    return notes


def evaluate_generator(
    generator: nn.Module,
    real_images: Tensor,
    metrics: list[str],
    features: str | FeatureSpace = "auto",
    n: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of ``generator`` against ``real_images`` for the training loop, as flat numbers.

    ``n`` samples (default: as many as there are real images) from fixed latents
    (``seed``); the generator's train/eval mode and every global generator (CPU and CUDA)
    are left as found: the metrics draw only from generators of their own. ``features``:
    the run's space (``rxwgan.metrics.space_per_study.run_space``); a name fits ``trained`` on
    ``real_images`` themselves. The real images' features are cached by the MD5 of their
    pixels, hashed at every call: a set that changes under the same caller is never
    mistaken for the old one. A generator whose samples are not finite gets NaN for
    every metric instead of an error.
    """
    real = tensor_images(real_images, "real images").images
    sampled = tensor_images(sample_generator(generator, n or len(real), seed), "generator samples")
    if not torch.isfinite(sampled.images).all():
        keys = [key for metric in resolve_metrics(metrics) for key in metric.keys]
        return {key: math.nan for key in keys} | {"n_real": len(real), "n_fake": len(sampled)}
    device = next(generator.parameters()).device  # where xrv/inception features run
    result = compute_metrics(real, sampled, metrics, features, seed=seed, real_key=images_md5(real),
                             device=device)
    return {key: value for key, value in result.items() if isinstance(value, (int, float))}


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of everything that shapes the numbers, for the report."""
    found = {"python": platform.python_version()}
    for package in ("rxwgan", "torch", "numpy", "scipy", "scikit-learn", "torchmetrics", "prdc", *extra):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
