"""Metrics registered by name: what each computes, from what, and under which output keys.

A metric takes ``MetricInputs`` (both sets' features and pixels, and the options) and
returns a flat dict of numbers. ``--metrics fid,kid,pr,dc,hist`` picks them; single
names such as ``precision`` or ``coverage`` select the metric that reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import Tensor

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import DIVERGENCE_KEYS
from rxwgan.metrics import feature_distances


@dataclass
class MetricInputs:
    """Everything a metric may use; ``*_features`` are None when no metric needs them."""

    real_images: Tensor
    fake_images: Tensor
    real_features: Tensor | None = None
    fake_features: Tensor | None = None
    train_images: Tensor | None = None  # the generator's training images (memorisation only)
    train_features: Tensor | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)  # results one metric computes for another


@dataclass(frozen=True)
class Metric:
    name: str
    keys: tuple[str, ...]
    uses_features: bool
    summary: str
    compute: Callable[[MetricInputs], dict[str, float]]
    needs_train: bool = False  # needs the generator's training images besides the two sets


METRICS: dict[str, Metric] = {}
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "hist")


def register(name: str, keys: tuple[str, ...], summary: str, uses_features: bool = True,
             needs_train: bool = False):
    """Decorator adding a metric under ``name``; its keys become aliases too."""

    def decorator(fn: Callable[[MetricInputs], dict[str, float]]):
        METRICS[name] = Metric(name, keys, uses_features, summary, fn, needs_train)
        return fn

    return decorator


def available_metrics() -> list[str]:
    return list(METRICS)


def resolve_metrics(names: str | Iterable[str], flag: str = "--metrics") -> list[Metric]:
    """Metrics for names like ``"fid,kid"`` or ``["pr", "coverage"]``, each once, in order;
    ``flag``: the option the names came from, for the error."""
    if isinstance(names, str):
        names = names.split(",")
    by_key = {key: metric for metric in METRICS.values() for key in metric.keys}
    chosen: list[Metric] = []
    unknown = []
    for raw in names:
        name = raw.strip().lower()
        if name == "prdc":
            candidates = [METRICS["pr"], METRICS["dc"]]
        elif name in METRICS:
            candidates = [METRICS[name]]
        elif name in by_key:
            candidates = [by_key[name]]
        else:
            unknown.append(raw.strip() or "''")
            continue
        chosen += [metric for metric in candidates if metric not in chosen]
    if unknown or not chosen:
        raise RxwganError(f"{flag}: unknown metric(s) {', '.join(unknown) or 'none given'} "
                          f"(available: {', '.join(METRICS)}, or prdc)")
    return chosen


@register("fid", ("fid",), "Fréchet distance between Gaussians fitted to the features (lower is better)")
def _fid(inputs: MetricInputs) -> dict[str, float]:
    return {"fid": feature_distances.fid(inputs.real_features, inputs.fake_features)}


@register("kid", ("kid", "kid_std", "kid_subset_size"),
          "unbiased kernel distance, mean and std over subsets (lower is better; ~0 for equal sets)")
def _kid(inputs: MetricInputs) -> dict[str, float]:
    mean, std, size = feature_distances.kid(inputs.real_features, inputs.fake_features,
                                    subsets=inputs.options.get("kid_subsets", feature_distances.KID_SUBSETS),
                                    subset_size=inputs.options.get("kid_subset_size"), seed=inputs.seed)
    return {"kid": mean, "kid_std": std, "kid_subset_size": size}


@register("pr", ("precision", "recall"),
          "k-NN manifold precision (fakes on the real manifold) and recall (reals covered)")
def _pr(inputs: MetricInputs) -> dict[str, float]:
    values = _prdc(inputs)
    return {"precision": values["precision"], "recall": values["recall"]}


@register("dc", ("density", "coverage"),
          "density (fakes per real k-NN ball, ~1 when matched) and coverage (reals with a fake nearby)")
def _dc(inputs: MetricInputs) -> dict[str, float]:
    values = _prdc(inputs)
    return {"density": values["density"], "coverage": values["coverage"]}


def _prdc(inputs: MetricInputs) -> dict[str, float]:
    """One k-NN computation serves both ``pr`` and ``dc``."""
    if "prdc" not in inputs.shared:
        inputs.shared["prdc"] = feature_distances.prdc(inputs.real_features, inputs.fake_features,
                                               inputs.options.get("nearest_k", feature_distances.NEAREST_K))
    return inputs.shared["prdc"]


@register("hist", (*DIVERGENCE_KEYS, "hist_n"),
          "the old tool's intensity-histogram kl/js and pixel l1/l2, mean over image pairs",
          uses_features=False)
def _hist(inputs: MetricInputs) -> dict[str, float]:
    values, n = feature_distances.hist(inputs.real_images, inputs.fake_images,
                               inputs.options.get("hist_max_images", feature_distances.HIST_MAX_IMAGES),
                               seed=inputs.seed)
    return {**values, "hist_n": n}


@register("c2st", ("c2st_accuracy", "c2st_n"),
          "classifier two-sample test: 5-fold accuracy of a logistic regression telling real from "
          "synthetic on 16x16 pixels (0.5: indistinguishable)", uses_features=False)
def _c2st(inputs: MetricInputs) -> dict[str, float]:
    from rxwgan.metrics.two_sample import c2st_accuracy

    accuracy, n = c2st_accuracy(inputs.real_images, inputs.fake_images, seed=inputs.seed)
    return {"c2st_accuracy": accuracy, "c2st_n": n}


MEMORISATION_SCORES = ("near_copies", "near_copies_unseen", "threshold", "near_copies_p", "authenticity",
                       "authenticity_unseen", "median_distance", "median_distance_unseen")
# Feature-space scores under their own names, pixel-space ones prefixed ``pixel_``.
MEMORISATION_KEYS = (*MEMORISATION_SCORES, *(f"pixel_{key}" for key in MEMORISATION_SCORES), "n_train")


@register("memorisation", MEMORISATION_KEYS,
          "near copies: share of synthetic images closer to a training image than 95% of unseen real "
          "images are (unseen: the reference), and authenticity (Alaa et al. 2022), in the feature "
          "space and in pixels", needs_train=True)
def _memorisation(inputs: MetricInputs) -> dict[str, float]:
    from rxwgan.metrics.nearest_neighbours import memorisation_in_both

    if inputs.train_images is None:
        raise RxwganError("memorisation needs the generator's training images as well: "
                          "rxwgan evaluate --memorisation RUN_FOLDER finds them in the run")
    try:
        checked = memorisation_in_both((inputs.fake_images, inputs.train_images, inputs.real_images),
                                       (inputs.fake_features, inputs.train_features, inputs.real_features))
    except ValueError as exc:  # too few unseen rows once their twins are set aside
        raise RxwganError(str(exc)) from None
    inputs.shared["nearest_train"] = checked.nearest_train
    return {**checked.features, **{f"pixel_{key}": value for key, value in checked.pixels.items()},
            "n_train": len(inputs.train_images)}
