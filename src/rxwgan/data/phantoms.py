"""Procedural chest-radiograph phantoms: the project's stand-in data set.

No public X-ray set can be downloaded where the demo and the tests run, so they draw their
own. Every phantom is drawn in normalised anatomical coordinates (x and y in [-1, 1], y down,
+x on the viewer's right, which is the patient's left on a PA film), so the same random
draws give the same anatomy at any pixel size. Brightness follows radiographic convention:
bone and soft tissue are bright, air is dark. Target 1 adds TB-like findings (upper-lobe
patchy opacities, cavities, small nodules); target 0 has none.

Two settings of the findings: ``clear`` (the default) draws them to be seen, so that a
generator's TB images can be checked by eye; a CNN trained on 128 of them sits near ROC AUC
1. ``subtle`` draws fewer, smaller and fainter ones, some TB images with only faint signs,
so that a classifier trained on ~100 real images stays well below 1 and extra training
images (synthetic ones) have room to help. The same seed gives the same patients and the
same normal images in both settings; only the TB images' findings differ.

One module despite its length: every anatomical part is drawn in the same coordinates from
the same random draws, and the parts overlap; split up, one picture would be spread over
several files that must change together.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError

MIN_SIZE = 16
_SIDE_NAMES = {-1: "right", 1: "left"}  # patient's side: -x is the patient's right


@dataclass(frozen=True)
class _FindingsStyle:
    """How many TB findings a phantom gets, how large and how dense."""

    patches: tuple[int, int]  # number of patchy opacities: rng.integers(low, high)
    cavities: tuple[float, float, float]  # probabilities of 0, 1 and 2 cavities
    nodules: int  # number of small nodules: rng.integers(0, nodules)
    scale: float  # size of every finding, relative to the clear setting
    strength: tuple[float, float]  # per-image factor on the density of all findings, drawn uniformly
    faint_below: float  # a strength under this is noted as "faint signs" in the comment


FINDINGS = {
    "clear": _FindingsStyle(patches=(1, 4), cavities=(0.4, 0.45, 0.15), nodules=9, scale=1.0,
                            strength=(1.0, 1.0), faint_below=0.0),
    # Tuned with bench/bench_classifier.py: 120 rows, 5 folds at 64 px, real rows only,
    # mean ROC AUC 0.77 (0.73-0.83 per fold); smaller (0.8) or fainter findings measured
    # 0.54-0.74, with folds where the classifier never rose above chance.
    "subtle": _FindingsStyle(patches=(1, 3), cavities=(0.8, 0.18, 0.02), nodules=4, scale=0.9,
                             strength=(0.3, 1.0), faint_below=0.5),
}


@dataclass(frozen=True)
class _Frame:
    """One image's pixel grid and the patient pose that maps it onto anatomical coordinates."""

    size: int
    x: np.ndarray  # anatomical x of every pixel, float32 (size, size)
    y: np.ndarray
    cos: float
    sin: float
    scale: float
    shift: tuple[float, float]

    @property
    def pixel(self) -> float:
        """One pixel's width in anatomical units: edges are never sharper than this."""
        return 2.0 / (self.size * self.scale)

    def window(self, points: list[tuple[float, float]], radius: float) -> tuple[slice, slice]:
        """Rows and columns covering discs of ``radius`` around anatomical ``points``.

        Local features are computed on this window only, so a small nodule costs a few
        hundred pixels instead of the whole image.
        """
        cols, rows = [], []
        for px, py in points:
            u = self.scale * (self.cos * px - self.sin * py) + self.shift[0]
            v = self.scale * (self.sin * px + self.cos * py) + self.shift[1]
            cols.append((u + 1.0) * self.size / 2 - 0.5)
            rows.append((v + 1.0) * self.size / 2 - 0.5)
        reach = radius * self.scale * self.size / 2 + 1.0
        return (self._span(min(rows) - reach, max(rows) + reach),
                self._span(min(cols) - reach, max(cols) + reach))

    def _span(self, low: float, high: float) -> slice:
        start = min(max(math.floor(low), 0), self.size)
        stop = min(max(math.ceil(high) + 1, start), self.size)
        return slice(start, stop)

    def fade(self, feature: float) -> float:
        """0..1 weight that removes periodic detail finer than ~3 px, which would only alias."""
        return float(np.clip((feature / self.pixel - 2.0) / 3.0, 0.0, 1.0))


