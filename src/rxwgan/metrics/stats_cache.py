"""On-disk caches of the metrics: reference features of real sets, and trained encoders.

Like the image cache, entries are keyed by content (an MD5 of the decoded image tensor),
so evaluating 100 generators against one validation set extracts its features once, and
two studies on one table share one trained encoder. Entries are safetensors files
written atomically; a damaged or foreign entry is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from platformdirs import user_cache_dir
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from rxwgan.base.atomic import atomic_path
from rxwgan.data.cache import CACHE_ENV

FEATURES_VERSION = 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where the metrics cache lives: ``cache_dir`` if given, else beside the image cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("rxwgan"))


def images_md5(images: Tensor, labels: np.ndarray | None = None) -> str:
    """MD5 of a set's decoded pixels (float32, C order, with its shape) and labels."""
    array = images.detach().to("cpu", torch.float32).contiguous().numpy()
    digest = hashlib.md5(str(tuple(array.shape)).encode())
    digest.update(array.tobytes())
    if labels is not None:
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Features of real sets per feature space: ``<root>/features/<space>/<md5>.safetensors``."""

    def __init__(self, cache_dir: str | Path | None = None):
        self.root = cache_root(cache_dir) / "features" / f"v{FEATURES_VERSION}"

    def entry(self, space_key: str, content_md5: str) -> Path:
        return self.root / _safe_name(space_key) / f"{content_md5}.safetensors"

    def get_or_compute(self, space_key: str, content_md5: str,
                       compute: Callable[[], Tensor]) -> tuple[Tensor, bool]:
        """(features, True) from the cache, or (computed and stored features, False)."""
        path = self.entry(space_key, content_md5)
        cached = _read_features(path, space_key)
        if cached is not None:
            return cached, True
        features = compute().detach().to("cpu", torch.float64).contiguous()
        with atomic_path(path) as tmp:
            save_file({"features": features}, str(tmp), metadata={"space": space_key})
        return features, False


def _read_features(path: Path, space_key: str) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("space") != space_key:
                return None
            features = handle.get_tensor("features")
    except (SafetensorError, OSError, ValueError):
        return None
    if features.dim() != 2 or not torch.isfinite(features).all():
        return None
    return features


def encoder_path(cache_dir: str | Path | None, key: str) -> Path:
    return cache_root(cache_dir) / "encoders" / f"{_safe_name(key)}.safetensors"


def save_state(path: Path, state: dict[str, Tensor], metadata: dict) -> None:
    tensors = {name: value.detach().cpu().contiguous() for name, value in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"info": json.dumps(metadata, sort_keys=True)})


def load_state(path: Path) -> tuple[dict[str, Tensor], dict] | None:
    """A saved state dict and its metadata, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = json.loads((handle.metadata() or {}).get("info", "{}"))
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError):
        return None


def _safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
