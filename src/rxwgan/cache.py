"""Decode-once image cache, keyed by file content, target size and preprocessing version.

Entries are small uncompressed ``.npz`` files: NumPy's zip container checks a CRC on
read, so a truncated or bit-flipped entry is detected and rebuilt, never trusted.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

from rxwgan import atomic
from rxwgan.errors import RxwganError
from rxwgan.images import PREPROCESS_VERSION, load_image
from rxwgan.progress import progress_bar
from rxwgan.table import MAX_LISTED, md5_of_file

CACHE_ENV = "RXWGAN_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$RXWGAN_CACHE_DIR`` if set, else the user's cache folder (e.g. ~/.cache/rxwgan)."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("rxwgan")) / "images"


class ImageCache:
    """Decoded images on disk; ``load`` fills what is missing in parallel, then reads."""

    def __init__(self, root: str | Path | None = None, workers: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.workers = workers or min(8, os.cpu_count() or 1)

    def entry_path(self, md5: str, size: int) -> Path:
        return self.root / f"v{PREPROCESS_VERSION}" / f"{size}px" / md5[:2] / f"{md5}.npz"

    def load(self, paths: Sequence[Path], size: int, labels: Sequence[str] | None = None,
             progress: bool = True) -> np.ndarray:
        """All images as one float32 array (N, 1, size, size) in [-1, 1].

        Every unreadable file is reported at once, by ``labels`` (the table's row names),
        before anything is returned: a bad image stops the run here, not mid-training.
        """
        labels = list(labels) if labels is not None else [str(p) for p in paths]
        out = np.empty((len(paths), 1, size, size), dtype=np.float32)
        failures: list[str] = []

        def work(i: int) -> None:
            try:
                out[i, 0] = self._get(Path(paths[i]), size)
            except RxwganError as exc:
                failures.append(f"{labels[i]}: {exc}")
            except OSError as exc:
                failures.append(f"{labels[i]}: {paths[i]}: {exc.strerror or exc}")

        with ThreadPoolExecutor(self.workers) as pool:
            list(progress_bar(pool.map(work, range(len(paths))), total=len(paths),
                              desc=f"images {size}px", unit="img", leave=False,
                              disable=not progress or len(paths) < 64))
        if failures:
            failures.sort(key=_row_order)
            shown = "; ".join(failures[:MAX_LISTED])
            more = f"; and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
            raise RxwganError(f"{len(failures)} image(s) could not be decoded: {shown}{more}")
        return out

    def _get(self, path: Path, size: int) -> np.ndarray:
        entry = self.entry_path(md5_of_file(path), size)
        cached = _read_entry(entry, size)
        if cached is not None:
            return cached
        image = load_image(path, size)
        with atomic.atomic_path(entry) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, image=image)
        return image


def _read_entry(entry: Path, size: int) -> np.ndarray | None:
    """The cached image, or None when absent or damaged (then it is rebuilt)."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as archive:
            image = archive["image"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if image.shape != (size, size) or image.dtype != np.float32 or not np.isfinite(image).all():
        return None
    return image


def _row_order(message: str) -> tuple[int, str]:
    parts = message.split()
    if len(parts) > 1 and parts[0] == "row" and parts[1].isdigit():
        return int(parts[1]), message
    return 0, message
