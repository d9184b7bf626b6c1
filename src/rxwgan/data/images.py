"""Decode radiographs (PNG 8/16-bit, JPEG, TIFF, DICOM) to one float channel.

Every format ends in the same place: a float32 square image in [-1, 1], the range of
the generator's tanh output, so real and fake images are compared on equal terms.
"""

from __future__ import annotations

import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from rxwgan.base.errors import RxwganError, first_line

# Bump when decoding or resizing changes: cache entries made by another version are ignored.
PREPROCESS_VERSION = 1
DICOM_SUFFIXES = {".dcm", ".dicom"}
# Depths a wide image without sBIT is rounded up to: the ones X-ray detectors write.
DEPTHS = (8, 10, 12, 14, 16)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageHeader:
    """What `rxwgan table check` reports about an image without decoding its pixels."""

    width: int
    height: int
    bit_depth: int
    kind: str
    significant_bits: int | None = None  # a PNG's sBIT chunk: how many stored bits carry data
    wide: bool = False  # integer pixels over 8 bits, mapped to [0, 1] by a depth


@dataclass(frozen=True)
class Depth:
    """The depth a wide image is decoded at (full scale 2**bits - 1) and where it came from."""

    bits: int
    source: str


def check_bit_depth(bit_depth: int | None) -> None:
    """Refuse a forced depth no radiograph uses (the flag is --bit-depth)."""
    if bit_depth is not None and not DEPTHS[0] <= bit_depth <= DEPTHS[-1]:
        raise RxwganError(f"--bit-depth must be between {DEPTHS[0]} and {DEPTHS[-1]}, not {bit_depth}")


def round_depth(peak: int) -> int:
    """The smallest usual depth that holds ``peak`` (12 for 4095, 16 for 4096..65535)."""
    return next((bits for bits in DEPTHS if peak < 2**bits), max(int(peak).bit_length(), 1))


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
        with _open_pil(path) as img:
            wide = img.mode.startswith("I")
            sbit = png_significant_bits(path) if wide and img.format == "PNG" else None
            return ImageHeader(img.width, img.height, _pil_bit_depth(img), img.format or "?", sbit, wide)
    except RxwganError:
        raise
    except Exception as exc:  # any decoder failure means the file is not a usable image
        raise RxwganError(f"{path}: not a readable image ({first_line(exc)})") from None


def _open_pil(path: Path) -> Image.Image:
    """``Image.open``, refusing in one line an image over PIL's pixel limit.

    PIL only warns (a multi-line warning on stderr) up to twice its limit and raises above
    it; both become an RxwganError. The warnings filter is process-wide, hence the lock.
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise RxwganError(f"{path}: too large to decode ({first_line(exc)})") from None


def png_significant_bits(path: str | Path) -> int | None:
    """The grey sample's significant bits from a PNG's sBIT chunk; None if absent.

    Pillow skips sBIT, so its chunk reader walks the chunks before the pixel data.
    """
    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
        chunks = PngImagePlugin.ChunkStream(handle)
        try:
            while True:
                cid, _, length = chunks.read()
                if cid in (b"IDAT", b"IEND"):
                    return None
                data = handle.read(length + 4)[:length]  # the chunk and its CRC
                if cid == b"sBIT":
                    return data[0] if data and 1 <= data[0] <= 16 else None
        except (SyntaxError, OSError, ValueError, struct.error):
            return None  # a broken chunk list: decoding reports it


def _pil_bit_depth(img: Image.Image) -> int:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return 16
    if img.mode in ("I", "F"):
        return 32
    if img.mode == "1":
        return 1
    return 8


def decode_unit(path: str | Path, bit_depth: int | None = None) -> np.ndarray:
    """Decode a file to a 2-D float32 array in [0, 1] at its own resolution.

    A wide (over 8-bit) integer image maps ``2**bit_depth - 1`` to 1; without
    ``bit_depth``, its sBIT chunk, else its own maximum rounded up to a usual depth
    (the image cache passes the table's depth instead, so all rows share one scale).
    """
    path = Path(path)
    try:
        if is_dicom(path):
            return _decode_dicom(path)
        return _decode_pil(path, bit_depth)
    except RxwganError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise RxwganError(f"{path}: cannot decode image ({first_line(exc)})") from None


def pixel_peak(path: str | Path) -> int:
    """The largest stored value of an image (how the table's depth is found without sBIT)."""
    path = Path(path)
    try:
        return int(_pil_pixels(path).max())
    except RxwganError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RxwganError(f"{path}: cannot decode image ({first_line(exc)})") from None


def _pil_pixels(path: Path) -> np.ndarray:
    with _open_pil(path) as img:
        img.load()
        if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
            img = img.convert("L")  # ITU-R 601 luminance; alpha dropped
        array = np.asarray(img)
    if array.ndim != 2:
        raise RxwganError(f"{path}: unsupported image layout {array.shape}")
    return array


def _decode_pil(path: Path, bit_depth: int | None) -> np.ndarray:
    array = _pil_pixels(path)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.integer):
        peak = int(array.max())
        bits = bit_depth or png_significant_bits(path) or round_depth(peak)
        if peak >= 2**bits:
            raise RxwganError(f"{path}: pixel value {peak} does not fit {bits} bits; "
                              f"pass --bit-depth with the depth the pixels use")
        return np.clip(array.astype(np.float32) / float(2**bits - 1), 0.0, 1.0)
    return _min_max(array.astype(np.float32))


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) > limit:
        raise RxwganError(f"{path}: too large to decode ({ds.Columns}x{ds.Rows} pixels exceed "
                          f"the limit of {limit} pixels)")
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


def model_image(unit: np.ndarray, size: int) -> np.ndarray:
    """A decoded image (``decode_unit``) resized and mapped to [-1, 1]: what the cache stores."""
    return (resize_unit(unit, size) * 2.0 - 1.0).astype(np.float32)