@dataclass(frozen=True)
class _Lung:
    side: int  # -1: patient's right (viewer's left), +1: patient's left
    medial: float
    lateral: float
    top: float
    bottom: float
    dome: float

    @property
    def width(self) -> float:
        return self.lateral - self.medial

    def dome_y(self, d: np.ndarray) -> np.ndarray:
        """The hemidiaphragm: highest a little medial of the lung's middle, low at the sides."""
        centre = 0.5 * (self.medial + self.lateral) - 0.05 * self.width
        rel = (d - centre) / (0.6 * self.width)
        return self.bottom - self.dome * np.clip(1.0 - rel * rel, 0.0, 1.0)


def render_phantom(size: int, target: int, rng: np.random.Generator,
                   findings: str = "clear") -> np.ndarray:
    """One grayscale chest-radiograph phantom, uint8 (size, size); findings when target is 1."""
    image, _ = _render(size, target, rng, _style(findings))
    return image


def write_demo_data(out_dir: str | os.PathLike, n_images: int = 200, size: int = 128,
                    seed: int = 0, tb_fraction: float = 0.5, findings: str = "clear") -> Path:
    """Write phantoms and a table in the users' CSV format; return the table's path.

    Image i draws from its own child of ``SeedSequence(seed)``, so it does not depend on
    how many images come before it, and the same arguments give byte-identical files.
    ``findings``: ``clear`` or ``subtle`` (see the module's docstring; ~120 images suit it).
    """
    style = _style(findings)
    if n_images < 2:
        raise RxwganError(f"demo data: n_images must be at least 2, not {n_images}")
    if size < MIN_SIZE:
        raise RxwganError(f"demo data: size must be at least {MIN_SIZE} px, not {size}")
    if not 0.0 <= tb_fraction <= 1.0:
        raise RxwganError(f"demo data: tb_fraction must be within 0..1, not {tb_fraction}")
    out = Path(out_dir)
    meta_seed, *image_seeds = np.random.SeedSequence(seed).spawn(n_images + 1)
    meta = np.random.default_rng(meta_seed)
    n_tb = round(n_images * tb_fraction)
    targets = meta.permutation(np.repeat([1, 0], [n_tb, n_images - n_tb]))
    ages = meta.integers(18, 81, size=n_images)
    sexes = meta.choice(["M", "F"], size=n_images)
    rows = []
    for i, (target, image_seed) in enumerate(zip(targets.tolist(), image_seeds, strict=True)):
        image, comment = _render(size, target, np.random.default_rng(image_seed), style)
        relative = f"images/phantom_{i:04d}_{target}.png"
        data = _png_bytes(image)
        atomic.write_bytes(out / relative, data)
        rows.append({"target": target, "image_ID": Path(relative).stem, "raw_image_path": relative,
                     "raw_image_md5": hashlib.md5(data).hexdigest(), "age": int(ages[i]),
                     "sex": str(sexes[i]), "comment": comment})
    table_path = out / "table.csv"
    atomic.write_text(table_path, pd.DataFrame(rows).to_csv(index=True))
    return table_path


def _style(findings: str) -> _FindingsStyle:
    if findings not in FINDINGS:
        raise RxwganError(f"demo data: findings must be one of {', '.join(FINDINGS)}, not {findings!r}")
    return FINDINGS[findings]


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# --- drawing ------------------------------------------------------------------------------


