"""How good are synthetic X-rays: FID, KID, precision/recall, density/coverage, histograms.

One entry point, ``compute_metrics(real, fake, metrics=[...], features=...) -> dict``, in
the spirit of torch-fidelity; ``evaluate_generator`` is its fast form for the training
loop. Sets may be tables, folders of images, generator files or tensors
(``rxwgan.metrics.sources``), metrics are registered by name (``metric_registry``), feature
spaces registered by name (``space_registry``) and built by ``space_builder``, and the real
set's features are cached by content (``stats_cache``).

Every result carries its sample sizes and feature space, and notes where a number is
weak: an FID from fewer real images than feature dimensions comes from a rank-deficient
covariance and is flagged, with KID recommended instead.
"""

from __future__ import annotations

import importlib
from typing import Any

from rxwgan.metrics.space_registry import space_names

__all__ = [
    "DEFAULT_METRICS",
    "FEATURE_SPACES",
    "available_metrics",
    "compute_metrics",
    "evaluate_generator",
    "versions",
]
# Imported on first use: reading the space registry (as the CLI does) must not import torch.
_LAZY = {"compute_metrics": "compute", "evaluate_generator": "compute", "versions": "compute",
         "DEFAULT_METRICS": "metric_registry", "available_metrics": "metric_registry"}
FEATURE_SPACES = space_names()


def __getattr__(name: str) -> Any:
    """The torch-using names of ``__all__``, from their modules."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
