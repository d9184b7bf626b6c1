from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import write_dicom, write_png
from rxwgan.base.errors import RxwganError
from rxwgan.data.images import decode_unit, model_image, read_header


def ramp(height: int = 32, width: int = 48) -> np.ndarray:
    return np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))


def test_png_8_and_16_bit(tmp_path):
    eight = write_png(tmp_path / "a.png", (ramp() * 255).round().astype(np.uint8))
    sixteen = tmp_path / "b.png"
    Image.fromarray((ramp() * 65535).round().astype(np.uint16)).save(sixteen)
    assert read_header(sixteen).bit_depth == 16 and read_header(eight).bit_depth == 8
    np.testing.assert_allclose(decode_unit(eight), ramp(), atol=1 / 255)
    np.testing.assert_allclose(decode_unit(sixteen), ramp(), atol=1 / 65535)


def test_rgb_jpeg_tiff_become_one_channel(tmp_path):
    gray = (ramp() * 255).astype(np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(gray).save(tmp_path / "d.tif")
    write_png(tmp_path / "e.png", rgb)
    for name, tolerance in (("c.jpg", 0.03), ("d.tif", 1e-6), ("e.png", 1 / 255)):
        decoded = decode_unit(tmp_path / name)
        assert decoded.shape == gray.shape
        np.testing.assert_allclose(decoded, gray / 255.0, atol=tolerance)


def test_resize_antialiased_into_minus_one_one(tmp_path):
    stripes = np.zeros((256, 256), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: a plain subsample would alias to 0 or 255
    image = model_image(decode_unit(write_png(tmp_path / "s.png", stripes)), 32)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert np.abs(image).max() < 0.1  # averaged to mid-grey, i.e. ~0 in [-1, 1]


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    raw = (ramp() * 4000).astype(np.uint16)
    plain = decode_unit(write_dicom(tmp_path / "p.dcm", raw))
    np.testing.assert_allclose(plain, raw / raw.max(), atol=1e-6)  # min-max without a window

    inverted = decode_unit(write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted, 1 - plain, atol=1e-6)

    # slope 2, intercept -1000: stored 1000 -> 1000, window 1000 +- 500 covers stored 750..1250
    windowed = decode_unit(write_dicom(tmp_path / "w.dcm", raw, slope=2, intercept=-1000,
                                       window=(1000, 1000)))
    values = raw * 2.0 - 1000
    expected = np.clip((values - 500) / 1000, 0, 1)
    np.testing.assert_allclose(windowed, expected, atol=1e-6)
    assert read_header(tmp_path / "w.dcm").kind == "DICOM"


def test_corrupt_image_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(RxwganError, match="bad.png: cannot decode"):
        decode_unit(bad)
    with pytest.raises(RxwganError, match="bad.png: not a readable image"):
        read_header(bad)
