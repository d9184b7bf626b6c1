"""Decode-once image cache, keyed by file content, target size, depth and preprocessing version.

Entries are small uncompressed ``.npz`` files: NumPy's zip container checks a CRC on
read, so a truncated or bit-flipped entry is detected and rebuilt, never trusted. Every
decode also remembers the hash of the file's full-resolution pixels (``pixel_hash``), so
that finding identical images (``rxwgan.data.duplicates``) decodes nothing again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.progress import progress_bar
from rxwgan.data.images import (
    PREPROCESS_VERSION,
    Depth,
    ImageHeader,
    check_bit_depth,
    decode_unit,
    model_image,
    pixel_peak,
    read_header,
    round_depth,
)
from rxwgan.data.table import MAX_LISTED, Table, md5_of_file

CACHE_ENV = "RXWGAN_CACHE_DIR"
PIXEL_HASH_FOLDER = "pixel_hashes"  # beside the entries: each file's full-resolution pixel hash


def pixel_hash(pixels: np.ndarray) -> str:
    """A digest of an array's values, shape and type: equal exactly when the pixels are."""
    digest = hashlib.blake2b(f"{pixels.shape}{pixels.dtype}".encode(), digest_size=16)
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$RXWGAN_CACHE_DIR`` if set, else the user's cache folder (e.g. ~/.cache/rxwgan)."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("rxwgan")) / "images"