def _render(size: int, target: int, rng: np.random.Generator,
            style: _FindingsStyle = FINDINGS["clear"]) -> tuple[np.ndarray, str]:
    """The phantom and a short description of its findings ('normal' when there are none).

    No random draw depends on ``size`` except the final pixel noise, so one rng state gives
    the same patient at every size. The findings draw from their own generator, so one rng
    state also gives the same patient and exposure with either target.
    """
    if size < MIN_SIZE:
        raise RxwganError(f"phantom size must be at least {MIN_SIZE} px, not {size}")
    if target not in (0, 1):
        raise RxwganError(f"phantom target must be 0 or 1, not {target}")
    frame = _pose(size, rng)
    soft = max(0.01, 1.2 * frame.pixel)
    findings_rng = np.random.default_rng(rng.integers(2**63))
    build = rng.uniform(-1.0, 1.0)  # one factor so both lungs of a patient are alike in size
    lungs = [_draw_lung_shape(rng, side, build) for side in (-1, 1)]

    density = 0.03 + _body(frame, rng, lungs, soft)
    air = (_lung_air(frame, lungs[0], soft) + _lung_air(frame, lungs[1], soft))
    air *= 1.0 - _mediastinum(frame, rng, lungs[1], soft)
    density -= air * _air_depth(frame, rng)
    density += 0.045 * _spine(frame, rng, soft)
    density -= 0.09 * _trachea(frame, rng, soft)
    density += _ribs(frame, rng, lungs) * (0.12 + 0.88 * air)
    density += 0.07 * _clavicles(frame, rng, soft)
    density += _lung_markings(frame, rng, lungs) * air
    comment = "normal"
    if target == 1:
        findings, comment = _findings(frame, findings_rng, lungs, soft, style)
        density += findings * air
    return _expose(frame, rng, density), comment


def _pose(size: int, rng: np.random.Generator) -> _Frame:
    """Pixel grid -> anatomical coordinates under a small random rotation, zoom and shift."""
    angle = rng.uniform(-0.05, 0.05)
    scale = rng.uniform(0.92, 1.04)
    shift = rng.uniform(-0.04, 0.04, size=2)
    centres = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2.0 / size) - np.float32(1.0)
    u = centres[None, :] - np.float32(shift[0])
    v = centres[:, None] - np.float32(shift[1])
    c, s = float(np.cos(angle)), float(np.sin(angle))
    x = (c * u + s * v) * (1.0 / scale)
    y = (c * v - s * u) * (1.0 / scale)
    return _Frame(size, x.astype(np.float32), y.astype(np.float32), c, s, float(scale),
                  (float(shift[0]), float(shift[1])))


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 as a signed distance crosses zero over ``width``: a soft, anti-aliased edge."""
    t = distance * (1.0 / width)
    t += 0.5
    np.clip(t, 0.0, 1.0, out=t)
    out = 3.0 - 2.0 * t
    out *= t
    out *= t
    return out


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Unit-variance random field with features ~2/cells wide, identical in content at any size.

    A Gaussian-weighted sum over a (cells+5)^2 random grid, done as two small matrix
    products: far cheaper than a convolution, and the grid does not depend on ``size``.
    """
    grid = rng.standard_normal((cells + 5, cells + 5)).astype(np.float32)
    step = 2.0 / cells
    knots = -1.0 + step * (np.arange(cells + 5) - 2)
    centres = (np.arange(size) + 0.5) * (2.0 / size) - 1.0
    weights = np.exp(-0.5 * ((centres[:, None] - knots[None, :]) / step) ** 2)
    weights /= np.sqrt((weights ** 2).sum(axis=1, keepdims=True))
    weights = weights.astype(np.float32)
    return weights @ grid @ weights.T


def _draw_lung_shape(rng: np.random.Generator, side: int, build: float) -> _Lung:
    """One lung's outline; the left sits lower (the right hemidiaphragm rides on the liver)."""
    return _Lung(
        side=side,
        medial=rng.uniform(0.07, 0.12),
        lateral=0.74 + 0.06 * build + rng.uniform(-0.03, 0.03),
        top=-0.74 + rng.uniform(-0.05, 0.05),
        bottom=0.5 + 0.07 * build + rng.uniform(-0.04, 0.04) + (0.05 if side > 0 else 0.0),
        dome=rng.uniform(0.12, 0.24),
    )


