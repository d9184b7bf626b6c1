"""A phantom table with the flaws of real collections: patients with several images, exact
twins and blank images.

Real chest X-ray tables hold the same study exported twice (same pixels, other file), blank
or test images, and follow-ups of one patient that barely changed; folds drawn per image
then put one patient on both sides of a split. This writes such a table from the phantoms of
``rxwgan.data.phantoms``, with a ``patient_id`` column, so that duplicate detection, grouped
folds and the memorisation check are tested on the data they are for. Another seed gives
other patients; its blank images are exact twins of this one's, as blanks are in real data.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.data.phantoms import MIN_SIZE, render_phantom

PATIENT_COLUMN = "patient_id"
IMAGES_PER_PATIENT = (1, 2, 3, 4, 5)
IMAGES_PER_PATIENT_WEIGHTS = (0.4, 0.25, 0.15, 0.1, 0.1)
BLANK_LEVEL = 0  # a blank film: every pixel black


def near_copy(image: np.ndarray, rng: np.random.Generator, gamma: float = 1.0, noise: float = 2.0,
              max_shift: int = 0) -> np.ndarray:
    """``image`` (uint8) re-windowed by ``gamma``, shifted by up to ``max_shift`` px and with
    Gaussian noise of ``noise`` grey levels: a follow-up that barely changed, or a disguised copy."""
    out = 255.0 * (image.astype(np.float64) / 255.0) ** gamma
    if max_shift:
        shift = tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
        out = np.roll(out, shift, axis=(0, 1))
    out = out + rng.normal(0.0, noise, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_twin_table(out_dir: str | os.PathLike, n_patients: int = 100, size: int = 64, seed: int = 0,
                     blank_share: float = 0.08, reexport_share: float = 0.05) -> Path:
    """Write a twin-rich phantom table (``table.csv`` and ``images/``); return its path.

    Each patient has one to five images (a phantom and near copies of it: follow-ups), of one
    class. Then ``reexport_share`` of the rows are exported again under another name (same
    pixels, other PNG bytes: exact twins of one patient) and ``blank_share`` of them are added
    as blank films, each its own patient, labelled normal (exact twins across patients). With
    the defaults about a sixth of the rows have an exact twin. Same arguments, same bytes.
    """
    if n_patients < 2 or size < MIN_SIZE:
        raise RxwganError(f"twin phantoms: need at least 2 patients and {MIN_SIZE} px, not {n_patients} "
                          f"and {size}")
    if not (0 <= blank_share < 1 and 0 <= reexport_share < 1):
        raise RxwganError("twin phantoms: blank_share and reexport_share must be within 0..1")
    out = Path(out_dir)
    meta_seed, *patient_seeds = np.random.SeedSequence(seed).spawn(n_patients + 1)
    meta = np.random.default_rng(meta_seed)
    images: list[tuple[np.ndarray, str, int, str]] = []  # pixels, patient, target, what it is
    for p, patient_seed in enumerate(patient_seeds):
        rng = np.random.default_rng(patient_seed)
        target = int(rng.random() < 0.5)
        count = int(rng.choice(IMAGES_PER_PATIENT, p=IMAGES_PER_PATIENT_WEIGHTS))
        first = render_phantom(size, target, rng)
        patient = f"S{seed}-P{p:04d}"
        images.append((first, patient, target, "first image"))
        images += [(near_copy(first, rng, gamma=rng.uniform(0.95, 1.05), max_shift=1), patient, target,
                    "follow-up") for _ in range(count - 1)]
    n_rows = len(images)
    for i in sorted(meta.choice(n_rows, round(reexport_share * n_rows), replace=False).tolist()):
        pixels, patient, target, _ = images[i]
        images.append((pixels, patient, target, "exported again"))
    blank = np.full((size, size), BLANK_LEVEL, dtype=np.uint8)
    images += [(blank, f"S{seed}-B{j:03d}", 0, "blank film") for j in range(round(blank_share * n_rows))]
    rows = []
    for row, index in enumerate(meta.permutation(len(images)).tolist()):
        pixels, patient, target, what = images[index]
        relative = f"images/twin_{seed}_{row:04d}_{target}.png"
        data = _png_bytes(pixels, compress_level=1 if what == "exported again" else 6)
        atomic.write_bytes(out / relative, data)
        rows.append({"target": target, "image_ID": Path(relative).stem, "raw_image_path": relative,
                     "raw_image_md5": hashlib.md5(data).hexdigest(), PATIENT_COLUMN: patient,
                     "age": int(meta.integers(18, 81)), "sex": str(meta.choice(["M", "F"])), "comment": what})
    table_path = out / "table.csv"
    atomic.write_text(table_path, pd.DataFrame(rows).to_csv(index=True))
    return table_path


def _png_bytes(image: np.ndarray, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