class ImageCache:
    """Decoded images on disk; ``load`` fills what is missing in parallel, then reads."""

    def __init__(self, root: str | Path | None = None, workers: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.workers = workers or min(8, os.cpu_count() or 1)

    def entry_path(self, md5: str, size: int, bits: int | None = None) -> Path:
        """Where one decoded image lives; a wide image's depth is part of its name.

        Entries of wide images made before depths existed (always /65535) carry no depth
        in their name, so they are never reused; 8-bit entries stay valid, hence the
        same PREPROCESS_VERSION.
        """
        name = f"{md5}-{bits}bit.npz" if bits else f"{md5}.npz"
        return self.root / f"v{PREPROCESS_VERSION}" / f"{size}px" / md5[:2] / name

    def headers(self, paths: Sequence[Path]) -> list[ImageHeader | None]:
        """Every file's header, read in parallel; None for a file that is not a readable image."""
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(_header_or_none, paths))

    def bit_depths(self, paths: Sequence[Path], bit_depth: int | None = None,
                   headers: Sequence[ImageHeader | None] | None = None) -> list[Depth | None]:
        """The depth each wide (over 8-bit) image decodes at; None where no depth applies.

        ``bit_depth`` forces one; else a PNG's sBIT chunk; else the table's depth, the
        smallest of 8/10/12/14/16 bits that holds the largest pixel of every such image
        (one scale for the whole table; each image's peak is remembered by content).
        Unreadable files get None here and are reported when decoded. ``headers``: from
        ``headers(paths)`` when the caller has them already.
        """
        check_bit_depth(bit_depth)
        headers = self.headers(paths) if headers is None else headers
        if bit_depth is not None:
            return [Depth(bit_depth, "--bit-depth") if h and h.wide else None for h in headers]
        unmarked = [p for p, h in zip(paths, headers, strict=True) if h and h.wide and not h.significant_bits]
        with ThreadPoolExecutor(self.workers) as pool:
            peak = max(pool.map(self._peak, unmarked), default=0)
        table = Depth(round_depth(peak), f"table maximum {peak}")
        return [None if not (h and h.wide) else
                Depth(h.significant_bits, "sBIT") if h.significant_bits else table for h in headers]

    def load(self, paths: Sequence[Path], size: int, labels: Sequence[str] | None = None,
             progress: bool = True, bit_depth: int | None = None,
             depths: Sequence[Depth | None] | None = None) -> np.ndarray:
        """All images as one float32 array (N, 1, size, size) in [-1, 1].

        ``depths``: from ``bit_depths`` over the whole table when loading part of it
        (default: over ``paths``, with ``bit_depth`` forced). Every unreadable file is
        reported at once, by ``labels`` (the table's row names), before anything is
        returned: a bad image stops the run here, not mid-training.
        """
        out = np.empty((len(paths), 1, size, size), dtype=np.float32)
        failures = self._fill(paths, size, labels, progress, bit_depth, depths, out)
        if failures:
            shown = "; ".join(failures[:MAX_LISTED])
            more = f"; and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
            raise RxwganError(f"{len(failures)} image(s) could not be decoded: {shown}{more}")
        return out

    def load_rows(self, table: Table, size: int, positions: Sequence[int] | None = None,
                  progress: bool = True, bit_depth: int | None = None) -> np.ndarray:
        """The images of ``table``'s rows at ``positions`` (default all), named by row in errors.

        Wide images decode at one depth found over the whole table (``bit_depth`` forces
        it), so training and validation rows share a scale.
        """
        positions = list(range(len(table))) if positions is None else [int(p) for p in positions]
        paths = table.paths
        depths = self.bit_depths(paths, bit_depth)
        return self.load([paths[p] for p in positions], size, [table.row_label(p) for p in positions],
                         progress, depths=[depths[p] for p in positions])

    def fill(self, paths: Sequence[Path], size: int, labels: Sequence[str] | None = None,
             progress: bool = True, depths: Sequence[Depth | None] | None = None) -> list[str]:
        """Decode into the cache what it lacks, keeping nothing in memory (``table check``).

        Returns one message per undecodable file, in row order, instead of raising.
        """
        return self._fill(paths, size, labels, progress, None, depths, None)

    def _fill(self, paths: Sequence[Path], size: int, labels: Sequence[str] | None, progress: bool,
              bit_depth: int | None, depths: Sequence[Depth | None] | None,
              out: np.ndarray | None) -> list[str]:
        labels = list(labels) if labels is not None else [str(p) for p in paths]
        if depths is None:
            depths = self.bit_depths(paths, bit_depth)
        failures: list[str] = []

        def work(i: int) -> None:
            depth = depths[i]
            try:
                image = self._get(Path(paths[i]), size, depth.bits if depth else None)
            except RxwganError as exc:
                failures.append(f"{labels[i]}: {exc}")
                return
            except OSError as exc:
                failures.append(f"{labels[i]}: {paths[i]}: {exc.strerror or exc}")
                return
            if out is not None:
                out[i, 0] = image

        with ThreadPoolExecutor(self.workers) as pool:
            list(progress_bar(pool.map(work, range(len(paths))), total=len(paths),
                              desc=f"images {size}px", unit="img", leave=False,
                              disable=not progress or len(paths) < 64))
        return sorted(failures, key=_row_order)

    def _get(self, path: Path, size: int, bits: int | None) -> np.ndarray:
        entry = self.entry_path(md5_of_file(path), size, bits)
        cached = _read_entry(entry, size)
        if cached is not None:
            return cached
        unit = decode_unit(path, bits)
        self._remember_hash(path, bits, unit)
        image = model_image(unit, size)
        with atomic.atomic_path(entry) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, image=image)
        return image

    def pixel_hash(self, path: Path, bits: int | None = None) -> str | None:
        """``pixel_hash`` of the file decoded at ``bits`` (None where it cannot be decoded),
        remembered by content: files of the same bytes, and later calls, decode nothing."""
        memo = self._hash_path(md5_of_file(path), bits)
        known = memo.read_text().strip() if memo.is_file() else ""
        if len(known) == 32 and all(c in "0123456789abcdef" for c in known):
            return known
        try:
            return self._remember_hash(path, bits, decode_unit(path, bits))
        except (RxwganError, OSError):
            return None

    def _remember_hash(self, path: Path, bits: int | None, unit: np.ndarray) -> str:
        digest = pixel_hash(unit)
        atomic.write_text(self._hash_path(md5_of_file(path), bits), digest)
        return digest

    def _hash_path(self, md5: str, bits: int | None) -> Path:
        name = f"{md5}-{bits}bit.txt" if bits else f"{md5}.txt"
        return self.root / f"v{PREPROCESS_VERSION}" / PIXEL_HASH_FOLDER / md5[:2] / name

    def _peak(self, path: Path) -> int:
        """A wide image's largest pixel, remembered by content (0 when unreadable)."""
        try:
            md5 = md5_of_file(path)
            memo = self.root / "peaks" / md5[:2] / f"{md5}.txt"
            known = memo.read_text().strip() if memo.is_file() else ""
            if known.isdigit():
                return int(known)
            peak = pixel_peak(path)
        except (RxwganError, OSError):
            return 0  # decoding the file reports it
        atomic.write_text(memo, str(peak))
        return peak


def _header_or_none(path: Path) -> ImageHeader | None:
    try:
        return read_header(path)
    except (RxwganError, OSError):
        return None


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