def _body(frame: _Frame, rng: np.random.Generator, lungs: list[_Lung], soft: float) -> np.ndarray:
    """Soft tissue: neck, sloping shoulders, a barrel-shaped trunk, brightest where thickest.

    Also the mediastinal soft tissue between the lungs and, in some patients, a gastric
    air bubble under the left hemidiaphragm.
    """
    neck = rng.uniform(0.34, 0.42)
    trunk = rng.uniform(0.86, 0.95)
    shoulder_y = rng.uniform(-0.88, -0.78)
    middle = rng.uniform(0.07, 0.11)
    bubble = rng.uniform(0.0, 1.0) < 0.6
    bubble_x = lungs[1].medial + lungs[1].width * rng.uniform(0.35, 0.6)
    bubble_radii = (rng.uniform(0.06, 0.1), rng.uniform(0.04, 0.06))
    x, y = frame.x, frame.y
    half_width = neck + (trunk - neck) * _ramp(y - shoulder_y, 0.45)
    half_width *= 1.0 - 0.05 * (y - 0.15) ** 2
    rel = x / half_width
    thickness = np.sqrt(np.clip(1.0 - rel * rel, 0.0, 1.0))
    tissue = _ramp(half_width - np.abs(x), 2 * soft) * (0.28 + 0.34 * thickness)
    chest = _ramp(y - shoulder_y, 0.2) * _ramp(lungs[1].bottom - y, 0.3)
    tissue += middle * _ramp(0.17 - np.abs(x - 0.02), 0.08) * chest
    if bubble:
        gas = np.zeros_like(x)
        top = float(lungs[1].dome_y(np.float32(bubble_x))) + 0.03 + bubble_radii[1]
        _ellipse(frame, gas, (bubble_x, top), bubble_radii, 0.0, 3 * soft)
        tissue -= 0.07 * gas
    return tissue


def _lung_air(frame: _Frame, lung: _Lung, soft: float) -> np.ndarray:
    """How much air one lung puts in each pixel's path (0..1).

    The outline: a rounded apex, wider and boxier towards the base, cut by the diaphragm.
    Air is thinner near the outline, so the lung darkens gradually inwards.
    """
    rows, cols = frame.window([(lung.side * lung.medial, lung.top),
                               (lung.side * lung.lateral, lung.bottom)], 0.15)
    x, y = frame.x[rows, cols], frame.y[rows, cols]
    d = lung.side * x
    half = 0.5 * lung.width
    centre_x = lung.medial + half
    centre_y = 0.5 * (lung.top + lung.bottom)
    half_height = 0.5 * (lung.bottom - lung.top)
    v = (y - centre_y) * (1.0 / half_height)
    u = (d - centre_x - 0.08 * half * v) / (half * (1.0 + 0.14 * v))
    v2 = v * v
    inside = (1.0 - u * u - np.where(v < 0, v2, v2 * v2 * v2)) * (0.5 * half)
    inside = np.minimum(inside, lung.dome_y(d) - y)
    depth = np.clip(inside * (1.0 / 0.16), 0.0, 1.0)
    canvas = np.zeros_like(frame.x)
    canvas[rows, cols] = _ramp(inside, soft) * (0.5 + depth * (1.0 - 0.5 * depth))
    return canvas


def _ellipse(frame: _Frame, canvas: np.ndarray, centre: tuple[float, float],
             radii: tuple[float, float], angle: float, soft: float) -> None:
    """Raise ``canvas`` to a soft filled ellipse (max, so overlapping organs do not add up)."""
    rows, cols = frame.window([centre], max(radii) + soft)
    dx = frame.x[rows, cols] - centre[0]
    dy = frame.y[rows, cols] - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    a = (c * dx + s * dy) / radii[0]
    b = (c * dy - s * dx) / radii[1]
    mask = _ramp((1.0 - (a * a + b * b)) * (0.5 * min(radii)), soft)
    np.maximum(canvas[rows, cols], mask, out=canvas[rows, cols])


