"""Decode radiographs (PNG 8/16-bit, JPEG, TIFF, DICOM) to one float channel.

Every format ends in the same place: a float32 square image in [-1, 1], the range of
the generator's tanh output, so real and fake images are compared on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rxwgan.errors import RxwganError

# Bump when decoding or resizing changes: cache entries made by another version are ignored.
PREPROCESS_VERSION = 1
DICOM_SUFFIXES = {".dcm", ".dicom"}


@dataclass(frozen=True)
class ImageHeader:
    """What `rxwgan table check` reports about an image without decoding its pixels."""

    width: int
    height: int
    bit_depth: int
    kind: str


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_header(path: str | Path) -> ImageHeader:
    """Size and bit depth of an image, read cheaply; RxwganError if it is not an image."""
    path = Path(path)
    try:
        if is_dicom(path):
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return ImageHeader(int(ds.Columns), int(ds.Rows), int(ds.BitsStored), "DICOM")
        with Image.open(path) as img:
            return ImageHeader(img.width, img.height, _pil_bit_depth(img), img.format or "?")
    except RxwganError:
        raise
    except Exception as exc:  # any decoder failure means the file is not a usable image
        raise RxwganError(f"{path}: not a readable image ({_reason(exc)})") from None


def _pil_bit_depth(img: Image.Image) -> int:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return 16
    if img.mode in ("I", "F"):
        return 32
    if img.mode == "1":
        return 1
    return 8


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def decode_unit(path: str | Path) -> np.ndarray:
    """Decode a file to a 2-D float32 array in [0, 1] at its own resolution."""
    path = Path(path)
    try:
        if is_dicom(path):
            return _decode_dicom(path)
        return _decode_pil(path)
    except RxwganError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise RxwganError(f"{path}: cannot decode image ({_reason(exc)})") from None


def _decode_pil(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
            img = img.convert("L")  # ITU-R 601 luminance; alpha dropped
        array = np.asarray(img)
    if array.ndim != 2:
        raise RxwganError(f"{path}: unsupported image layout {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        # Full-scale of the stored depth: 8-bit /255, 16-bit /65535 (PIL reads 16-bit PNG as I;16 or I).
        full_scale = 255.0 if array.dtype == np.uint8 else 65535.0
        return np.clip(array.astype(np.float32) / full_scale, 0.0, 1.0)
    return _min_max(array.astype(np.float32))


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    if pixels.ndim != 2:
        raise RxwganError(f"{path}: DICOM holds {pixels.shape} pixels, expected one grayscale frame")
    values = apply_modality_lut(pixels, ds).astype(np.float64)  # rescale slope / intercept
    centre, width = _first_value(ds.get("WindowCenter")), _first_value(ds.get("WindowWidth"))
    if centre is not None and width is not None and width > 0:
        low = centre - width / 2.0
        unit = np.clip((values - low) / width, 0.0, 1.0)
    else:
        unit = _min_max(values)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1 stores bright bone as low values
    return unit.astype(np.float32)


def _first_value(element: object) -> float | None:
    if element is None:
        return None
    if isinstance(element, (list, tuple)) or type(element).__name__ == "MultiValue":
        element = element[0] if len(element) else None  # type: ignore[index]
    return None if element is None else float(element)  # type: ignore[arg-type]


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def resize_unit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with antialiasing (PIL's bilinear filter widens when reducing)."""
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    resized = Image.fromarray(image.astype(np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode, resize and map to [-1, 1]: what the cache stores for one file."""
    unit = resize_unit(decode_unit(path), size)
    return (unit * 2.0 - 1.0).astype(np.float32)