def _mediastinum(frame: _Frame, rng: np.random.Generator, left: _Lung, soft: float) -> np.ndarray:
    """Organs that push air out of the lungs: the heart (mostly to the patient's left) and
    the aortic knob; 1 where they fully replace lung."""
    heart_centre = (rng.uniform(0.24, 0.29), left.bottom - 0.5 * left.dome - rng.uniform(0.1, 0.16))
    heart_radii = (rng.uniform(0.35, 0.42), rng.uniform(0.23, 0.28))
    heart_angle = rng.uniform(0.35, 0.55)
    knob_centre = (rng.uniform(0.03, 0.06), rng.uniform(-0.4, -0.32))
    knob_radius = rng.uniform(0.07, 0.09)
    canvas = np.zeros_like(frame.x)
    _ellipse(frame, canvas, heart_centre, heart_radii, heart_angle, soft)
    _ellipse(frame, canvas, knob_centre, (knob_radius, knob_radius), 0.0, soft)
    return canvas


def _air_depth(frame: _Frame, rng: np.random.Generator) -> np.ndarray:
    """How dark full-depth lung is: most in the mid zones, less at apices and bases, mottled."""
    depth = rng.uniform(0.36, 0.44) * (1.0 + 0.05 * _smooth_noise(rng, frame.size, 10))
    y = frame.y
    apex = np.clip((-0.4 - y) / 0.3, 0.0, 1.0)
    base = np.clip((y - 0.2) / 0.3, 0.0, 1.0)
    return depth - 0.1 * apex - 0.06 * base


def _spine(frame: _Frame, rng: np.random.Generator, soft: float) -> np.ndarray:
    """Vertebral column: a vertical band, segmented by darker discs, with paired pedicles."""
    half_width = rng.uniform(0.055, 0.07)
    period = rng.uniform(0.1, 0.12)
    offset = rng.uniform(0.0, period)
    sway, sway_phase = rng.uniform(0.0, 0.015), rng.uniform(0.0, 2 * np.pi)
    rows, cols = frame.window([(0.0, -1.2), (0.0, 1.2)], 2 * half_width)
    x, y = frame.x[rows, cols], frame.y[rows, cols]
    ax = np.abs(x - sway * np.sin(2.0 * y + sway_phase))
    phase = (y - offset) * (1.0 / period)
    phase -= np.floor(phase)
    detail = frame.fade(period / 4)
    disc = _ramp(0.09 - np.minimum(phase, 1.0 - phase), frame.pixel / period)
    pedicle = np.exp(-(((ax - 0.7 * half_width) / (0.18 * half_width)) ** 2)
                     - ((phase - 0.45) / 0.16) ** 2)
    column = _ramp(half_width - ax, soft) * (1.0 - 0.5 * detail * disc) + 0.6 * detail * pedicle
    canvas = np.zeros_like(frame.x)
    canvas[rows, cols] = column
    return canvas


def _trachea(frame: _Frame, rng: np.random.Generator, soft: float) -> np.ndarray:
    """The air column over the upper spine, ending at the carina."""
    half_width = rng.uniform(0.024, 0.034)
    carina = rng.uniform(-0.38, -0.3)
    return _ramp(half_width - np.abs(frame.x - 0.01), soft) * _ramp(carina - frame.y, 0.06)


def _ribs(frame: _Frame, rng: np.random.Generator, lungs: list[_Lung]) -> np.ndarray:
    """Rib density over both sides at once: posterior arcs that rise from the spine and fall
    laterally, and fainter anterior ribs that fall towards the midline.

    One phase field per rib set is constant along each arc; its fractional part marks the
    bands, so all ribs of a set cost the same as one.
    """
    curve = rng.uniform(1.2, 1.6)
    count = int(rng.integers(9, 11))
    width = rng.uniform(0.45, 0.55)
    front_count = int(rng.integers(5, 7))
    strength = rng.uniform(0.06, 0.09)
    top = min(lung.top for lung in lungs)
    bottom = max(lung.bottom for lung in lungs)
    lateral = max(lung.lateral for lung in lungs) + 0.12
    rows, cols = frame.window([(-lateral, top - 0.1), (lateral, bottom + 0.3)], 0.05)
    x, y = frame.x[rows, cols], frame.y[rows, cols]
    d = np.abs(x)
    back = y - curve * (d - 0.25) ** 2
    front = y - 0.55 * (0.9 - d) - 0.35 * (0.9 - d) ** 2
    bands = _rib_bands(frame, back, top - 0.14, bottom, count, width)
    bands *= _ramp(back - top + 0.14, 0.03)
    front_bands = _rib_bands(frame, front, top - 0.5, bottom - 0.2, front_count, 0.6)
    bands += 0.4 * front_bands * _ramp(d - 0.35, 0.15) * _ramp(front - top + 0.5, 0.03)
    bands *= _ramp(lateral - d, 0.06) * _ramp(d - 0.06, 0.05)
    bands *= 0.3 + 0.7 * _ramp(bottom + 0.05 - y, 0.1)
    canvas = np.zeros_like(frame.x)
    canvas[rows, cols] = strength * bands
    return canvas


def _rib_bands(frame: _Frame, q: np.ndarray, top: float, bottom: float, count: int,
               width: float) -> np.ndarray:
    """Bands where ``q`` runs from top to bottom in ``count`` steps, widening downwards.

    Each band is brighter at its edges (cortex) than along its axis (marrow).
    """
    t = np.clip((q - top) * (1.0 / (bottom - top)), 0.0, 1.6)
    phase = count * t * (1.25 - 0.25 * t)
    phase -= np.floor(phase)
    spread = np.abs(phase - 0.5) * (2.0 / width)  # 0 on a rib's axis, 1 at its edges
    period = (bottom - top) / count
    band = _ramp(1.0 - spread, 2.0 * frame.pixel / (width * period))
    band *= 0.65 + 0.35 * np.minimum(spread * spread, 1.0)
    return band * frame.fade(period * width)


def _clavicles(frame: _Frame, rng: np.random.Generator, soft: float) -> np.ndarray:
    """Two gently curved bars from the sternal notch out and up towards the shoulders."""
    height = rng.uniform(-0.68, -0.6)
    rise = rng.uniform(0.1, 0.18)
    reach = rng.uniform(0.62, 0.75)
    thickness = rng.uniform(0.032, 0.042)
    canvas = np.zeros_like(frame.x)
    for side in (-1, 1):
        start, end = (side * 0.07, height), (side * reach, height - rise)
        rows, cols = frame.window([start, end], 3 * thickness)
        dx, dy = frame.x[rows, cols] - start[0], frame.y[rows, cols] - start[1]
        ex, ey = end[0] - start[0], end[1] - start[1]
        length = np.hypot(ex, ey)
        along = np.clip((dx * ex + dy * ey) / length ** 2, 0.0, 1.0)
        across = (dy * ex - dx * ey) / length - side * 0.015 * np.sin(2 * np.pi * along)
        gap = np.hypot(dx - along * ex, dy - along * ey)
        dist = np.where((along > 0) & (along < 1), np.abs(across), gap)
        bar = _ramp(thickness * (1.0 - 0.25 * along) - dist, soft)
        np.maximum(canvas[rows, cols], bar, out=canvas[rows, cols])
    return canvas


def _lung_markings(frame: _Frame, rng: np.random.Generator, lungs: list[_Lung]) -> np.ndarray:
    """Bronchovascular markings: wavy lines fanning out from the hila, thinning and fading
    towards the periphery, plus the hilar shadows themselves."""
    hilum_x = 0.5 * (lungs[0].medial + lungs[1].medial) + rng.uniform(0.1, 0.14)
    hilum_y = rng.uniform(-0.14, -0.02)
    strength = rng.uniform(0.09, 0.13)
    vessels = int(rng.integers(24, 32))
    lateral = max(lung.lateral for lung in lungs) + 0.1
    rows, cols = frame.window([(-lateral, min(lung.top for lung in lungs)),
                               (lateral, max(lung.bottom for lung in lungs))], 0.05)
    wiggle = _smooth_noise(rng, frame.size, 7)[rows, cols]
    gaps = _smooth_noise(rng, frame.size, 12)[rows, cols]
    dx = np.abs(frame.x[rows, cols]) - hilum_x
    dy = frame.y[rows, cols] - hilum_y
    r = np.sqrt(dx * dx + dy * dy)
    angle = np.arctan2(dy, dx) + 0.22 * wiggle
    spacing = r * (2.0 * np.pi / vessels)
    line = 1.0 - np.abs(np.sin(angle * (vessels / 2.0))) * (1.0 / 0.5) * (1.0 + 2.0 * r)
    np.clip(line, 0.0, 1.0, out=line)
    visible = np.clip((spacing * (1.0 / frame.pixel) - 3.0) * (1.0 / 3.0), 0.0, 1.0)
    fading = np.exp(r * (-1.0 / 0.45)) * np.clip(0.2 + gaps, 0.0, 1.0)
    fading *= _ramp(r - 0.14, 0.12)  # where the lines converge, the hilar shadow takes over
    hilum = np.exp(r * r * (-1.0 / 0.012)) * np.clip(0.8 + 0.4 * gaps, 0.0, 1.2)
    canvas = np.zeros_like(frame.x)
    canvas[rows, cols] = strength * (line * line * visible * fading + hilum)
    return canvas


def _findings(frame: _Frame, rng: np.random.Generator, lungs: list[_Lung], soft: float,
              style: _FindingsStyle) -> tuple[np.ndarray, str]:
    """TB-like findings and their description: upper-lobe patchy opacity, cavities, nodules.

    ``style`` scales sizes and densities; the clear style's factors are all exactly 1, so
    its draws and pixels are those of the phantoms before the subtle setting existed.
    """
    canvas = np.zeros_like(frame.x)
    patch_sides = set()
    for _ in range(int(rng.integers(*style.patches))):
        lung = lungs[int(rng.integers(2))]
        patch_sides.add(lung.side)
        _patch(frame, canvas, rng, _upper_point(rng, lung), style.scale)
    patchiness = _smooth_noise(rng, frame.size, 20)
    canvas *= np.clip(0.8 + 0.4 * patchiness, 0.25, 1.3)
    if len(patch_sides) == 2:
        notes = ["patchy opacities both upper lobes"]
    else:
        notes = [f"patchy opacities {_SIDE_NAMES[patch_sides.pop()]} upper lobe"]

    for _ in range(int(rng.choice(3, p=list(style.cavities)))):
        lung = lungs[int(rng.integers(2))]
        _cavity(frame, canvas, rng, _upper_point(rng, lung), soft, style.scale)
        notes.append(f"cavity {_SIDE_NAMES[lung.side]} upper lobe")

    nodules = int(rng.integers(0, style.nodules))
    for _ in range(nodules):
        lung = lungs[int(rng.integers(2))]
        centre = (lung.side * (lung.medial + lung.width * rng.uniform(0.2, 0.85)),
                  lung.top + (lung.bottom - lung.top) * rng.beta(1.3, 2.6))
        _blob(frame, canvas, centre, style.scale * rng.uniform(0.009, 0.018), rng.uniform(0.15, 0.25))
    if nodules:
        notes.append(f"{nodules} small nodule{'s' if nodules > 1 else ''}")
    strength = rng.uniform(*style.strength)  # drawn last: the clear style's other draws stay put
    canvas *= strength
    if strength < style.faint_below:
        notes.insert(0, "faint signs")
    excess = np.maximum(canvas - 0.2, 0.0)
    canvas -= excess * excess / (excess + 0.15)  # overlapping findings saturate, as tissue does
    return canvas, "; ".join(notes)


def _upper_point(rng: np.random.Generator, lung: _Lung) -> tuple[float, float]:
    """A random point in the upper third of a lung, clear of its edges."""
    x = lung.medial + lung.width * rng.uniform(0.3, 0.75)
    y = lung.top + (lung.bottom - lung.top) * rng.uniform(0.14, 0.4)
    return lung.side * x, y


def _blob(frame: _Frame, canvas: np.ndarray, centre: tuple[float, float], sigma: float,
          amplitude: float, stretch: float = 1.0, angle: float = 0.0) -> None:
    """Add an (optionally elongated) Gaussian blob of density."""
    rows, cols = frame.window([centre], 3.5 * sigma * max(stretch, 1.0))
    dx = frame.x[rows, cols] - centre[0]
    dy = frame.y[rows, cols] - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    a = (c * dx + s * dy) / (sigma * stretch)
    b = (c * dy - s * dx) / sigma
    canvas[rows, cols] += amplitude * np.exp(-0.5 * (a * a + b * b))


def _patch(frame: _Frame, canvas: np.ndarray, rng: np.random.Generator,
           centre: tuple[float, float], scale: float) -> None:
    """An ill-defined consolidation: a cluster of overlapping elongated blobs."""
    spread = scale * rng.uniform(0.05, 0.1)
    for _ in range(int(rng.integers(5, 11))):
        offset = rng.normal(0.0, spread, size=2)
        _blob(frame, canvas, (centre[0] + offset[0], centre[1] + offset[1]),
              sigma=scale * rng.uniform(0.03, 0.06), amplitude=rng.uniform(0.12, 0.2),
              stretch=rng.uniform(1.0, 1.8), angle=rng.uniform(0.0, np.pi))


def _cavity(frame: _Frame, canvas: np.ndarray, rng: np.random.Generator,
            centre: tuple[float, float], soft: float, scale: float) -> None:
    """A thick, irregular-walled cavity: bright rim, air-dark centre, surrounding infiltrate."""
    radius = scale * rng.uniform(0.035, 0.07)
    wall = radius * rng.uniform(0.25, 0.4)
    lobes = rng.uniform(-0.15, 0.15, size=2)
    turns = rng.uniform(0.0, 2 * np.pi, size=2)
    rows, cols = frame.window([centre], 2.6 * radius)
    dx = frame.x[rows, cols] - centre[0]
    dy = frame.y[rows, cols] - centre[1]
    r = np.sqrt(dx * dx + dy * dy)
    around = np.arctan2(dy, dx)
    edge = radius * (1.0 + lobes[0] * np.cos(2 * around + turns[0])
                     + lobes[1] * np.cos(3 * around + turns[1]))
    rim = np.exp(-(((r - edge) / wall) ** 2))
    hollow = _ramp(edge - wall - r, soft)
    halo = np.exp(-((r / (2.2 * radius)) ** 2))
    canvas[rows, cols] += 0.2 * rim - 0.16 * hollow + 0.09 * halo


def _expose(frame: _Frame, rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Film response: uneven exposure, a random window and gamma, quantum noise, 8 bits."""
    gain = rng.uniform(0.04, 0.08)
    low, high = rng.uniform(-0.02, 0.04), rng.uniform(0.82, 0.95)
    gamma = rng.uniform(0.95, 1.25)
    noise_level = rng.uniform(0.006, 0.016)
    uneven = _smooth_noise(rng, frame.size, 3)
    image = density * (1.0 + gain * uneven)
    image = np.clip((image - low) * (1.0 / (high - low)), 0.0, 1.0) ** gamma
    image += noise_level * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
